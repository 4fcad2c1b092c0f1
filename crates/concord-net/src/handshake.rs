//! The peer handshake: both sides send `Hello` (cluster, protocol version, region, nonce, and the
//! digest of the cluster-wide configuration), check the other's, then prove knowledge of the
//! shared secret with an HMAC over both hellos. A wrong cluster, protocol version, secret or a
//! cluster-wide configuration that differs is refused with a `Refused { reason }` the other side
//! logs.

use crate::frame::{read_frame_limited, read_message_limited, write_message, HANDSHAKE_MAX_FRAME_BYTES};
use crate::wire::{Message, WireError, PROTOCOL_VERSION};
use concord_core::ReplicaId;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
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
    /// The configuration every region must agree on (`concord-server`'s
    /// `Config::cluster_config`).
    pub config: ClusterConfig,
}

/// The `Hello` of protocol 1 (before the config digest), decoded only to name the version of a
/// peer that cannot decode ours.
#[derive(Deserialize)]
enum LegacyHello {
    Hello {
        protocol: u16,
        #[allow(dead_code)]
        cluster: String,
        #[allow(dead_code)]
        region: String,
        #[allow(dead_code)]
        replica: ReplicaId,
        #[allow(dead_code)]
        nonce: [u8; 16],
    },
}

impl LegacyHello {
    fn decode(body: &[u8]) -> Option<u16> {
        let LegacyHello::Hello { protocol, .. } =
            concord_core::codec::decode(crate::wire::MESSAGE_ENCODING_VERSION, body).ok()?;
        Some(protocol)
    }
}

/// Longest summary of one section sent in a `Hello` (the handshake frame is 64 KiB at most).
pub const SECTION_SUMMARY_MAX_CHARS: usize = 480;

/// One section of the cluster-wide configuration: a hash of its canonical form, and a short
/// readable summary of it, so a mismatch can be named ("regions differ: …").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSection {
    pub name: String,
    pub hash: u64,
    pub summary: String,
}

impl ConfigSection {
    /// A section from its canonical text: hashed whole, summarised (cut to
    /// [`SECTION_SUMMARY_MAX_CHARS`]) as given.
    pub fn new(name: &str, canonical: &str, summary: &str) -> Self {
        let mut summary = summary.to_string();
        if summary.chars().count() > SECTION_SUMMARY_MAX_CHARS {
            summary = summary.chars().take(SECTION_SUMMARY_MAX_CHARS - 1).collect();
            summary.push('…');
        }
        ConfigSection {
            name: name.to_string(),
            hash: concord_core::conflict::stable_hash(&[name.as_bytes(), canonical.as_bytes()]),
            summary,
        }
    }
}

/// The digest of the configuration that must be identical in every region (which regions exist
/// with which ids and in which order, the topology, priorities, policies…): regions that disagree
/// would pick different homes and priorities and diverge, so the handshake refuses them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    pub sections: Vec<ConfigSection>,
}

impl ClusterConfig {
    /// One hash over every section (shown in status and logs).
    pub fn hash(&self) -> u64 {
        let parts: Vec<Vec<u8>> = self
            .sections
            .iter()
            .flat_map(|s| [s.name.as_bytes().to_vec(), s.hash.to_be_bytes().to_vec()])
            .collect();
        let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        concord_core::conflict::stable_hash(&refs)
    }

