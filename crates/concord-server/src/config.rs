//! The TOML configuration of a cluster, shared by every node (`concord serve --config FILE
//! --region NAME` picks its own region from it). Validation errors name the field.

use concord_core::{AckLevel, Home, Policy, PolicySet, ReplicaId, Strategy};
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

fn default_max_value_bytes() -> usize {
    64 * 1024 * 1024
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
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
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
            if r.id == 0 || r.id == concord_core::version::LOCAL_REPLICA {
                return Err(field(f("id"), format!("{} is reserved; use 1..{}", r.id, u32::MAX - 1)));
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
        // One op must fit a replication frame (with room for its key and metadata).
        let most = concord_net::frame::MAX_FRAME_BYTES / 4;
        if self.limits.max_value_bytes > most {
            return Err(field("limits.max_value_bytes", format!("must be at most {most}")));
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
}
