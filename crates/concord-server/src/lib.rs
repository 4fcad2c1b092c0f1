//! # concord-server
//!
//! The Concord node: drives the core engine and the store ([`node`]), and serves it over the Redis
//! protocol ([`resp`], [`server`]) and HTTP/JSON ([`http`]). Front ends talk to the node's API,
//! never to storage directly.
//!
//! Must not be depended on by `concord-core` or `concord-store` (dependencies point inward).

pub mod aae;
pub mod blocking_pop;
pub mod clients;
pub mod config;
pub mod env;
pub mod http;
pub mod lua;
pub mod lua_bit;
pub mod lua_json;
pub mod lua_msgpack;
pub mod node;
pub mod pubsub;
pub mod replication;
pub mod resp;
pub mod routing;
pub mod script;
pub mod server;
