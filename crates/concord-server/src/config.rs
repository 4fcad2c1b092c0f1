//! The TOML configuration of a cluster, shared by every node (`concord serve --config FILE
//! --region NAME` picks its own region from it). Validation errors name the field.

use concord_core::{AckLevel, Home, Policy, PolicySet, ReplicaId, Strategy};
use concord_net::handshake::{ClusterConfig, ConfigSection};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config: field `{field}`: {reason}")]
    Field { field: String, reason: String },
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Every group commit is fsynced before its writes are acknowledged.
    Always,
    /// Like `always`, but a group commit waits briefly for more writers to join it.
    #[default]
    Batch,
    /// Writes are acknowledged once committed to the file, fsynced once a second.
    Everysec,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    #[default]
    Mesh,
    Ring,
    Star,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default)]
    pub fsync: Fsync,
    /// For `batch`: how long a group commit waits for more writers, in microseconds.
    #[serde(default = "default_batch_delay_us")]
    pub batch_delay_us: u64,
}

fn default_batch_delay_us() -> u64 {
    200
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            fsync: Fsync::Batch,
            batch_delay_us: default_batch_delay_us(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest value (and largest bulk argument) a client may send, in bytes.
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: usize,
    /// Most concurrent client connections (RESP).
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// Most changes waiting for a group commit before writers are made to wait.
    #[serde(default = "default_max_pending_writes")]
    pub max_pending_writes: usize,
}

/// 16 MiB: the most a value may be, a quarter of a replication frame (see `validate`).
fn default_max_value_bytes() -> usize {
    concord_net::frame::MAX_FRAME_BYTES / 4
}
fn default_max_clients() -> usize {
    10_000
}
fn default_max_pending_writes() -> usize {
    100_000
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_value_bytes: default_max_value_bytes(),
            max_clients: default_max_clients(),
            max_pending_writes: default_max_pending_writes(),
        }
    }
}

/// `[anti_entropy]`: Merkle-tree comparison of key states with each peer (DESIGN §8.2,
/// `crate::aae`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AntiEntropyConfig {
    /// How often this node compares its key states with each region it pulls from, in ms (the
    /// first comparison starts one interval after start-up); 0 turns anti-entropy off.
    #[serde(default = "default_aae_interval_ms")]
    pub interval_ms: u64,
}

fn default_aae_interval_ms() -> u64 {
    30_000
}

impl Default for AntiEntropyConfig {
    fn default() -> Self {
        AntiEntropyConfig {
            interval_ms: default_aae_interval_ms(),
        }
    }
}

/// `[testing]`: hooks that break a node on purpose, for tests that show a fault is detected and
/// repaired. Never enable them in production.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestingConfig {
    /// Serve `POST /v1/admin/test/corrupt/{key}` (forget a key's state without an op).
    #[serde(default)]
    pub hooks: bool,
    /// Send replication batches grouped by origin (in seq order) instead of merged by HLC: the
    /// stream then does not respect causality on its own, so the receiver's causal buffer must
    /// (the simulation turns this on for half its seeds, to exercise it).
    #[serde(default)]
    pub batches_by_origin: bool,
    /// Cut replication batches at this many ops (default and most: 512): small batches split
    /// the ops of one unit between messages, so receivers must hold them until the unit is whole.
    #[serde(default)]
    pub max_batch_ops: Option<usize>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    pub id: ReplicaId,
    /// RESP listen address.
    pub resp: SocketAddr,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// Peer (replication) listen address.
    pub peer: SocketAddr,
    pub data_dir: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    #[serde(rename = "match")]
    pub pattern: String,
    #[serde(default = "default_strings")]
    pub strings: String,
    pub script: Option<PathBuf>,
    pub home: Option<String>,
    #[serde(default = "default_true")]
    pub replicate: bool,
    pub read_miss: Option<String>,
    pub ack: Option<String>,
}

fn default_strings() -> String {
    "lww".into()
}
fn default_true() -> bool {
    true
}

