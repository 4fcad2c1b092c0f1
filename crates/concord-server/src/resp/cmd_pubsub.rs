//! Pub/sub commands: `SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE PUBLISH SSUBSCRIBE
//! SUNSUBSCRIBE SPUBLISH PUBSUB CHANNELS|NUMSUB|NUMPAT|SHARDCHANNELS|SHARDNUMSUB|HELP`, parsed into a [`PubSubCommand`], and the reply frames Redis sends
//! for them (`pubsub.c`: `addReplyPubsubSubscribed`, `addReplyPubsubMessage`, …): arrays on
//! RESP2, push frames on RESP3. The connection executes them (`server/pubsub.rs`) against the
//! node's registry (`crate::pubsub`).

use super::command::{check_arity, is, CommandParseError, NodeCommand, Parsed};
use super::frame::Frame;
use bytes::Bytes;

type Result<T> = std::result::Result<T, CommandParseError>;

/// A pub/sub command. The comment on each says what Redis replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PubSubCommand {
    /// `SUBSCRIBE channel…`: one `[subscribe, channel, count]` per channel.
    Subscribe(Vec<Bytes>),
    /// `UNSUBSCRIBE [channel…]` (none: every channel): one `[unsubscribe, channel, count]` per
    /// channel, or `[unsubscribe, nil, count]` when there was none.
    Unsubscribe(Vec<Bytes>),
    /// `PSUBSCRIBE pattern…`: one `[psubscribe, pattern, count]` per pattern.
    PSubscribe(Vec<Bytes>),
    /// `PUNSUBSCRIBE [pattern…]`: like `UNSUBSCRIBE`, for patterns.
    PUnsubscribe(Vec<Bytes>),
    /// `SSUBSCRIBE shardchannel…`: one `[ssubscribe, channel, count]` per channel (counting
    /// shard channels only).
    SSubscribe(Vec<Bytes>),
    /// `SUNSUBSCRIBE [shardchannel…]`: like `UNSUBSCRIBE`, for shard channels.
    SUnsubscribe(Vec<Bytes>),
    /// `PUBLISH channel message` (`SPUBLISH` with `shard`): the number of this node's receivers.
    Publish {
        shard: bool,
        channel: Bytes,
        message: Bytes,
    },
    /// `PUBSUB CHANNELS|SHARDCHANNELS [pattern]`: the channels with subscribers here.
    Channels { shard: bool, pattern: Option<Bytes> },
    /// `PUBSUB NUMSUB|SHARDNUMSUB [channel…]`: `[channel, count, …]`.
    NumSub { shard: bool, channels: Vec<Bytes> },
    /// `PUBSUB NUMPAT`: the number of distinct patterns subscribed to here.
    NumPat,
    /// `PUBSUB HELP`.
    Help,
}

impl PubSubCommand {
    /// The commands a RESP2 connection in subscribed mode may still run (besides `PING`,
    /// `QUIT` and `RESET`).
    pub fn allowed_when_subscribed(&self) -> bool {
        matches!(
            self,
            PubSubCommand::Subscribe(_)
                | PubSubCommand::Unsubscribe(_)
                | PubSubCommand::PSubscribe(_)
                | PubSubCommand::PUnsubscribe(_)
                | PubSubCommand::SSubscribe(_)
                | PubSubCommand::SUnsubscribe(_)
        )
    }
}

fn pubsub(cmd: PubSubCommand) -> Result<Parsed> {
    Ok(Parsed::Node(NodeCommand::PubSub(cmd)))
}

/// Parse one of the pub/sub commands (`name` is its spec name; arity is checked already).
pub fn parse(name: &str, a: &[Bytes]) -> Result<Parsed> {
    match name {
        "subscribe" => pubsub(PubSubCommand::Subscribe(a[1..].to_vec())),
        "unsubscribe" => pubsub(PubSubCommand::Unsubscribe(a[1..].to_vec())),
        "psubscribe" => pubsub(PubSubCommand::PSubscribe(a[1..].to_vec())),
        "punsubscribe" => pubsub(PubSubCommand::PUnsubscribe(a[1..].to_vec())),
        "ssubscribe" => pubsub(PubSubCommand::SSubscribe(a[1..].to_vec())),
        "sunsubscribe" => pubsub(PubSubCommand::SUnsubscribe(a[1..].to_vec())),
        "publish" | "spublish" => pubsub(PubSubCommand::Publish {
            shard: name == "spublish",
            channel: a[1].clone(),
            message: a[2].clone(),
        }),
        _ => parse_pubsub(a),
    }
}