    /// `None` when both agree; else what differs, section by section, naming both sides, e.g.
    /// `regions differ (us: "us=1,eu=2"; eu: "us=2,eu=1")`.
    pub fn differences(&self, mine: &str, theirs: &ClusterConfig, peer: &str) -> Option<String> {
        let mut out = Vec::new();
        for s in &self.sections {
            match theirs.sections.iter().find(|t| t.name == s.name) {
                None => out.push(format!("{} missing at {peer}", s.name)),
                Some(t) if t.hash == s.hash => {}
                Some(t) if t.summary == s.summary => out.push(format!(
                    "{} differ beyond their summary ({mine}: {:016x}; {peer}: {:016x}; summary {:?})",
                    s.name, s.hash, t.hash, s.summary
                )),
                Some(t) => out.push(format!(
                    "{} differ ({mine}: {:?}; {peer}: {:?})",
                    s.name, s.summary, t.summary
                )),
            }
        }
        for t in &theirs.sections {
            if !self.sections.iter().any(|s| s.name == t.name) {
                out.push(format!("{} missing at {mine}", t.name));
            }
        }
        if out.is_empty() {
            None
        } else {
            Some(out.join("; "))
        }
    }
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
        config: me.config.clone(),
    };
    write_message(stream, &hello).await?;
    let body = read_frame_limited(stream, HANDSHAKE_MAX_FRAME_BYTES).await?;
    let their_hello = match Message::decode(&body) {
        Ok(m) => m,
        Err(e) => match LegacyHello::decode(&body) {
            // A peer of protocol 1 (its hello has no config digest): say so, not "malformed".
            Some(protocol) if protocol != PROTOCOL_VERSION => {
                let reason =
                    format!("protocol version {protocol} is not supported (this node speaks {PROTOCOL_VERSION})");
                let _ = write_message(stream, &Message::Refused { reason: reason.clone() }).await;
                return Err(WireError::Handshake(reason));
            }
            _ => return Err(e),
        },
    };
    let (peer, their_nonce) = match their_hello {
        Message::Hello {
            protocol,
            cluster,
            region,
            replica,
            nonce,
            config,
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
                me.config.differences(&me.region, &config, &region).map(|diff| {
                    format!(
                        "cluster config differs from region {region}'s (every region needs the same regions, \
                         topology, priority and policies): {diff}"
                    )
                })
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
            config: ClusterConfig {
                sections: vec![
                    ConfigSection::new("regions", "us=1,eu=2", "us=1,eu=2"),
                    ConfigSection::new("policies", "user:* lww home=us", "user:* lww home=us"),
                ],
            },
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

    #[tokio::test]
    async fn a_differing_cluster_config_is_refused_on_both_sides_naming_the_difference() {
        let a = id("us", 1, "c", "secret-1");
        let mut b = id("eu", 2, "c", "secret-1");
        b.config.sections[0] = ConfigSection::new("regions", "eu=1,us=2", "eu=1,us=2");
        assert_ne!(a.config.hash(), b.config.hash());
        let (ra, rb) = pair(a.clone(), b.clone()).await;
        let (ea, eb) = (ra.unwrap_err().to_string(), rb.unwrap_err().to_string());
        assert!(
            ea.contains(r#"cluster config differs from region eu's"#)
                && ea.contains(r#"regions differ (us: "us=1,eu=2"; eu: "eu=1,us=2")"#),
            "{ea}"
        );
        assert!(
            eb.contains(r#"cluster config differs from region us's"#)
                && eb.contains(r#"regions differ (eu: "eu=1,us=2"; us: "us=1,eu=2")"#),
            "{eb}"
        );
        assert!(!ea.contains("policies differ"), "only what differs is named: {ea}");
        // Two sections differing, and one beyond what the summaries show.
        b.config.sections[1] = ConfigSection::new("policies", "user:* lww home=eu", "user:* lww home=us");
        let (ra, _) = pair(a, b).await;
        let ea = ra.unwrap_err().to_string();
        assert!(
            ea.contains("regions differ") && ea.contains("policies differ beyond their summary"),
            "{ea}"
        );
    }

    #[test]
    fn long_summaries_are_cut_but_the_hash_covers_everything() {
        let long = "x".repeat(10_000);
        let s = ConfigSection::new("policies", &long, &long);
        assert_eq!(s.summary.chars().count(), SECTION_SUMMARY_MAX_CHARS);
        let t = ConfigSection::new("policies", &(long.clone() + "y"), &long);
        assert_eq!(s.summary, t.summary);
        assert_ne!(s.hash, t.hash);
    }

    #[tokio::test]
    async fn a_protocol_1_peer_is_refused_by_version_not_as_garbage() {
        #[derive(Serialize)]
        enum V1 {
            Hello {
                protocol: u16,
                cluster: String,
                region: String,
                replica: ReplicaId,
                nonce: [u8; 16],
            },
        }
        let old = concord_core::codec::encode(
            crate::wire::MESSAGE_ENCODING_VERSION,
            &V1::Hello {
                protocol: 1,
                cluster: "c".into(),
                region: "eu".into(),
                replica: 2,
                nonce: [3; 16],
            },
        );
        let (mut x, mut y) = tokio::io::duplex(1 << 16);
        use tokio::io::AsyncWriteExt;
        y.write_all(&(old.len() as u32).to_be_bytes()).await.unwrap();
        y.write_all(&old).await.unwrap();
        let e = handshake(&mut x, &id("us", 1, "c", "secret-1"), true, [1; 16])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "protocol version 1 is not supported (this node speaks {PROTOCOL_VERSION})"
            )),
            "{e}"
        );
    }
}
