//! Blocking pops (lists: `BLPOP BRPOP BLMOVE BRPOPLPUSH BLMPOP`; sorted sets: `BZPOPMIN BZPOPMAX
//! BZMPOP`): the connection runs the command's non-blocking form and, while it answers nil, waits
//! for this node to commit something (a local write, or ops replicated from another region: both
//! go through the committer) and runs it again, until it answers or the timeout passes (Redis's
//! timeouts: 0 waits forever).
//!
//! A key whose home is another region is popped at the home (the non-blocking form is forwarded,
//! so the pop is exactly-once and nothing blocks at the home); a push there reaches this region
//! by replication and wakes the wait, and a short poll covers a push this region has not heard
//! of yet. Blocked clients are connections, so `limits.max_clients` bounds them; a client that
//! disconnects while blocked is noticed (see `Connection::run`) and its wait ends.

use super::{Connection, Next};
use crate::resp::{self, Blocking, Frame};
use concord_core::Reply;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How often a blocked client retries without a commit here (a list homed in another region).
const POLL_HOMED_ELSEWHERE: Duration = Duration::from_millis(250);

impl Connection {
    pub(super) async fn blocking_command(&mut self, b: Blocking) -> (Frame, Option<u64>, Next) {
        let state = self.node.server_state.clone();
        state.blocked_clients.fetch_add(1, Ordering::Relaxed);
        self.client.client.set_blocked(true);
        let result = self.block(b).await;
        self.client.client.set_blocked(false);
        state.blocked_clients.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// The causal contexts of the request's keys here: a pop is retried only once one changed
    /// (a commit of another key wakes every blocked client, which then waits again at the cost
    /// of this look-up, not of a pop).
    fn key_versions(&self, request: &concord_core::Request) -> Vec<Option<concord_core::VersionVector>> {
        let keys: Vec<bytes::Bytes> = request
            .keys()
            .map(|ks| ks.into_iter().cloned().collect())
            .unwrap_or_default();
        self.node
            .with_engine(|e| keys.iter().map(|k| e.key_state(k).map(|st| st.ctx.clone())).collect())
    }

    async fn block(&mut self, b: Blocking) -> (Frame, Option<u64>, Next) {
        let deadline = b
            .timeout_ms
            .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
        let homed_elsewhere = self.node.route(&b.request).ok().flatten().is_some();
        let mut commits = self.node.subscribe_commits();
        let timed_out = || timed_out_frame(&b.request);
        loop {
            // Mark the current commit seen, and the keys' versions, before trying: a change
            // after this is noticed by the wait below.
            commits.borrow_and_update();
            let seen = self.key_versions(&b.request);
            let done = match self.node.client_command(&b.args, b.request.clone(), None).await {
                Ok(d) => d,
                Err(crate::node::NodeError::Command(e)) => return (resp::error_frame(&e), None, Next::Continue),
                Err(e) => return (Frame::Error(e.to_string()), None, Next::Continue),
            };
            if done.reply != Reply::Nil {
                if let Some(seq) = done.own_seq {
                    self.last_write_seq = seq;
                }
                // A forwarded reply comes shaped as the non-blocking form's (as is): shape it as
                // the blocking command's either way.
                let reply = resp::shape_reply(b.shape, done.reply);
                return (resp::reply_to_frame(reply), done.ticket, Next::Continue);
            }
            // Wait until one of the keys changed here (a local or replicated write committed),
            // or, for a list homed elsewhere, the poll interval passed.
            let poll = homed_elsewhere.then(|| tokio::time::Instant::now() + POLL_HOMED_ELSEWHERE);
            loop {
                let wake = async {
                    match poll {
                        Some(at) => tokio::time::timeout_at(at, commits.changed()).await.is_err(),
                        None => {
                            if commits.changed().await.is_err() {
                                // The node is shutting down: wait for the timeout or the end.
                                std::future::pending::<()>().await;
                            }
                            false
                        }
                    }
                };
                let killed = self.client.client.killed();
                let polled = tokio::select! {
                    polled = wake => polled,
                    _ = killed => return (Frame::Null, None, Next::Close),
                    error = self.client.client.unblocked() => {
                        let frame = if error {
                            Frame::Error("UNBLOCKED client unblocked via CLIENT UNBLOCK".into())
                        } else {
                            timed_out()
                        };
                        return (frame, None, Next::Continue);
                    }
                    _ = async {
                        match deadline {
                            Some(d) => tokio::time::sleep_until(d).await,
                            None => std::future::pending().await,
                        }
                    } => return (timed_out(), None, Next::Continue),
                };
                if polled || self.key_versions(&b.request) != seen {
                    break;
                }
            }
        }
    }
}

/// What a blocking command answers when nothing came (timeout, or inside `MULTI` where it does
/// not block): Redis answers `BLMOVE`/`BRPOPLPUSH` with a null bulk, the others a null array.
pub(super) fn timed_out_frame(request: &concord_core::Request) -> Frame {
    if matches!(request, concord_core::Request::LMove { .. }) {
        Frame::Null
    } else {
        Frame::NullArray
    }
}
