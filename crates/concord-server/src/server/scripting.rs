//! `EVAL EVALSHA EVAL_RO EVALSHA_RO` and `SCRIPT LOAD|EXISTS|FLUSH|KILL|HELP` on a connection
//! (DESIGN §8.4).
//!
//! A script runs in this region under one engine lock, as one atomic unit
//! ([`crate::node::Node::execute_with`]): no other client, here or in another region, sees part
//! of it — its writes replicate as one unit that every other region applies together
//! (`Op::unit_end`), as a `MULTI`/`EXEC` transaction's. Each `redis.call` is parsed by the same
//! command table and parsers as a client's command ([`resp::parse_command`]) and executed in that
//! unit; its reply feeds the script.
//!
//! - Commands Redis refuses in scripts (the `noscript` flag: `MULTI`, `EXEC`, `WATCH`, `EVAL`,
//!   `BLPOP`, `CLIENT`, `WAIT`, …) are refused with Redis's error; the other connection and
//!   server commands Concord answers outside the engine (`INFO`, `TIME`, …) are refused too
//!   (a script's commands must be deterministic data commands), except `PING` and `ECHO`. A
//!   blocking command without `noscript` (`BLMPOP`, `BZMPOP`) does not block: it is its
//!   non-blocking form, as in Redis.
//! - A write of a key homed in another region is refused (the script must run at the home; it
//!   is not forwarded, since the rest of the script runs here); `EVAL_RO` refuses every write.
//! - A script that fails part way (a `redis.call` error, a Lua error, its instruction or memory
//!   budget exceeded) keeps the writes it made before the failure, as Redis does: they are
//!   replicated, still as one unit.
//! - The unit waits for the strictest ack level among the keys the script wrote.

use super::{Connection, Next};
use crate::node::{Node, NodeError};
use crate::resp::{self, CommandParseError, Eval, Frame, NodeCommand, Parsed, ScriptCommand, ScriptSource};
use bytes::Bytes;
use concord_core::{Reply, Unit};

/// Redis 7.0's `SCRIPT HELP`, less `DEBUG` (not offered).
const HELP: &[&str] = &[
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
];

impl Connection {
    pub(super) async fn eval(&mut self, eval: Eval) -> (Frame, Option<u64>, Next) {
        let answer = |f: Frame| (f, None, Next::Continue);
        let script = match &eval.script {
            ScriptSource::Source(source) => match self.node.scripts.load(source) {
                Ok(s) => s,
                Err(e) => return answer(Frame::Error(e)),
            },
            ScriptSource::Sha(sha) => match self.node.scripts.get(sha) {
                Some(s) => s,
                None => return answer(Frame::Error("NOSCRIPT No matching script. Please use EVAL.".into())),
            },
        };
        let node = self.node.clone();
        let read_only = eval.read_only;
        let ran = node
            .client_script(!read_only, |unit, written| {
                let mut call = |args: Vec<Bytes>| script_call(&node, unit, written, read_only, args);
                node.scripts.run(&script, &eval.keys, &eval.args, &mut call)
            })
            .await;
        match ran {
            Ok((frame, ticket, own_seq)) => {
                if let Some(seq) = own_seq {
                    self.last_write_seq = seq;
                }
                (frame, ticket, Next::Continue)
            }
            Err(NodeError::Command(e)) => answer(resp::error_frame(&e)),
            Err(e) => answer(Frame::Error(e.to_string())),
        }
    }

    pub(super) fn script_command(&mut self, cmd: ScriptCommand) -> (Frame, Option<u64>, Next) {
        let scripts = &self.node.scripts;
        let frame = match cmd {
            ScriptCommand::Load(source) => match scripts.load(&source) {
                Ok(s) => Frame::Bulk(Bytes::from(s.sha)),
                Err(e) => Frame::Error(e),
            },
            ScriptCommand::Exists(shas) => Frame::Array(
                shas.iter()
                    .map(|sha| Frame::Integer(i64::from(scripts.exists(sha))))
                    .collect(),
            ),
            ScriptCommand::Flush => {
                scripts.flush();
                Frame::Simple("OK".into())
            }
            // A script never outlives its instruction budget, and holds the engine meanwhile.
            ScriptCommand::Kill => Frame::Error("NOTBUSY No scripts in execution right now.".into()),
            ScriptCommand::Help => Frame::Array(HELP.iter().map(|l| Frame::Simple((*l).into())).collect()),
        };
        (frame, None, Next::Continue)
    }
}

/// One `redis.call`/`redis.pcall` of a script: parsed like a client's command, checked, and run
/// in the script's unit. Records the keys it writes in `written`.
fn script_call(
    node: &Node,
    unit: &mut Unit<'_>,
    written: &mut Vec<Bytes>,
    read_only: bool,
    args: Vec<Bytes>,
) -> Result<Reply, String> {
    // Redis's words for the errors a command gets from a script.
    let parsed = resp::parse_command(&args).map_err(|e| match e {
        CommandParseError::UnknownCommand { .. } => "ERR Unknown Redis command called from script".to_string(),
        CommandParseError::WrongArity(_) => "ERR Wrong number of args calling Redis command from script".to_string(),
        e => e.to_string(),
    })?;
    let not_allowed = || "ERR This Redis command is not allowed from script".to_string();
    if resp::is_noscript(&args[0]) {
        return Err(not_allowed());
    }
    let (req, shape) = match parsed {
        Parsed::Engine(req, shape) => (req, shape),
        Parsed::Blocking(b) => (b.request, b.shape),
        Parsed::Node(NodeCommand::Ping(None)) => return Ok(Reply::Status("PONG".into())),
        Parsed::Node(NodeCommand::Ping(Some(m)) | NodeCommand::Echo(m)) => return Ok(Reply::Bulk(m)),
        Parsed::Node(_) => return Err(not_allowed()),
    };
    if req.is_write() {
        if read_only {
            return Err("ERR Write commands are not allowed from read-only scripts.".into());
        }
        node.check_unit_write(unit.engine(), &req, "script")
            .map_err(|e| e.to_string())?;
        written.extend(req.keys().unwrap_or_default().into_iter().cloned());
    }
    unit.execute(req)
        .map(|reply| resp::shape_reply(shape, reply))
        .map_err(|e| e.to_string())
}
