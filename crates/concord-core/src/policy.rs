//! Conflict policies, matched per key by glob: first rule that matches wins; a catch-all `lww`
//! rule is implied at the end.

use crate::glob::glob_match;
use crate::version::ReplicaId;
use serde::{Deserialize, Serialize};

/// How concurrent string writes (register siblings) are resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Last writer wins by HLC (then replica id); losers go to the conflict log.
    Lww,
    /// The write from the highest-priority region wins (`PolicySet::priority`), then HLC.
    Priority,
    /// Keep every concurrent version; readers see them all with a causal context.
    Siblings,
    /// A user resolver (by name) computes the value from all siblings in canonical order.
    Script(String),
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Lww => "lww",
            Strategy::Priority => "priority",
            Strategy::Siblings => "siblings",
            Strategy::Script(_) => "script",
        }
    }
}

/// Where writes of a key are accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Home {
    Region(String),
    /// A stable hash of the key over the regions.
    Hash,
}

/// How many other regions must have applied a write before it is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckLevel {
    #[default]
    Local,
    One,
    Majority,
    All,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The glob this rule matches (`*` for the implied catch-all).
    pub pattern: String,
    pub strings: Strategy,
    pub home: Option<Home>,
    pub replicate: bool,
    pub read_miss_home: bool,
    pub ack: AckLevel,
}

impl Policy {
    pub fn catch_all() -> Policy {
        Policy {
            pattern: "*".into(),
            strings: Strategy::Lww,
            home: None,
            replicate: true,
            read_miss_home: false,
            ack: AckLevel::Local,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySet {
    pub rules: Vec<Policy>,
    /// Region ids, highest priority first, for `Strategy::Priority`.
    pub priority: Vec<ReplicaId>,
    /// Above this many siblings a key falls back to an `lww` collapse (logged as a conflict).
    pub max_siblings: usize,
    catch_all: Policy,
}

impl Default for PolicySet {
    fn default() -> Self {
        PolicySet::new(Vec::new(), Vec::new(), 16)
    }
}

impl PolicySet {
    pub fn new(rules: Vec<Policy>, priority: Vec<ReplicaId>, max_siblings: usize) -> Self {
        PolicySet {
            rules,
            priority,
            max_siblings: max_siblings.max(1),
            catch_all: Policy::catch_all(),
        }
    }

    /// The first rule whose glob matches `key`, else the implied catch-all `lww`.
    pub fn policy_for(&self, key: &[u8]) -> &Policy {
        self.rules
            .iter()
            .find(|p| glob_match(p.pattern.as_bytes(), key))
            .unwrap_or(&self.catch_all)
    }

    /// Rank for `Strategy::Priority`: larger is more important; unlisted regions rank lowest.
    /// `replica` may be a region id or a writer id (ranked by its region).
    pub fn priority_rank(&self, replica: ReplicaId) -> usize {
        let region = crate::version::region_of(replica);
        match self.priority.iter().position(|&r| r == region) {
            Some(i) => self.priority.len() - i,
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_wins_and_catch_all_is_lww() {
        let mut sib = Policy::catch_all();
        sib.pattern = "cart:*".into();
        sib.strings = Strategy::Siblings;
        let mut local = Policy::catch_all();
        local.pattern = "*".into();
        local.replicate = false;
        let set = PolicySet::new(vec![sib, local], vec![2, 1], 16);
        assert_eq!(set.policy_for(b"cart:1").strings, Strategy::Siblings);
        assert!(!set.policy_for(b"session:1").replicate);
        let empty = PolicySet::default();
        assert_eq!(empty.policy_for(b"x").strings, Strategy::Lww);
        assert!(set.priority_rank(2) > set.priority_rank(1));
        assert_eq!(set.priority_rank(9), 0);
    }
}
