//! Integration tests of the replica engine: merge laws, convergence, no lost writes, causal order,
//! no resurrection, HLC under clock skew. One binary, one module per property.

mod core {
    pub mod anti_entropy;
    pub mod breadth;
    pub mod causal;
    pub mod convergence;
    pub mod counters;
    pub mod harness;
    pub mod hlc_skew;
    pub mod lists;
    pub mod merge_laws;
    pub mod resurrection;
    pub mod semantics;
    pub mod transfer;
    pub mod ttl;
    pub mod units;
    pub mod zsets;
}