/// The `[[policy]]` rules alone (the file `concord up --policies FILE` takes).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub policy: Vec<PolicyConfig>,
    pub priority: Option<Vec<String>>,
    pub max_siblings: Option<usize>,
    pub ack_timeout_ms: Option<u64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub cluster: String,
    /// Shared secret for the peer handshake (HMAC).
    pub secret: String,
    /// Optional password clients must send with `AUTH` (like Redis `requirepass`).
    pub password: Option<String>,
    #[serde(default)]
    pub topology: Topology,
    /// The hub region of a `star` topology.
    pub hub: Option<String>,
    /// Region names, highest priority first (for `strings = "priority"`); default: config order.
    pub priority: Option<Vec<String>>,
    #[serde(default = "default_max_siblings")]
    pub max_siblings: usize,
    /// How long a write with an ack level (`ack` in a policy, `?ack=` on HTTP) waits for other
    /// regions before it is answered with how many have it.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Delay added to every replication link at start, in ms (a simulated WAN; `concord up
    /// --wan-delay-ms`). Change it at run time with `PUT /v1/admin/links/{peer}`.
    #[serde(default)]
    pub link_delay_ms: u64,
    /// Ops retained in the log after every peer acknowledged them.
    #[serde(default = "default_log_retention_ops")]
    pub log_retention_ops: u64,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub anti_entropy: AntiEntropyConfig,
    #[serde(default)]
    pub testing: TestingConfig,
    #[serde(rename = "region")]
    pub regions: Vec<RegionConfig>,
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicyConfig>,
    /// The directory of the config file (relative script paths start there).
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    /// [`Config::cluster_config`], computed once (it reads the resolver scripts).
    #[serde(skip)]
    cluster_config: std::sync::OnceLock<ClusterConfig>,
}

fn default_ack_timeout_ms() -> u64 {
    5_000
}

fn default_max_siblings() -> usize {
    16
}
fn default_log_retention_ops() -> u64 {
    100_000
}

