//! Blocking pops on the node (lists: `BLPOP BRPOP BLMOVE BRPOPLPUSH BLMPOP`; sorted sets:
//! `BZPOPMIN BZPOPMAX BZMPOP`): run the command's non-blocking form and, while it answers nil,
//! wait for this node to commit a change of one of its keys (a local write, or ops replicated
//! from another region: both go through the committer) and run it again, until it answers or
//! the caller stops the wait (its timeout, `CLIENT KILL`, `CLIENT UNBLOCK`: the RESP front end,
//! `server/blocking.rs`; the simulation runs the same function).
//!
//! A key whose home is another region is popped at the home (the non-blocking form is forwarded,
//! so the pop is exactly-once and nothing blocks at the home); a push there reaches this region
//! by replication and wakes the wait, and a short poll covers a push this region has not heard
//! of yet.

use crate::node::{Node, NodeError};
use crate::routing::ClientDone;
use bytes::Bytes;
use concord_core::{Reply, Request, VersionVector};
use std::future::Future;
use std::time::Duration;

/// How often a blocked client retries without a commit here (a list homed in another region).
const POLL_HOMED_ELSEWHERE: Duration = Duration::from_millis(250);

impl Node {
    /// The causal contexts of the request's keys here: a pop is retried only once one changed
    /// (a commit of another key wakes every blocked client, which then waits again at the cost
    /// of this look-up, not of a pop).
    fn key_versions(&self, request: &Request) -> Vec<Option<VersionVector>> {
        let keys: Vec<Bytes> = request
            .keys()
            .map(|ks| ks.into_iter().cloned().collect())
            .unwrap_or_default();
        self.with_engine(|e| keys.iter().map(|k| e.key_state(k).map(|st| st.ctx.clone())).collect())
    }

    /// Run a blocking pop: `request` is its non-blocking form and `args` that form's Redis
    /// arguments (what is forwarded to a home). `Ok(Ok(done))` once it answers something other
    /// than nil; `Ok(Err(why))` when `stop` resolves first (with `why`) — the caller's timeout,
    /// a kill, an unblock.
    pub async fn client_blocking<T>(
        &self,
        args: &[Bytes],
        request: Request,
        stop: impl Future<Output = T>,
    ) -> Result<Result<ClientDone, T>, NodeError> {
        let homed_elsewhere = self.route(&request).ok().flatten().is_some();
        let mut commits = self.subscribe_commits();
        tokio::pin!(stop);
        loop {
            // Mark the current commit seen, and the keys' versions, before trying: a change
            // after this is noticed by the wait below.
            commits.borrow_and_update();
            let seen = self.key_versions(&request);
            let done = if self.env.planted_bug == Some(concord_core::PlantedBug::BlockingPopsHere) {
                let (reply, ticket, own_seq) = self.execute_tracked(request.clone()).await?;
                ClientDone {
                    reply,
                    shaped: false,
                    ticket,
                    own_seq,
                    home_dot: None,
                }
            } else {
                self.client_command(args, request.clone(), None).await?
            };
            if done.reply != Reply::Nil {
                return Ok(Ok(done));
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
                                // The node is shutting down: wait for the caller to stop.
                                std::future::pending::<()>().await;
                            }
                            false
                        }
                    }
                };
                let polled = tokio::select! {
                    polled = wake => polled,
                    why = &mut stop => return Ok(Err(why)),
                };
                if polled || self.key_versions(&request) != seen {
                    break;
                }
            }
        }
    }
}
