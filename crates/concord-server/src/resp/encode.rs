//! Frames to bytes, RESP2 or RESP3, and the engine's replies/errors to frames.
//!
//! RESP2 has no map, set, null, double or boolean, so they are downgraded the way Redis does:
//! a map becomes a flat `[k1, v1, k2, v2, ...]` array, a set an array, null `$-1` (or `*-1` for a
//! null array), a double a bulk string, a boolean the integer 1/0.

use super::frame::Frame;
use bytes::{BufMut, BytesMut};
use concord_core::{CommandError, Reply};

/// Append `frame` to `out` in RESP3 (`resp3`) or RESP2.
pub fn encode_frame(frame: &Frame, resp3: bool, out: &mut BytesMut) {
    match frame {
        Frame::Simple(s) => line(out, b'+', s.as_bytes()),
        Frame::Error(s) => line(out, b'-', s.as_bytes()),
        Frame::Integer(n) => header(out, b':', *n),
        Frame::Bulk(b) => bulk(out, b),
        Frame::Null if resp3 => out.put_slice(b"_\r\n"),
        Frame::Null => out.put_slice(b"$-1\r\n"),
        Frame::NullArray if resp3 => out.put_slice(b"_\r\n"),
        Frame::NullArray => out.put_slice(b"*-1\r\n"),
        Frame::Array(items) => {
            header(out, b'*', len_i64(items.len()));
            items.iter().for_each(|f| encode_frame(f, resp3, out));
        }
        Frame::Push(items) => {
            header(out, if resp3 { b'>' } else { b'*' }, len_i64(items.len()));
            items.iter().for_each(|f| encode_frame(f, resp3, out));
        }
        Frame::Set(items) => {
            header(out, if resp3 { b'~' } else { b'*' }, len_i64(items.len()));
            items.iter().for_each(|f| encode_frame(f, resp3, out));
        }
        Frame::Map(pairs) => {
            if resp3 {
                header(out, b'%', len_i64(pairs.len()));
            } else {
                header(out, b'*', len_i64(pairs.len()).saturating_mul(2));
            }
            for (k, v) in pairs {
                encode_frame(k, resp3, out);
                encode_frame(v, resp3, out);
            }
        }
        Frame::Pairs(pairs) => {
            if resp3 {
                header(out, b'*', len_i64(pairs.len()));
            } else {
                header(out, b'*', len_i64(pairs.len()).saturating_mul(2));
            }
            for (a, b) in pairs {
                if resp3 {
                    header(out, b'*', 2);
                }
                encode_frame(a, resp3, out);
                encode_frame(b, resp3, out);
            }
        }
        Frame::Double(d) => {
            let text = format_double(*d);
            if resp3 {
                line(out, b',', text.as_bytes());
            } else {
                bulk(out, text.as_bytes());
            }
        }
        Frame::Boolean(b) if resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Frame::Boolean(b) => header(out, b':', i64::from(*b)),
    }
}

/// The engine's reply as a frame: `Ok` → `+OK`, `Nil` → null, `Status` → simple string.
pub fn reply_to_frame(reply: Reply) -> Frame {
    match reply {
        Reply::Ok => Frame::Simple("OK".to_owned()),
        Reply::Nil => Frame::Null,
        Reply::Int(n) => Frame::Integer(n),
        Reply::Bulk(b) => Frame::Bulk(b),
        Reply::Status(s) => Frame::Simple(s),
        Reply::Array(items) => Frame::Array(items.into_iter().map(reply_to_frame).collect()),
        Reply::Map(pairs) => Frame::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (reply_to_frame(k), reply_to_frame(v)))
                .collect(),
        ),
        Reply::Set(items) => Frame::Set(items.into_iter().map(reply_to_frame).collect()),
        Reply::Double(d) => Frame::Double(d),
        Reply::Pairs(pairs) => Frame::Pairs(
            pairs
                .into_iter()
                .map(|(a, b)| (reply_to_frame(a), reply_to_frame(b)))
                .collect(),
        ),
        Reply::Error(line) => Frame::Error(line),
    }
}

