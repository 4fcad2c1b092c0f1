//! The peer handshake: both sides send `Hello` (cluster, protocol version, region, nonce), check
//! the other's, then prove knowledge of the shared secret with an HMAC over both hellos. A wrong
//! cluster, protocol version or secret is refused with a `Refused { reason }` the other side logs.

use crate::frame::{read_message_limited, write_message, HANDSHAKE_MAX_FRAME_BYTES};
use crate::wire::{Message, WireError, PROTOCOL_VERSION};
use concord_core::ReplicaId;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};

type HmacSha256 = Hmac<Sha256>;

/// Who this side is.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cluster: String,
    pub region: String,
    pub replica: ReplicaId,
    pub secret: String,
}

/// Who the other side proved to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub region: String,
    pub replica: ReplicaId,
}

fn proof(secret: &str, role: &[u8], mine: &[u8; 16], theirs: &[u8; 16], cluster: &str) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"concord-handshake-v1");
    mac.update(role);
    mac.update(cluster.as_bytes());
    mac.update(mine);
    mac.update(theirs);
    mac.finalize().into_bytes().into()
}

/// Run the handshake. `initiator` is the side that connected. `nonce` must be fresh per attempt.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: &Identity,
    initiator: bool,
    nonce: [u8; 16],
) -> Result<PeerInfo, WireError> {
    let hello = Message::Hello {
        protocol: PROTOCOL_VERSION,
        cluster: me.cluster.clone(),
        region: me.region.clone(),
        replica: me.replica,
        nonce,
    };
    write_message(stream, &hello).await?;
    let (their_hello, _) = read_message_limited(stream, HANDSHAKE_MAX_FRAME_BYTES).await?;
    let (peer, their_nonce) = match their_hello {
        Message::Hello {
            protocol,
            cluster,
            region,
            replica,
            nonce,
        } => {
            let refuse = if protocol != PROTOCOL_VERSION {
                Some(format!(
                    "protocol version {protocol} is not supported (this node speaks {PROTOCOL_VERSION})"
                ))
            } else if cluster != me.cluster {
                Some(format!("cluster name {cluster:?} does not match {:?}", me.cluster))
            } else if replica == me.replica {
                Some(format!("peer claims this node's own region id {replica}"))
            } else {
                None
            };
            if let Some(reason) = refuse {
                let _ = write_message(stream, &Message::Refused { reason: reason.clone() }).await;
                return Err(WireError::Handshake(reason));
            }
            (PeerInfo { region, replica }, nonce)
        }
        Message::Refused { reason } => return Err(WireError::Handshake(format!("refused by peer: {reason}"))),
        other => return Err(WireError::Handshake(format!("expected hello, got {}", other.name()))),
    };
    let (my_role, their_role): (&[u8], &[u8]) = if initiator {
        (b"init", b"resp")
    } else {
        (b"resp", b"init")
    };
    let mac = proof(&me.secret, my_role, &nonce, &their_nonce, &me.cluster);
    write_message(stream, &Message::Proof { mac }).await?;
    match read_message_limited(stream, HANDSHAKE_MAX_FRAME_BYTES).await?.0 {
        Message::Proof { mac } => {
            let expected = proof(&me.secret, their_role, &their_nonce, &nonce, &me.cluster);
            // Constant-time comparison.
            let diff = mac.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff != 0 {
                let reason = "secret proof does not match (wrong shared secret)".to_string();
                let _ = write_message(stream, &Message::Refused { reason: reason.clone() }).await;
                return Err(WireError::Handshake(reason));
            }
        }
        Message::Refused { reason } => return Err(WireError::Handshake(format!("refused by peer: {reason}"))),
        other => return Err(WireError::Handshake(format!("expected proof, got {}", other.name()))),
    }
    Ok(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(region: &str, replica: ReplicaId, cluster: &str, secret: &str) -> Identity {
        Identity {
            cluster: cluster.into(),
            region: region.into(),
            replica,
            secret: secret.into(),
        }
    }

    async fn pair(a: Identity, b: Identity) -> (Result<PeerInfo, WireError>, Result<PeerInfo, WireError>) {
        let (mut x, mut y) = tokio::io::duplex(1 << 16);
        tokio::join!(
            handshake(&mut x, &a, true, [1; 16]),
            handshake(&mut y, &b, false, [2; 16])
        )
    }

    #[tokio::test]
    async fn matching_peers_agree() {
        let (a, b) = pair(id("us", 1, "c", "secret-1"), id("eu", 2, "c", "secret-1")).await;
        assert_eq!(a.unwrap().region, "eu");
        assert_eq!(b.unwrap().region, "us");
    }

    #[tokio::test]
    async fn wrong_secret_or_cluster_is_refused_on_both_sides() {
        let (a, b) = pair(id("us", 1, "c", "secret-1"), id("eu", 2, "c", "secret-2")).await;
        assert!(a.is_err() && b.is_err());
        let (a, b) = pair(id("us", 1, "c1", "s"), id("eu", 2, "c2", "s")).await;
        let e = format!("{} / {}", a.unwrap_err(), b.unwrap_err());
        assert!(e.contains("cluster"), "{e}");
    }
}
