//! Blocking pops on a connection (lists: `BLPOP BRPOP BLMOVE BRPOPLPUSH BLMPOP`; sorted sets:
//! `BZPOPMIN BZPOPMAX BZMPOP`): the node runs the pop and its wait
//! ([`crate::node::Node::client_blocking`], which the simulation runs too); the connection ends
//! the wait on its timeout (Redis's timeouts: 0 waits forever), `CLIENT KILL` or `CLIENT UNBLOCK`.
//! Blocked clients are connections, so `limits.max_clients` bounds them; a client that
//! disconnects while blocked is noticed (see `Connection::run`) and its wait ends.

use super::{Connection, Next};
use crate::resp::{self, Blocking, Frame};
use std::sync::atomic::Ordering;
use std::time::Duration;

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

    async fn block(&mut self, b: Blocking) -> (Frame, Option<u64>, Next) {
        /// Why a wait ended without a pop.
        enum Stop {
            Killed,
            Unblocked { error: bool },
            TimedOut,
        }
        let deadline = b
            .timeout_ms
            .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
        let client = self.client.client.clone();
        let stop = async {
            tokio::select! {
                _ = client.killed() => Stop::Killed,
                error = client.unblocked() => Stop::Unblocked { error },
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => Stop::TimedOut,
            }
        };
        match self.node.client_blocking(&b.args, b.request.clone(), stop).await {
            Ok(Ok(done)) => {
                if let Some(seq) = done.own_seq {
                    self.last_write_seq = seq;
                }
                self.note_home_write(done.home_dot);
                // A forwarded reply comes shaped as the non-blocking form's (as is): shape it as
                // the blocking command's either way.
                let reply = resp::shape_reply(b.shape, done.reply);
                (resp::reply_to_frame(reply), done.ticket, Next::Continue)
            }
            Ok(Err(Stop::Killed)) => (Frame::Null, None, Next::Close),
            Ok(Err(Stop::Unblocked { error: true })) => (
                Frame::Error("UNBLOCKED client unblocked via CLIENT UNBLOCK".into()),
                None,
                Next::Continue,
            ),
            Ok(Err(Stop::Unblocked { error: false } | Stop::TimedOut)) => {
                (timed_out_frame(&b.request), None, Next::Continue)
            }
            Err(crate::node::NodeError::Command(e)) => (resp::error_frame(&e), None, Next::Continue),
            Err(e) => (Frame::Error(e.to_string()), None, Next::Continue),
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