/// A frame as a reply (what a home region sends back for a script it ran for another region):
/// the inverse of [`reply_to_frame`] on the frames replies make. RESP3-only shapes keep their
/// kind; a push frame (never a command's reply) is an array; a null array is nil.
pub fn frame_to_reply(frame: Frame) -> Reply {
    let pairs = |p: Vec<(Frame, Frame)>| {
        p.into_iter()
            .map(|(a, b)| (frame_to_reply(a), frame_to_reply(b)))
            .collect()
    };
    match frame {
        Frame::Simple(s) if s == "OK" => Reply::Ok,
        Frame::Simple(s) => Reply::Status(s),
        Frame::Error(line) => Reply::Error(line),
        Frame::Integer(n) => Reply::Int(n),
        Frame::Bulk(b) => Reply::Bulk(b),
        Frame::Null | Frame::NullArray => Reply::Nil,
        Frame::Array(items) | Frame::Push(items) => Reply::Array(items.into_iter().map(frame_to_reply).collect()),
        Frame::Map(p) => Reply::Map(pairs(p)),
        Frame::Set(items) => Reply::Set(items.into_iter().map(frame_to_reply).collect()),
        Frame::Double(d) => Reply::Double(d),
        Frame::Boolean(b) => Reply::Int(i64::from(b)),
        Frame::Pairs(p) => Reply::Pairs(pairs(p)),
    }
}

/// A command error as an error frame. Its `Display` already is the Redis text (`ERR ...`,
/// `WRONGTYPE ...`), so this is the single place the RESP front end maps engine errors.
pub fn error_frame(e: &CommandError) -> Frame {
    Frame::Error(e.to_string())
}

/// Convenience: `reply_to_frame` then `encode_frame`.
pub fn encode_reply(reply: Reply, resp3: bool, out: &mut BytesMut) {
    encode_frame(&reply_to_frame(reply), resp3, out);
}

fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn header(out: &mut BytesMut, kind: u8, n: i64) {
    out.put_u8(kind);
    out.put_slice(n.to_string().as_bytes());
    out.put_slice(b"\r\n");
}

