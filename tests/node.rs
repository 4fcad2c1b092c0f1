//! Integration tests of one `concord serve` node over real sockets (issue 3, "Must show"):
//! every command with the `redis` crate and with `redis-cli`, pipelining, RESP3, expiry, AUTH,
//! durability across `kill -9`, bad input, the HTTP API (siblings and contexts), and `concord up`.
//!
//! Every server listens on 127.0.0.1 only, on ports picked free by the harness, in its own
//! temporary directory, and is killed (by its PID) when its [`harness::Server`] is dropped.

#[path = "node/harness.rs"]
mod harness;

#[path = "node/bad_input.rs"]
mod bad_input;
#[path = "node/commands.rs"]
mod commands;
#[path = "node/data_commands.rs"]
mod data_commands;
#[path = "node/durability.rs"]
mod durability;
#[path = "node/http.rs"]
mod http;
#[path = "node/lists.rs"]
mod lists;
#[path = "node/pubsub.rs"]
mod pubsub;
#[path = "node/redis_cli.rs"]
mod redis_cli;
#[path = "node/scripting.rs"]
mod scripting;
#[path = "node/server_commands.rs"]
mod server_commands;
#[path = "node/transactions.rs"]
mod transactions;
#[path = "node/up.rs"]
mod up;