impl Config {
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        // Relative script paths are relative to the config file.
        cfg.base_dir = path.parent().map(|p| p.to_path_buf());
        cfg.validate()?;
        cfg.cluster_config(); // hash the scripts now, when the node loads them
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        cfg.cluster_config();
        Ok(cfg)
    }

    /// Check everything a node relies on; the error names the offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster.trim().is_empty() {
            return Err(field("cluster", "must not be empty"));
        }
        if self.secret.len() < 8 {
            return Err(field("secret", "must be at least 8 characters"));
        }
        if self.regions.is_empty() {
            return Err(field("region", "at least one [[region]] is required"));
        }
        let mut names = BTreeSet::new();
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for (i, r) in self.regions.iter().enumerate() {
            let f = |name: &str| format!("region[{i}].{name}");
            if r.name.is_empty()
                || !r
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(field(
                    f("name"),
                    format!("{:?} must be non-empty ASCII letters, digits, - or _", r.name),
                ));
            }
            if !names.insert(r.name.clone()) {
                return Err(field(f("name"), format!("duplicate region name {:?}", r.name)));
            }
            // Writer ids carry the region id in their low 16 bits (DESIGN §8.1).
            if r.id == 0 || r.id > concord_core::MAX_REGION_ID {
                return Err(field(
                    f("id"),
                    format!("{} is out of range; use 1..={}", r.id, concord_core::MAX_REGION_ID),
                ));
            }
            if !ids.insert(r.id) {
                return Err(field(f("id"), format!("duplicate region id {}", r.id)));
            }
            for (n, a) in [("resp", r.resp), ("http", r.http), ("peer", r.peer)] {
                if !addrs.insert(a) {
                    return Err(field(f(n), format!("address {a} is used twice")));
                }
            }
        }
        if self.topology == Topology::Star {
            match &self.hub {
                None => return Err(field("hub", "topology \"star\" needs a hub region")),
                Some(h) if !names.contains(h) => return Err(field("hub", format!("unknown region {h:?}"))),
                _ => {}
            }
        }
        if let Some(p) = &self.priority {
            for (i, n) in p.iter().enumerate() {
                if !names.contains(n) {
                    return Err(field(format!("priority[{i}]"), format!("unknown region {n:?}")));
                }
            }
        }
        if self.max_siblings == 0 {
            return Err(field("max_siblings", "must be at least 1"));
        }
        if self.limits.max_value_bytes < 1024 {
            return Err(field("limits.max_value_bytes", "must be at least 1024"));
        }
        // One op must fit a replication frame (with room for its key and metadata), and so must
        // a key holding a few siblings of the largest value (a snapshot chunk carries one key
        // state at least): a quarter of a frame.
        let most = concord_net::frame::MAX_FRAME_BYTES / 4;
        if self.limits.max_value_bytes > most {
            return Err(field(
                "limits.max_value_bytes",
                format!(
                    "must be at most {most} (16 MiB: a quarter of the {} byte replication frame)",
                    concord_net::frame::MAX_FRAME_BYTES
                ),
            ));
        }
        let aae = self.anti_entropy.interval_ms;
        if aae != 0 && aae < 100 {
            return Err(field("anti_entropy.interval_ms", "must be 0 (off) or at least 100"));
        }
        if self.limits.max_clients == 0 {
            return Err(field("limits.max_clients", "must be at least 1"));
        }
        for (i, p) in self.policies.iter().enumerate() {
            self.policy(i, p)?;
        }
        Ok(())
    }

    fn policy(&self, i: usize, p: &PolicyConfig) -> Result<Policy, ConfigError> {
        let f = |name: &str| format!("policy[{i}].{name}");
        if p.pattern.is_empty() {
            return Err(field(f("match"), "must not be empty"));
        }
        let strings = match p.strings.as_str() {
            "lww" => Strategy::Lww,
            "priority" => Strategy::Priority,
            "siblings" => Strategy::Siblings,
            "script" => match &p.script {
                // Relative paths are relative to the config file's directory.
                Some(path) => {
                    let full = match (&self.base_dir, path.is_relative()) {
                        (Some(dir), true) => dir.join(path),
                        _ => path.clone(),
                    };
                    Strategy::Script(full.display().to_string())
                }
                None => return Err(field(f("script"), "strings = \"script\" needs script = \"path.lua\"")),
            },
            other => {
                return Err(field(
                    f("strings"),
                    format!("{other:?}: expected lww, priority, siblings or script"),
                ))
            }
        };
        // A script that fails to load fails validation, naming the field.
        if let Strategy::Script(path) = &strings {
            crate::lua::load_resolver(std::path::Path::new(path)).map_err(|e| field(f("script"), e))?;
        }
        if p.script.is_some() && !matches!(strings, Strategy::Script(_)) {
            return Err(field(f("script"), "only valid with strings = \"script\""));
        }
        let home = match p.home.as_deref() {
            None => None,
            Some("hash") => Some(Home::Hash),
            Some(r) if self.regions.iter().any(|x| x.name == r) => Some(Home::Region(r.to_string())),
            Some(r) => return Err(field(f("home"), format!("unknown region {r:?} (or \"hash\")"))),
        };
        let read_miss_home = match p.read_miss.as_deref() {
            None | Some("local") => false,
            Some("home") => true,
            Some(o) => return Err(field(f("read_miss"), format!("{o:?}: expected \"home\" or \"local\""))),
        };
        if read_miss_home && home.is_none() {
            return Err(field(f("read_miss"), "read_miss = \"home\" needs a home"));
        }
        let ack = match p.ack.as_deref() {
            None | Some("local") => AckLevel::Local,
            Some("one") => AckLevel::One,
            Some("majority") => AckLevel::Majority,
            Some("all") => AckLevel::All,
            Some(o) => return Err(field(f("ack"), format!("{o:?}: expected local, one, majority or all"))),
        };
        if !p.replicate && (home.is_some() || ack != AckLevel::Local) {
            return Err(field(
                f("replicate"),
                "a region-local pattern (replicate = false) cannot have a home or an ack level",
            ));
        }
        Ok(Policy {
            pattern: p.pattern.clone(),
            strings,
            home,
            replicate: p.replicate,
            read_miss_home,
            ack,
        })
    }

    pub fn region(&self, name: &str) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| r.name == name)
    }

    pub fn region_names(&self) -> BTreeMap<ReplicaId, String> {
        self.regions.iter().map(|r| (r.id, r.name.clone())).collect()
    }

    /// The configuration every region of the cluster must agree on, as the peer handshake
    /// compares it (a mismatch is refused on both sides, naming the sections that differ):
    ///
    /// - `regions`: every region's name and id, in config order (`home = "hash"` and the ring
    ///   successor depend on the order, priorities on the ids);
    /// - `topology`: mesh, ring or star, and the hub;
    /// - `priority`: the effective priority order (the `priority` list, or config order);
    /// - `policies`: `max_siblings` and, in order (first match wins), each rule's `match`,
    ///   `strings`, the *contents* of its `script` (not its path), `home` and `replicate`.
    ///
    /// Deliberately left out, because regions may differ there without diverging: listen
    /// addresses and data dirs (a node may be reached through another address than it binds),
    /// `secret` and `cluster` (checked by the handshake itself), `password`, `storage`,
    /// `limits`, `ack_timeout_ms`, `link_delay_ms`, `log_retention_ops`, and a rule's `ack` and
    /// `read_miss` (they decide how the writing or reading region waits, not what any region
    /// stores). Computed once per `Config` (scripts are read then).
    pub fn cluster_config(&self) -> ClusterConfig {
        self.cluster_config
            .get_or_init(|| self.compute_cluster_config())
            .clone()
    }

    /// One hash of [`Config::cluster_config`] (all sections).
    pub fn cluster_hash(&self) -> u64 {
        self.cluster_config().hash()
    }

    fn compute_cluster_config(&self) -> ClusterConfig {
        let regions = self
            .regions
            .iter()
            .map(|r| format!("{}={}", r.name, r.id))
            .collect::<Vec<_>>()
            .join(",");
        let topology = match (self.topology, &self.hub) {
            (Topology::Mesh, _) => "mesh".to_string(),
            (Topology::Ring, _) => "ring".to_string(),
            (Topology::Star, hub) => format!("star(hub={})", hub.as_deref().unwrap_or("")),
        };
        let priority = match &self.priority {
            Some(names) => names.clone(),
            None => self.regions.iter().map(|r| r.name.clone()).collect(),
        }
        .join(">");
        let mut rules = vec![format!("max_siblings={}", self.max_siblings)];
        let mut canonical_rules = rules.clone();
        for (i, p) in self.policies.iter().enumerate() {
            let Ok(policy) = self.policy(i, p) else {
                rules.push(format!("[{i}] invalid"));
                canonical_rules.push(format!("[{i}] invalid {:?}", p.pattern));
                continue;
            };
            let strings = match &policy.strings {
                Strategy::Script(path) => {
                    let contents = std::fs::read(path).unwrap_or_else(|e| format!("unreadable: {e}").into_bytes());
                    format!("script({:016x})", concord_core::conflict::stable_hash(&[&contents]))
                }
                other => other.name().to_string(),
            };
            let home = match &policy.home {
                None => String::new(),
                Some(Home::Hash) => " home=hash".to_string(),
                Some(Home::Region(r)) => format!(" home={r}"),
            };
            let local = if policy.replicate { "" } else { " replicate=false" };
            let rule = format!("[{i}] {} {strings}{home}{local}", policy.pattern);
            // The pattern is quoted in the hashed form, so no pattern can pass for two fields.
            canonical_rules.push(format!("[{i}] {:?} {strings}{home}{local}", policy.pattern));
            rules.push(rule);
        }
        ClusterConfig {
            sections: vec![
                ConfigSection::new("regions", &regions, &regions),
                ConfigSection::new("topology", &topology, &topology),
                ConfigSection::new("priority", &priority, &priority),
                ConfigSection::new("policies", &canonical_rules.join("\n"), &rules.join("; ")),
            ],
        }
    }

    /// The core's policy set (validated: call after `validate`).
    pub fn policy_set(&self) -> PolicySet {
        let rules = self
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| self.policy(i, p).expect("validated"))
            .collect();
        let priority = match &self.priority {
            Some(names) => names.iter().filter_map(|n| self.region(n).map(|r| r.id)).collect(),
            None => self.regions.iter().map(|r| r.id).collect(),
        };
        PolicySet::new(rules, priority, self.max_siblings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SAMPLE: &str = r#"
cluster = "test"
secret = "0123456789"
[[region]]
name = "us"
id = 1
resp = "127.0.0.1:7001"
http = "127.0.0.1:8001"
peer = "127.0.0.1:9001"
data_dir = "/tmp/x/us"
[[policy]]
match = "cart:*"
strings = "siblings"
"#;

    #[test]
    fn parses_and_builds_policies() {
        let c = Config::parse(SAMPLE).unwrap();
        assert_eq!(c.storage.fsync, Fsync::Batch);
        assert_eq!(c.policy_set().policy_for(b"cart:1").strings, Strategy::Siblings);
    }

    #[test]
    fn errors_name_the_field() {
        let bad = SAMPLE.replace("strings = \"siblings\"", "strings = \"newest\"");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("policy[0].strings"), "{e}");
        let bad = SAMPLE.replace("id = 1", "id = 0");
        assert!(Config::parse(&bad).unwrap_err().to_string().contains("region[0].id"));
        let bad = SAMPLE.replace("cluster = \"test\"", "cluster = \"test\"\nfsync = \"always\"");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("fsync"), "{e}");
        let bad = format!("{SAMPLE}\n[anti_entropy]\ninterval_ms = 5\n");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("anti_entropy.interval_ms"), "{e}");
        let ok = Config::parse(&format!(
            "{SAMPLE}\n[anti_entropy]\ninterval_ms = 0\n[testing]\nhooks = true\n"
        ))
        .unwrap();
        assert!(ok.anti_entropy.interval_ms == 0 && ok.testing.hooks);
        let defaults = Config::parse(SAMPLE).unwrap();
        assert!(defaults.anti_entropy.interval_ms == 30_000 && !defaults.testing.hooks);
        let bad = SAMPLE.replace("resp = \"127.0.0.1:7001\"", "resp = \"not-an-addr\"");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("resp"), "{e}");
    }

    #[test]
    fn the_largest_legal_op_fits_a_frame() {
        use bytes::Bytes;
        use concord_core::{Delta, Dot, Hlc, KeyState, Op, Payload, Slot, VersionVector};
        use concord_net::frame::MAX_FRAME_BYTES;
        use concord_net::Message;
        let c = Config::parse(SAMPLE).unwrap();
        let max = c.limits.max_value_bytes;
        assert_eq!(max, 16 << 20, "the default is the largest value allowed");
        let over = SAMPLE.to_string() + &format!("[limits]\nmax_value_bytes = {}\n", max + 1);
        let e = Config::parse(&over).unwrap_err().to_string();
        assert!(
            e.contains("limits.max_value_bytes") && e.contains("at most 16777216"),
            "{e}"
        );
        // One request is at most one value plus 64 KiB of other arguments (the RESP reader's bound
        // on its input): here the key takes those 64 KiB, the deps name 256 regions, and the op
        // supersedes 16 siblings.
        let deps: VersionVector = (1..=256u64).map(|r| (r, u64::MAX)).collect();
        let op = Op {
            origin: 1,
            seq: u64::MAX,
            hlc: Hlc::new(u64::MAX >> 16, u16::MAX),
            deps: deps.clone(),
            key: Bytes::from(vec![b'k'; 64 * 1024]),
            delta: Delta {
                removes: (1..=16).map(|r| (Slot::Register, Dot::new(r, u64::MAX))).collect(),
                adds: vec![(Slot::Register, Payload::Value(Some(Bytes::from(vec![b'v'; max]))))],
            },
            unit_end: u64::MAX,
        };
        let frame = Message::Ops(vec![op.clone()]).encode().len();
        assert!(
            frame <= MAX_FRAME_BYTES,
            "an op of the largest value takes {frame} bytes"
        );
        // A snapshot chunk of one key holding three siblings of the largest value.
        let mut st = KeyState::new();
        for r in 1..=3 {
            let mut d = op.delta.clone();
            d.removes.clear();
            st.apply(Dot::new(r, 1), op.hlc, &d);
        }
        st.ctx.join(&deps);
        let frame = Message::SnapshotChunk(vec![(op.key.clone(), st)]).encode().len();
        assert!(
            frame <= MAX_FRAME_BYTES,
            "a key of three largest siblings takes {frame} bytes"
        );
    }

    const THREE: &str = r#"