/// `PUBSUB <subcommand>` (Redis 7.0 `pubsubCommand`).
fn parse_pubsub(a: &[Bytes]) -> Result<Parsed> {
    let sub = &a[1];
    if is(sub, "help") {
        check_arity("pubsub|help", 2, a.len())?;
        pubsub(PubSubCommand::Help)
    } else if is(sub, "channels") || is(sub, "shardchannels") {
        // Arity -2 (always met: the container's arity is checked already).
        let shard = is(sub, "shardchannels");
        let pattern = match a.len() {
            2 => None,
            3 => Some(a[2].clone()),
            _ => return Err(wrong_subcommand_usage(if shard { "SHARDCHANNELS" } else { "CHANNELS" })),
        };
        pubsub(PubSubCommand::Channels { shard, pattern })
    } else if is(sub, "numsub") || is(sub, "shardnumsub") {
        pubsub(PubSubCommand::NumSub {
            shard: is(sub, "shardnumsub"),
            channels: a[2..].to_vec(),
        })
    } else if is(sub, "numpat") {
        check_arity("pubsub|numpat", 2, a.len())?;
        pubsub(PubSubCommand::NumPat)
    } else {
        Err(CommandParseError::UnknownSubcommand {
            command: "PUBSUB".into(),
            subcommand: String::from_utf8_lossy(sub).into_owned(),
        })
    }
}

/// Redis's `addReplySubcommandSyntaxError`.
fn wrong_subcommand_usage(sub: &str) -> CommandParseError {
    super::command::other(format!(
        "unknown subcommand or wrong number of arguments for '{sub}'. Try PUBSUB HELP."
    ))
}

/// `PUBSUB HELP`'s lines (Redis 7.0's).
pub fn help() -> Frame {
    let lines = [
        "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CHANNELS [<pattern>]",
        "    Return the currently active channels matching a <pattern> (default: '*').",
        "NUMPAT",
        "    Return number of subscriptions to patterns.",
        "NUMSUB [<channel> ...]",
        "    Return the number of subscribers for the specified channels, excluding",
        "    pattern subscriptions(default: no channels).",
        "SHARDCHANNELS [<pattern>]",
        "    Return the currently active shard level channels matching a <pattern> (default: '*').",
        "SHARDNUMSUB [<shardchannel> ...]",
        "    Return the number of subscribers for the specified shard level channel(s)",
        "HELP",
        "    Print this help.",
    ];
    Frame::Array(lines.iter().map(|l| Frame::Simple(l.to_string())).collect())
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::from(s.to_string()))
}

/// A reply pushed to a subscriber: a push frame on RESP3 (`>`), an array on RESP2.
fn push(items: Vec<Frame>) -> Frame {
    Frame::Push(items)
}

/// `[kind, name, count]`: a (un)subscribe confirmation (`kind` is `subscribe`, `unsubscribe`,
/// `psubscribe`, `punsubscribe`, `ssubscribe` or `sunsubscribe`); `name` `None` for an unsubscribe-all with nothing to drop.
pub fn confirmation(kind: &str, name: Option<Bytes>, count: usize) -> Frame {
    push(vec![
        bulk(kind),
        name.map(Frame::Bulk).unwrap_or(Frame::Null),
        Frame::Integer(count as i64),
    ])
}

/// A delivered message: `[message, channel, payload]`, `[pmessage, pattern, channel, payload]`
/// or `[smessage, channel, payload]`.
pub fn message_frame(m: &crate::pubsub::Push) -> Frame {
    match m {
        crate::pubsub::Push::SMessage { channel, payload } => push(vec![
            bulk("smessage"),
            Frame::Bulk(channel.clone()),
            Frame::Bulk(payload.clone()),
        ]),
        crate::pubsub::Push::Message { channel, payload } => push(vec![
            bulk("message"),
            Frame::Bulk(channel.clone()),
            Frame::Bulk(payload.clone()),
        ]),
        crate::pubsub::Push::PMessage {
            pattern,
            channel,
            payload,
        } => push(vec![
            bulk("pmessage"),
            Frame::Bulk(pattern.clone()),
            Frame::Bulk(channel.clone()),
            Frame::Bulk(payload.clone()),
        ]),
    }
}

/// `PING [message]` in RESP2 subscribed mode: `[pong, message or ""]` (Redis `pingCommand`).
pub fn subscribed_pong(message: Option<Bytes>) -> Frame {
    Frame::Array(vec![bulk("pong"), Frame::Bulk(message.unwrap_or_default())])
}

