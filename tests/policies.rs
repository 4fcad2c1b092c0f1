//! Conflict-avoidance integration tests (issue 5): home regions with forwarded writes and
//! `-TRYAGAIN`, `SET NX` as a global uniqueness check, `WAIT`, `read_miss = "home"`, ack levels
//! (`ack` in a policy, `?ack=` on HTTP, `-NOTACKED` / `-CONFLICT`) and `replicate = false` —
//! real clusters of `concord` processes on loopback, started by `concord up --policies FILE` or
//! as one `concord serve` per region from a config the harness writes.
//!
//! Every process is a child of this test, stopped by its PID when the test ends; every wait is
//! bounded.

#[path = "cluster/harness.rs"]
mod harness;

#[path = "policies/ack.rs"]
mod ack;
#[path = "policies/home.rs"]
mod home;
#[path = "policies/local.rs"]
mod local;
#[path = "policies/read_miss.rs"]
mod read_miss;
#[path = "policies/wait.rs"]
mod wait;