fn bulk(out: &mut BytesMut, data: &[u8]) {
    header(out, b'$', len_i64(data.len()));
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// A one-line frame. CR and LF would end the line early and desynchronize the client, so they
/// become spaces (Redis does the same to error messages).
fn line(out: &mut BytesMut, kind: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(kind);
    for &b in text {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

/// Redis's spelling: `inf`, `-inf`, `nan`; otherwise the shortest text that reads back to the same
/// value, with an exponent only for very large or very small magnitudes.
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".to_owned()
    } else {
        // As Redis 7.2 writes scores: `inf`, shortest round-trip text, `1e+300` past the range.
        String::from_utf8_lossy(&concord_core::engine::score_text(d)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::{parse_frame, Limits};
    use super::*;
    use bytes::Bytes;

    fn enc(frame: &Frame, resp3: bool) -> String {
        let mut out = BytesMut::new();
        encode_frame(frame, resp3, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn scalars() {
        for resp3 in [false, true] {
            assert_eq!(enc(&Frame::Simple("OK".into()), resp3), "+OK\r\n");
            assert_eq!(enc(&Frame::Error("ERR x".into()), resp3), "-ERR x\r\n");
            assert_eq!(enc(&Frame::Integer(-42), resp3), ":-42\r\n");
            assert_eq!(
                enc(&Frame::Bulk(Bytes::from_static(b"a\r\nb")), resp3),
                "$4\r\na\r\nb\r\n"
            );
            assert_eq!(enc(&Frame::Bulk(Bytes::new()), resp3), "$0\r\n\r\n");
        }
    }

    #[test]
    fn resp2_downgrades() {
        assert_eq!(enc(&Frame::Null, false), "$-1\r\n");
        assert_eq!(enc(&Frame::NullArray, false), "*-1\r\n");
        let map = Frame::Map(vec![(Frame::Bulk("f".into()), Frame::Integer(1))]);
        assert_eq!(enc(&map, false), "*2\r\n$1\r\nf\r\n:1\r\n");
        assert_eq!(enc(&Frame::Set(vec![Frame::Integer(1)]), false), "*1\r\n:1\r\n");
        assert_eq!(enc(&Frame::Double(1.5), false), "$3\r\n1.5\r\n");
        assert_eq!(enc(&Frame::Boolean(true), false), ":1\r\n");
        assert_eq!(enc(&Frame::Boolean(false), false), ":0\r\n");
    }

    #[test]
    fn resp3_types() {
        assert_eq!(enc(&Frame::Null, true), "_\r\n");
        assert_eq!(enc(&Frame::NullArray, true), "_\r\n");
        let map = Frame::Map(vec![(Frame::Bulk("f".into()), Frame::Integer(1))]);
        assert_eq!(enc(&map, true), "%1\r\n$1\r\nf\r\n:1\r\n");
        assert_eq!(enc(&Frame::Set(vec![Frame::Integer(1)]), true), "~1\r\n:1\r\n");
        assert_eq!(enc(&Frame::Double(1.5), true), ",1.5\r\n");
        assert_eq!(enc(&Frame::Double(f64::NEG_INFINITY), true), ",-inf\r\n");
        let pairs = Frame::Pairs(vec![(Frame::Bulk("m".into()), Frame::Double(1.5))]);
        assert_eq!(enc(&pairs, false), "*2\r\n$1\r\nm\r\n$3\r\n1.5\r\n");
        assert_eq!(enc(&pairs, true), "*1\r\n*2\r\n$1\r\nm\r\n,1.5\r\n");
        assert_eq!(enc(&Frame::Double(1e300), false), "$6\r\n1e+300\r\n");
        assert_eq!(enc(&Frame::Boolean(true), true), "#t\r\n");
    }

    #[test]
    fn line_frames_cannot_break_framing() {
        assert_eq!(enc(&Frame::Error("ERR a\r\nb".into()), false), "-ERR a  b\r\n");
        assert_eq!(enc(&Frame::Simple("x\ny".into()), true), "+x y\r\n");
    }

    #[test]
    fn doubles() {
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(0.1), "0.1");
        assert_eq!(format_double(-0.0), "-0");
        assert_eq!(format_double(1e300), "1e+300");
        assert_eq!(format_double(1.5e-7), "1.5e-07");
        assert_eq!(format_double(f64::NAN), "nan");
        for d in [3.0, 0.1, 1e300, 1.5e-7, -2.25, f64::MAX, f64::MIN_POSITIVE] {
            assert_eq!(format_double(d).parse::<f64>().unwrap(), d);
        }
    }

    #[test]
    fn replies_and_errors() {
        assert_eq!(reply_to_frame(Reply::Ok), Frame::Simple("OK".into()));
        assert_eq!(reply_to_frame(Reply::Nil), Frame::Null);
        assert_eq!(
            reply_to_frame(Reply::Status("PONG".into())),
            Frame::Simple("PONG".into())
        );
        assert_eq!(
            reply_to_frame(Reply::Map(vec![(Reply::bulk("a"), Reply::Set(vec![Reply::Int(1)]))])),
            Frame::Map(vec![(Frame::Bulk("a".into()), Frame::Set(vec![Frame::Integer(1)]))])
        );
        assert_eq!(
            error_frame(&CommandError::WrongType),
            Frame::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into())
        );
        let mut out = BytesMut::new();
        encode_reply(Reply::Array(vec![Reply::Nil, Reply::Int(2)]), false, &mut out);
        assert_eq!(&out[..], b"*2\r\n$-1\r\n:2\r\n");
    }

    #[test]
    fn resp3_round_trips_through_the_reply_parser() {
        let frame = Frame::Array(vec![
            Frame::Map(vec![(
                Frame::Simple("k".into()),
                Frame::Set(vec![Frame::Bulk("m".into()), Frame::Null]),
            )]),
            Frame::Double(-2.5),
            Frame::Boolean(false),
            Frame::Integer(i64::MIN),
            Frame::Error("WRONGTYPE x".into()),
            Frame::Array(vec![]),
        ]);
        let mut out = BytesMut::new();
        encode_frame(&frame, true, &mut out);
        let (back, used) = parse_frame(&out, &Limits::default()).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(back, frame);
    }

    /// What a home region sends back for a forwarded script comes out as the frame it ran to.
    #[test]
    fn frames_of_replies_round_trip_through_replies() {
        let frame = Frame::Array(vec![
            Frame::Integer(1),
            Frame::Bulk(Bytes::from_static(b"two")),
            Frame::Null,
            Frame::Simple("OK".into()),
            Frame::Simple("FINE".into()),
            Frame::Error("E3 bad".into()),
            Frame::Array(vec![Frame::Double(1.5), Frame::Set(vec![Frame::Integer(2)])]),
            Frame::Map(vec![(Frame::Bulk(Bytes::from_static(b"k")), Frame::Integer(3))]),
            Frame::Pairs(vec![(Frame::Bulk(Bytes::from_static(b"m")), Frame::Double(4.0))]),
        ]);
        assert_eq!(reply_to_frame(frame_to_reply(frame.clone())), frame);
    }
}
