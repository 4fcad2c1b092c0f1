//! Micro-benchmarks of the core's hot paths: a local SET through `Engine::execute`, applying a
//! remote op (`Engine::receive`), merging key states (`KeyState::join`) and the codecs
//! (`KeyState::encode/decode`, `Op::encode/decode`).
//!
//! `cargo bench -p concord-core` (small sample sizes: the whole run takes a minute or two).
//! Results are discussed in docs/benchmarks.md.

use bytes::Bytes;
use concord_core::*;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use std::collections::BTreeMap;
use std::time::Duration;

fn regions() -> BTreeMap<ReplicaId, String> {
    [(1, "us"), (2, "eu"), (3, "ap")]
        .into_iter()
        .map(|(i, n)| (i, n.to_string()))
        .collect()
}

fn engine(id: ReplicaId) -> Engine {
    Engine::new(EngineConfig::new(id, regions()))
}

fn set(key: &str, value: &[u8]) -> Request {
    Request::Set {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value),
        condition: SetCondition::Always,
        expiry: SetExpiry::Clear,
        get: false,
    }
}

/// `n` ops made by region `us` (SETs of `keys` distinct keys, 100-byte values), in order.
fn us_ops(n: usize, keys: usize) -> Vec<Op> {
    let mut us = engine(1);
    let mut ops = Vec::with_capacity(n);
    let value = [b'x'; 100];
    for i in 0..n {
        let mut out = Output::default();
        us.execute(
            set(&format!("key:{}", i % keys), &value),
            1_700_000_000_000 + i as u64,
            &mut out,
        )
        .unwrap();
        ops.extend(out.local_ops);
    }
    ops
}

/// A hash key with `fields` fields written by three regions.
fn big_hash(fields: usize) -> (KeyState, KeyState) {
    let mut a = engine(1);
    let mut b = engine(2);
    for i in 0..fields {
        let (e, now) = if i % 2 == 0 {
            (&mut a, i as u64)
        } else {
            (&mut b, i as u64)
        };
        let mut out = Output::default();
        e.execute(
            Request::HSet {
                key: Bytes::from_static(b"h"),
                pairs: vec![(Bytes::from(format!("f{i}")), Bytes::from_static(b"v"))],
            },
            1_700_000_000_000 + now,
            &mut out,
        )
        .unwrap();
    }
    (a.key_state(b"h").unwrap().clone(), b.key_state(b"h").unwrap().clone())
}

fn bench_execute(c: &mut Criterion) {
    let mut g = c.benchmark_group("execute");
    let value = [b'x'; 100];
    g.bench_function("set_100B_new_keys", |bch| {
        let mut e = engine(1);
        let mut i = 0u64;
        bch.iter(|| {
            i += 1;
            let mut out = Output::default();
            let r = e.execute(set(&format!("k{i}"), &value), 1_700_000_000_000 + i, &mut out);
            black_box((r.unwrap(), out));
        })
    });
    g.bench_function("set_100B_overwrite_1k_keys", |bch| {
        let mut e = engine(1);
        let mut i = 0u64;
        bch.iter(|| {
            i += 1;
            let mut out = Output::default();
            let r = e.execute(set(&format!("k{}", i % 1000), &value), 1_700_000_000_000 + i, &mut out);
            black_box((r.unwrap(), out));
        })
    });
    g.bench_function("hset_into_10k_field_hash", |bch| {
        let mut e = engine(1);
        let mut out = Output::default();
        for f in 0..10_000 {
            e.execute(
                Request::HSet {
                    key: Bytes::from_static(b"h"),
                    pairs: vec![(Bytes::from(format!("f{f}")), Bytes::from_static(b"v"))],
                },
                1_700_000_000_000,
                &mut out,
            )
            .unwrap();
        }
        let mut i = 0u64;
        bch.iter(|| {
            i += 1;
            let mut out = Output::default();
            let r = e.execute(
                Request::HSet {
                    key: Bytes::from_static(b"h"),
                    pairs: vec![(Bytes::from(format!("f{}", i % 10_000)), Bytes::from_static(b"w"))],
                },
                1_700_000_000_001 + i,
                &mut out,
            );
            black_box((r.unwrap(), out));
        })
    });
    g.finish();
}

fn bench_receive(c: &mut Criterion) {
    let mut g = c.benchmark_group("receive");
    // Applying a batch of 1,000 in-order remote ops on an engine that has none of them.
    let ops = us_ops(1000, 1000);
    g.bench_function("apply_1000_remote_sets", |bch| {
        bch.iter_batched(
            || (engine(2), ops.clone()),
            |(mut eu, ops)| {
                let mut out = Output::default();
                for op in ops {
                    black_box(eu.receive(op, 1_700_000_001_000, &mut out));
                }
                black_box(out)
            },
            BatchSize::LargeInput,
        )
    });
    // A duplicate (already applied) op: the common case in a mesh.
    g.bench_function("duplicate_op", |bch| {
        let mut eu = engine(2);
        let mut out = Output::default();
        for op in ops.clone() {
            eu.receive(op, 1_700_000_001_000, &mut out);
        }
        let op = ops[500].clone();
        bch.iter_batched(
            || op.clone(),
            |op| {
                let mut out = Output::default();
                black_box(eu.receive(op, 1_700_000_001_000, &mut out))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_join(c: &mut Criterion) {
    let mut g = c.benchmark_group("join");
    let ops = us_ops(2, 1);
    let mut a = KeyState::new();
    a.apply(ops[0].dot(), ops[0].hlc, &ops[0].delta);
    let mut b = a.clone();
    b.apply(ops[1].dot(), ops[1].hlc, &ops[1].delta);
    g.bench_function("register_2_versions", |bch| {
        bch.iter(|| black_box(a.join(black_box(&b))))
    });
    let (h1, h2) = big_hash(1000);
    g.bench_function("hash_2x500_fields", |bch| {
        bch.iter(|| black_box(h1.join(black_box(&h2))))
    });
    g.finish();
}

fn bench_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let ops = us_ops(2, 1);
    let op = ops[1].clone();
    let op_bytes = op.encode();
    g.bench_function("op_encode_set_100B", |bch| {
        bch.iter(|| black_box(black_box(&op).encode()))
    });
    g.bench_function("op_decode_set_100B", |bch| {
        bch.iter(|| black_box(Op::decode(black_box(&op_bytes)).unwrap()))
    });
    let mut st = KeyState::new();
    st.apply(op.dot(), op.hlc, &op.delta);
    let st_bytes = st.encode();
    g.bench_function("keystate_encode_string_100B", |bch| {
        bch.iter(|| black_box(black_box(&st).encode()))
    });
    g.bench_function("keystate_decode_string_100B", |bch| {
        bch.iter(|| black_box(KeyState::decode(black_box(&st_bytes)).unwrap()))
    });
    let (h, _) = big_hash(1000);
    let h_bytes = h.encode();
    g.bench_function("keystate_encode_hash_500_fields", |bch| {
        bch.iter(|| black_box(black_box(&h).encode()))
    });
    g.bench_function("keystate_decode_hash_500_fields", |bch| {
        bch.iter(|| black_box(KeyState::decode(black_box(&h_bytes)).unwrap()))
    });
    g.finish();
    eprintln!(
        "sizes: op (SET, 100-byte value) {} B; key state (string, 100-byte value) {} B; hash of 500 fields {} B",
        op_bytes.len(),
        st_bytes.len(),
        h_bytes.len()
    );
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_execute, bench_receive, bench_join, bench_codec
}
criterion_main!(benches);