/// The error for any other command in RESP2 subscribed mode (Redis 7.0 `processCommand`).
pub fn not_allowed_when_subscribed(command: &str) -> Frame {
    Frame::Error(format!(
        "ERR Can't execute '{command}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{encode_frame, parse_command};
    use bytes::BytesMut;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ').map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    fn parse(line: &str) -> std::result::Result<PubSubCommand, String> {
        match parse_command(&args(line)) {
            Ok(Parsed::Node(NodeCommand::PubSub(c))) => Ok(c),
            Ok(other) => panic!("{line}: {other:?}"),
            Err(e) => Err(e.to_string()),
        }
    }

    fn wire(f: &Frame, resp3: bool) -> String {
        let mut out = BytesMut::new();
        encode_frame(f, resp3, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn parsing_and_redis_errors() {
        let b = |s: &str| Bytes::from(s.to_string());
        assert_eq!(
            parse("SUBSCRIBE a b"),
            Ok(PubSubCommand::Subscribe(vec![b("a"), b("b")]))
        );
        assert_eq!(parse("unsubscribe"), Ok(PubSubCommand::Unsubscribe(vec![])));
        assert_eq!(parse("PSUBSCRIBE n*"), Ok(PubSubCommand::PSubscribe(vec![b("n*")])));
        assert_eq!(parse("PUNSUBSCRIBE"), Ok(PubSubCommand::PUnsubscribe(vec![])));
        assert_eq!(
            parse("PUBLISH c m"),
            Ok(PubSubCommand::Publish {
                shard: false,
                channel: b("c"),
                message: b("m")
            })
        );
        assert_eq!(
            parse("SPUBLISH c m"),
            Ok(PubSubCommand::Publish {
                shard: true,
                channel: b("c"),
                message: b("m")
            })
        );
        assert_eq!(parse("SSUBSCRIBE a"), Ok(PubSubCommand::SSubscribe(vec![b("a")])));
        assert_eq!(parse("SUNSUBSCRIBE"), Ok(PubSubCommand::SUnsubscribe(vec![])));
        assert_eq!(
            parse("PUBSUB channels"),
            Ok(PubSubCommand::Channels {
                shard: false,
                pattern: None
            })
        );
        assert_eq!(
            parse("PUBSUB SHARDCHANNELS a*"),
            Ok(PubSubCommand::Channels {
                shard: true,
                pattern: Some(b("a*"))
            })
        );
        assert_eq!(
            parse("PUBSUB NUMSUB a b"),
            Ok(PubSubCommand::NumSub {
                shard: false,
                channels: vec![b("a"), b("b")]
            })
        );
        assert_eq!(parse("PUBSUB NUMPAT"), Ok(PubSubCommand::NumPat));
        assert_eq!(parse("PUBSUB HELP"), Ok(PubSubCommand::Help));
        assert_eq!(
            parse("SUBSCRIBE").unwrap_err(),
            "ERR wrong number of arguments for 'subscribe' command"
        );
        assert_eq!(
            parse("PUBLISH c").unwrap_err(),
            "ERR wrong number of arguments for 'publish' command"
        );
        assert_eq!(
            parse("PUBSUB").unwrap_err(),
            "ERR wrong number of arguments for 'pubsub' command"
        );
        assert_eq!(
            parse("PUBSUB NUMPAT x").unwrap_err(),
            "ERR wrong number of arguments for 'pubsub|numpat' command"
        );
        assert_eq!(
            parse("PUBSUB CHANNELS a b").unwrap_err(),
            "ERR unknown subcommand or wrong number of arguments for 'CHANNELS'. Try PUBSUB HELP."
        );
        assert_eq!(
            parse("PUBSUB foo").unwrap_err(),
            "ERR unknown subcommand 'foo'. Try PUBSUB HELP."
        );
    }

    #[test]
    fn reply_shapes_on_resp2_and_resp3() {
        let c = confirmation("subscribe", Some(Bytes::from_static(b"ch")), 1);
        assert_eq!(wire(&c, false), "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
        assert_eq!(wire(&c, true), ">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
        let none = confirmation("unsubscribe", None, 0);
        assert_eq!(wire(&none, false), "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
        assert_eq!(wire(&none, true), ">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n");
        let m = message_frame(&crate::pubsub::Push::PMessage {
            pattern: Bytes::from_static(b"c*"),
            channel: Bytes::from_static(b"ch"),
            payload: Bytes::from_static(b"hi"),
        });
        assert_eq!(
            wire(&m, true),
            ">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$2\r\nhi\r\n"
        );
        assert_eq!(wire(&subscribed_pong(None), false), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    }
}
