//! The versioned binary encoding of everything Concord persists or sends.
//!
//! Format: one version byte, then the value in postcard (serde, varint integers, deterministic for
//! our ordered maps). A decoder is bounded by its input: postcard never reads past the slice and
//! preallocates cautiously, so a hostile length prefix cannot make it allocate gigabytes.

use crate::version::VersionVector;
use base64::Engine as _;
use serde::{de::DeserializeOwned, Serialize};

pub const KEY_STATE_VERSION: u8 = 1;
/// 2: ops carry `unit_end` (version 1, without it, is still decoded: `Op::decode`).
pub const OP_VERSION: u8 = 2;
pub const CONFLICT_VERSION: u8 = 1;
pub const CONTEXT_TOKEN_VERSION: u8 = 1;
/// Largest context token accepted from a client, in characters.
pub const CONTEXT_TOKEN_MAX_LEN: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty input")]
    Empty,
    #[error("unsupported encoding version {found} (expected {expected})")]
    Version { found: u8, expected: u8 },
    #[error("malformed encoding: {0}")]
    Malformed(String),
    #[error("invalid content: {0}")]
    Invalid(&'static str),
}

pub fn encode<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version];
    postcard::to_io(value, &mut out).expect("encoding into a Vec cannot fail");
    out
}

pub fn decode<T: DeserializeOwned>(version: u8, bytes: &[u8]) -> Result<T, DecodeError> {
    let (&found, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if found != version {
        return Err(DecodeError::Version {
            found,
            expected: version,
        });
    }
    let (value, remaining) = postcard::take_from_bytes(rest).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !remaining.is_empty() {
        return Err(DecodeError::Malformed(format!("{} trailing bytes", remaining.len())));
    }
    Ok(value)
}

/// The opaque causal context token a client reads and sends back with a write.
pub fn context_token(ctx: &VersionVector) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(encode(CONTEXT_TOKEN_VERSION, ctx))
}

pub fn parse_context_token(token: &[u8]) -> Result<VersionVector, DecodeError> {
    if token.is_empty() {
        return Ok(VersionVector::new());
    }
    if token.len() > CONTEXT_TOKEN_MAX_LEN {
        return Err(DecodeError::Invalid("context token too long"));
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    decode(CONTEXT_TOKEN_VERSION, &raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_token_round_trip_and_rejects_garbage() {
        let vv: VersionVector = [(1, 7), (2, 300)].into_iter().collect();
        let t = context_token(&vv);
        assert_eq!(parse_context_token(t.as_bytes()).unwrap(), vv);
        assert!(parse_context_token(b"!!!").is_err());
        assert!(matches!(parse_context_token(b"AgE"), Err(DecodeError::Version { .. })));
    }

    #[test]
    fn decode_rejects_trailing_and_truncated() {
        let vv: VersionVector = [(1, 7)].into_iter().collect();
        let mut bytes = encode(9, &vv);
        assert_eq!(decode::<VersionVector>(9, &bytes).unwrap(), vv);
        bytes.push(0);
        assert!(decode::<VersionVector>(9, &bytes).is_err());
        assert!(decode::<VersionVector>(9, &bytes[..2]).is_err());
        assert_eq!(decode::<VersionVector>(9, &[]), Err(DecodeError::Empty));
    }
}
