//! `EVAL EVALSHA EVAL_RO EVALSHA_RO` and `SCRIPT LOAD|EXISTS|FLUSH|KILL|HELP` on a connection
//! (DESIGN §8.4).
//!
//! The script comes from the node's cache ([`crate::script::Scripts`]: `EVAL` compiles and caches
//! it, `EVALSHA` finds it or answers `NOSCRIPT`) and runs as one atomic unit in this region,
//! replicated as one unit: [`crate::node::Node::client_eval`], which says what a script's
//! commands may do.

use super::{Connection, Next};
use crate::node::NodeError;
use crate::resp::{self, Eval, Frame, ScriptCommand, ScriptSource};
use bytes::Bytes;

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
        match self
            .node
            .client_eval(&script, &eval.keys, &eval.args, eval.read_only)
            .await
        {
            Ok(done) => {
                if let Some(seq) = done.own_seq {
                    self.last_write_seq = seq;
                }
                self.note_home_write(done.home_dot);
                (done.frame, done.ticket, Next::Continue)
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