cluster = "test"
secret = "0123456789"
[[region]]
name = "us"
id = 1
resp = "127.0.0.1:7001"
http = "127.0.0.1:8001"
peer = "127.0.0.1:9001"
data_dir = "/tmp/x/us"
[[region]]
name = "eu"
id = 2
resp = "127.0.0.1:7002"
http = "127.0.0.1:8002"
peer = "127.0.0.1:9002"
data_dir = "/tmp/x/eu"
[[policy]]
match = "user:*"
home = "us"
[[policy]]
match = "h:*"
home = "hash"
"#;

    /// `(section that differs, other config)`: each must change the cluster hash, and name
    /// exactly that section.
    #[test]
    fn the_cluster_hash_covers_what_regions_must_agree_on_and_names_the_difference() {
        let base = Config::parse(THREE).unwrap();
        let swap_regions = THREE
            .replacen("name = \"us\"\nid = 1", "name = \"tmp\"\nid = 1", 1)
            .replacen("name = \"eu\"\nid = 2", "name = \"us\"\nid = 2", 1)
            .replacen("name = \"tmp\"\nid = 1", "name = \"eu\"\nid = 1", 1);
        let cases: Vec<(&str, String)> = vec![
            ("regions", THREE.replace("id = 2", "id = 3")),
            ("regions", swap_regions),
            (
                "topology",
                THREE.replace(
                    "secret = \"0123456789\"",
                    "secret = \"0123456789\"\ntopology = \"ring\"",
                ),
            ),
            (
                "priority",
                THREE.replace(
                    "secret = \"0123456789\"",
                    "secret = \"0123456789\"\npriority = [\"eu\", \"us\"]",
                ),
            ),
            ("policies", THREE.replace("home = \"us\"", "home = \"eu\"")),
            (
                "policies",
                THREE.replace("home = \"hash\"", "home = \"hash\"\nstrings = \"siblings\""),
            ),
            ("policies", THREE.replace("match = \"h:*\"", "match = \"h:**\"")),
            (
                "policies",
                THREE.replace("secret = \"0123456789\"", "secret = \"0123456789\"\nmax_siblings = 4"),
            ),
        ];
        for (n, (section, text)) in cases.into_iter().enumerate() {
            // Swapping the regions' order swaps the default priority (config order) too.
            let sections_differing = if n == 1 { 2 } else { 1 };
            let other = Config::parse(&text).unwrap();
            assert_ne!(base.cluster_hash(), other.cluster_hash(), "{section}: {text}");
            let diff = base
                .cluster_config()
                .differences("us", &other.cluster_config(), "eu")
                .expect("differs");
            assert!(diff.starts_with(&format!("{section} differ (")), "{section}: {diff}");
            assert_eq!(
                diff.matches(" differ (").count(),
                sections_differing,
                "{section}: {diff}"
            );
        }
        let diff = base
            .cluster_config()
            .differences(
                "us",
                &Config::parse(&THREE.replace("id = 2", "id = 3"))
                    .unwrap()
                    .cluster_config(),
                "eu",
            )
            .unwrap();
        assert_eq!(diff, r#"regions differ (us: "us=1,eu=2"; eu: "us=1,eu=3")"#);
        // What may differ per node leaves the hash alone.
        let per_node = THREE
            .replace("127.0.0.1:9002", "10.0.0.2:9002")
            .replace("/tmp/x/eu", "/srv/concord")
            .replace(
                "secret = \"0123456789\"",
                "secret = \"0123456789\"\npassword = \"pw\"\nack_timeout_ms = 100\nlog_retention_ops = 5\nlink_delay_ms = 80\n\
                 [storage]\nfsync = \"always\"\n[limits]\nmax_value_bytes = 4096",
            )
            .replace("home = \"us\"", "home = \"us\"\nack = \"all\"\nread_miss = \"home\"");
        let other = Config::parse(&per_node).unwrap();
        assert_eq!(base.cluster_hash(), other.cluster_hash());
    }

    #[test]
    fn the_cluster_hash_covers_a_resolver_script_by_its_contents() {
        let dir = std::env::temp_dir().join(format!("concord-cluster-hash-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::create_dir_all(dir.join("b")).unwrap();
        let script = "function resolve(key, siblings) return siblings[1].value end\n";
        std::fs::write(dir.join("a/r.lua"), script).unwrap();
        std::fs::write(dir.join("b/r.lua"), script).unwrap();
        let with = |path: &std::path::Path| {
            Config::parse(&THREE.replace(
                "match = \"h:*\"",
                &format!(
                    "match = \"h:*\"\nstrings = \"script\"\nscript = {:?}",
                    path.display().to_string()
                ),
            ))
            .unwrap()
        };
        let a = with(&dir.join("a/r.lua"));
        let b = with(&dir.join("b/r.lua"));
        assert_eq!(a.cluster_hash(), b.cluster_hash(), "same contents at another path");
        std::fs::write(dir.join("b/r.lua"), script.replace("[1]", "[2]")).unwrap();
        let c = with(&dir.join("b/r.lua"));
        assert_ne!(a.cluster_hash(), c.cluster_hash(), "other contents");
        let diff = a.cluster_config().differences("us", &c.cluster_config(), "eu").unwrap();
        assert!(
            diff.starts_with("policies differ (") && diff.contains("script("),
            "{diff}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
