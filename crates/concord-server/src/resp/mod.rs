//! # RESP: Concord's Redis-protocol layer
//!
//! Bytes from a Redis client become typed commands, and replies become bytes again:
//!
//! - [`frame`]: [`Frame`] (every RESP2/RESP3 value) and [`parse_request`], the incremental,
//!   bounded parser for client requests (multibulk and inline), with Redis's error texts.
//! - [`command`]: [`parse_command`] turns a request's arguments into a [`Parsed`] — an engine
//!   [`concord_core::Request`] plus the [`ReplyShape`] that makes its reply this command's reply,
//!   or a [`NodeCommand`] the node answers itself — checking arity and options like Redis.
//! - [`cmd_server`]: the server and connection commands (`CLIENT`, `CONFIG SET`, `TIME`, `MEMORY`,
//!   …) parsed into a [`cmd_server::ServerCommand`] the node executes.
//! - [`cmd_data`]: data commands beyond DESIGN §6 on the existing types (`GETRANGE`, `EXPIREAT`,
//!   `SINTER`, …), parsed into engine requests.
//! - [`cmd_zset`]: sorted-set and HyperLogLog commands (`ZADD`, `ZRANGE`, `PFADD`, …).
//! - [`cmd_list`]: list commands, and the blocking pops as a [`Blocking`] the node retries.
//! - [`cmd_pubsub`]: `SUBSCRIBE`, `PUBLISH`, `PUBSUB …` and the frames pushed to subscribers.
//! - [`encode`]: [`encode_frame`] writes RESP2 or RESP3 (downgrading RESP3-only types on RESP2);
//!   [`reply_to_frame`] and [`error_frame`] are the one place engine replies and errors map to RESP.
//!
//! A connection loop is: `parse_request` → `parse_command` → execute (engine or node) →
//! `shape_reply` → `reply_to_frame` → `encode_frame`; a [`ProtocolError`] is answered with
//! [`ProtocolError::to_frame`] and the connection is closed, as Redis does.
//!
//! Must not depend on: sockets, an async runtime, storage, or the node's state. Everything here is
//! a pure function of its input, so it is tested byte for byte without a server.

pub mod cmd_data;
pub mod cmd_list;
pub mod cmd_pubsub;
pub mod cmd_server;
pub mod cmd_zset;
pub mod command;
pub mod encode;
pub mod frame;

pub use command::{
    command_reply, config_get_reply, is_blocking, is_noscript, parse_command, shape_reply, Blocking, ClientAttribute,
    CommandParseError, CommandQuery, Credentials, Eval, NodeCommand, Parsed, ReplyShape, ScriptCommand, ScriptSource,
    COMMANDS,
};
pub use encode::{encode_frame, encode_reply, error_frame, format_double, frame_to_reply, reply_to_frame};
pub use frame::{parse_frame, parse_i64_strict, parse_request, Frame, Limits, ProtocolError, MAX_FRAME_DEPTH};
