//! Multi-region integration tests (issue 4, "Must show" 1–6): real clusters of `concord`
//! processes on loopback, started by `concord up` or as one `concord serve` per region, driven
//! over RESP (the `redis` crate) and the HTTP API, with partitions set through the admin API,
//! `kill -9`, restarts, a wiped data dir, a broken ring and impostor peers.
//!
//! Every process is a child of this test, stopped by its PID when the test ends; every wait is
//! bounded.

#[path = "cluster/harness.rs"]
mod harness;

#[path = "cluster/aae.rs"]
mod aae;
#[path = "cluster/auth.rs"]
mod auth;
#[path = "cluster/basic.rs"]
mod basic;
#[path = "cluster/breadth.rs"]
mod breadth;
#[path = "cluster/crash.rs"]
mod crash;
#[path = "cluster/lists.rs"]
mod lists;
#[path = "cluster/lost_disk.rs"]
mod lost_disk;
#[path = "cluster/lua.rs"]
mod lua;
#[path = "cluster/partition.rs"]
mod partition;
#[path = "cluster/pubsub.rs"]
mod pubsub;
#[path = "cluster/scripting.rs"]
mod scripting;
#[path = "cluster/topology.rs"]
mod topology;
#[path = "cluster/transactions.rs"]
mod transactions;
#[path = "cluster/transfer.rs"]
mod transfer;
#[path = "cluster/zsets.rs"]
mod zsets;
