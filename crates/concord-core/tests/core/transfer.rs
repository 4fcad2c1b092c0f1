//! Full-state transfer racing live ops: a key merged from a snapshot before the applied vector
//! moves (F5 of issue 10).

use super::harness::{b, regions, set, Cluster};
use concord_core::*;

/// Take the in-flight ops bound for replica `to` made by `origin`.
fn take(c: &mut Cluster, to: usize, origin: ReplicaId) -> Vec<Op> {
    let (mine, rest): (Vec<_>, Vec<_>) = c
        .inflight
        .drain(..)
        .partition(|(t, op)| *t == to && op.origin == origin);
    c.inflight = rest;
    let mut ops: Vec<Op> = mine.into_iter().map(|(_, op)| op).collect();
    ops.dedup();
    ops
}

fn receive(c: &mut Cluster, to: usize, ops: Vec<Op>) {
    for op in ops {
        let mut out = Output::default();
        let now = c.clocks[to];
        c.engines[to].receive(op, now, &mut out);
        c.absorb_output(to, out);
    }
}

#[test]
fn a_write_on_a_key_merged_from_a_snapshot_converges_with_the_ops_the_snapshot_covered() {
    // us = 0 (replica 1), eu = 1 (replica 2), ap = 2 (replica 3).
    let mut c = Cluster::new(3, 3);
    // ap writes x; us sees it and overwrites it with a (a's delta removes x's dot).
    c.exec(2, set("l:k", "x")).unwrap();
    let x = take(&mut c, 0, 3);
    receive(&mut c, 0, x);
    c.exec(0, set("l:k", "a")).unwrap();
    // eu gets a full-state transfer from us: the key is merged (its context covers a and x)...
    let (vector, states) = c.engines[0].snapshot();
    let mut out = Output::default();
    assert!(c.engines[1].merge_snapshot(states, &mut out).is_empty());
    c.absorb_output(1, out);
    assert!(
        c.engines[1].transfer_in_progress(),
        "a merged snapshot whose vector is not applied yet is a transfer in progress"
    );
    // ...and before the transfer finishes, eu writes the key (its write supersedes a).
    c.exec(1, set("l:k", "b")).unwrap();
    let eu_op = c.inflight.iter().find(|(_, op)| op.origin == 2).unwrap().1.clone();
    assert!(
        eu_op.deps.covers(Dot::new(1, 1)),
        "eu's write superseded us's write (merged from the snapshot): it must depend on it, deps {:?}",
        eu_op.deps
    );
    // ap gets eu's write before us's (links are independent), then us's.
    let from_eu = take(&mut c, 2, 2);
    receive(&mut c, 2, from_eu);
    let from_us = take(&mut c, 2, 1);
    receive(&mut c, 2, from_us);
    let mut out = Output::default();
    let now = c.clocks[1];
    c.engines[1].finish_snapshot(&vector, now, &mut out);
    c.absorb_output(1, out);
    assert!(!c.engines[1].transfer_in_progress());
    c.deliver_all();
    for i in 1..3 {
        assert_eq!(
            c.engines[0].key_state(b"l:k"),
            c.engines[i].key_state(b"l:k"),
            "region {i} diverged from us on a key merged from a snapshot"
        );
    }
    for i in 0..3 {
        assert_eq!(c.exec(i, Request::Get(b("l:k"))).unwrap(), Reply::Bulk(b("b")));
    }
}

/// The same dependency with writer ids as nodes use them (DESIGN §8.1: incarnation << 16 |
/// region, never equal to a region id; the cluster harness above numbers writers 1, 2, 3 like
/// regions): the context's dots count as a dependency when their writer's region is in the
/// cluster. Before, the check compared the writer id itself with the region ids, so no real
/// writer's dot ever made it into `deps`, and a region could apply the write before the write
/// it superseded.
#[test]
fn a_write_on_a_key_merged_from_a_snapshot_depends_on_real_writer_ids_it_superseded() {
    let now = 1_700_000_000_000;
    let ap = writer_id(3, 0x1234);
    let us = writer_id(1, 0x5678);
    let eu = writer_id(2, 0x9abc);
    let engine = |w| Engine::new(EngineConfig::new(w, regions(3)));
    let (mut e_ap, mut e_us, mut e_eu) = (engine(ap), engine(us), engine(eu));
    let mut out = Output::default();
    e_ap.execute(set("l:k", "x"), now, &mut out).unwrap();
    let x = out.local_ops.remove(0);
    let mut out = Output::default();
    e_us.receive(x, now, &mut out);
    let mut out = Output::default();
    e_us.execute(set("l:k", "a"), now + 1, &mut out).unwrap();
    // eu merges us's snapshot (the key's context covers x and a) and writes the key before the
    // transfer finishes.
    let (_, states) = e_us.snapshot();
    let mut out = Output::default();
    assert!(e_eu.merge_snapshot(states, &mut out).is_empty());
    assert!(e_eu.transfer_in_progress());
    let mut out = Output::default();
    e_eu.execute(set("l:k", "b"), now + 2, &mut out).unwrap();
    let deps = &out.local_ops[0].deps;
    for (who, dot) in [("us", Dot::new(us, 1)), ("ap", Dot::new(ap, 1))] {
        assert!(
            deps.covers(dot),
            "eu's write superseded {who}'s write {dot} (merged from the snapshot): it must depend on it, deps {deps:?}"
        );
    }
    assert_eq!(deps.get(eu), 0, "no dependency on the writer's own dots");
}

#[test]
fn an_op_whose_dot_the_key_already_covers_still_applies_its_removals() {
    // Applying a delta is joining with the state (adds at dot, context = removes ∪ {dot}): when
    // the dot is already covered the adds are not re-added, but the removals still hold.
    let hlc = |t: u64| Hlc::new(t, 0);
    let x = Dot::new(3, 1);
    let a = Dot::new(1, 1);
    let w = Dot::new(2, 1);
    let mut st = KeyState::new();
    let put = |v: &str| Delta {
        removes: vec![],
        adds: vec![(Slot::Register, Payload::Value(Some(b(v))))],
    };
    assert!(st.apply(x, hlc(1), &put("x")));
    // w saw a (and only a) and superseded it: the key's context now covers a.
    let w_delta = Delta {
        removes: vec![(Slot::Register, a)],
        adds: vec![(Slot::Register, Payload::Value(Some(b("w"))))],
    };
    assert!(st.apply(w, hlc(3), &w_delta));
    // a arrives: it had superseded x.
    let a_delta = Delta {
        removes: vec![(Slot::Register, x)],
        adds: vec![(Slot::Register, Payload::Value(Some(b("a"))))],
    };
    assert!(!st.apply(a, hlc(2), &a_delta), "a's dot was covered: not applied again");
    let dots: Vec<Dot> = st.entries(&Slot::Register).unwrap().keys().copied().collect();
    assert_eq!(dots, vec![w], "x was superseded by a: only w may remain");
    // The same as the join with a's delta state, whatever the order.
    let mut a_state = KeyState::new();
    a_state.ctx.add(x);
    a_state.apply(a, hlc(2), &a_delta);
    let mut fresh = KeyState::new();
    fresh.apply(x, hlc(1), &put("x"));
    fresh.apply(w, hlc(3), &w_delta);
    assert_eq!(fresh.join(&a_state), st);
}

#[test]
fn a_write_never_depends_on_dots_no_region_can_apply() {
    // A key whose context names the region-local id and a region that is not in the config
    // (a policy that was `replicate = false`, a region removed since): a write's deps must not
    // name them, or every peer would hold the op forever.
    let mut c = Cluster::new(2, 9);
    let mut st = KeyState::new();
    st.ctx.add(Dot::new(0, 7));
    st.ctx.add(Dot::new(42, 3));
    st.ctx.add(Dot::new(2, 1));
    let mut out = Output::default();
    assert!(c.engines[0].merge_snapshot(vec![(b("l:k"), st)], &mut out).is_empty());
    c.exec(0, set("l:k", "v")).unwrap();
    let op = c.inflight.iter().find(|(_, op)| op.origin == 1).unwrap().1.clone();
    assert_eq!(op.deps.iter().collect::<Vec<_>>(), vec![(2, 1)], "deps {:?}", op.deps);
}

/// Transfer the whole state of replica `from` to replica `to`, as a link does.
fn transfer(c: &mut Cluster, from: usize, to: usize) {
    let (vector, states) = c.engines[from].snapshot();
    let mut out = Output::default();
    c.engines[to].begin_snapshot(from as u64, &vector);
    assert!(c.engines[to].merge_transfer(from as u64, states, &mut out).is_empty());
    let now = c.clocks[to];
    c.engines[to].finish_transfer(from as u64, &vector, now, &mut out);
    c.absorb_output(to, out);
}

fn get(c: &mut Cluster, i: usize, key: &str) -> Reply {
    let mut out = Output::default();
    let now = c.clocks[i];
    c.engines[i].execute(Request::Get(b(key)), now, &mut out).unwrap()
}

/// A replica holding an old state (a restored backup) gets a full-state transfer from one that
/// deleted the key and purged it: the old value must not survive. Found by sim seed 37742 (a
/// restored region kept a value its peers had deleted and purged, and anti-entropy then copied it
/// back to them). Also when the key was purged and written again from empty (its context no
/// longer names the old dot), and the old value came from a third region.
#[test]
fn a_transfer_removes_what_the_sender_had_seen_and_no_longer_holds() {
    let mut c = Cluster::new(3, 11);
    // ap writes k and j; everyone has them.
    c.exec(2, set("l:k", "old")).unwrap();
    c.exec(2, set("l:j", "old")).unwrap();
    c.deliver_all();
    // eu (the restored replica) misses what happens next.
    // us deletes k and purges it (as stable garbage collection would), and for j: deletes,
    // purges, and writes it again from empty.
    c.exec(0, Request::Del(vec![b("l:k"), b("l:j")])).unwrap();
    let mut out = Output::default();
    c.engines[0].forget_key_for_test(b"l:k", &mut out);
    c.engines[0].forget_key_for_test(b"l:j", &mut out);
    c.exec(0, set("l:j", "new")).unwrap();
    assert!(
        !c.engines[0].key_state(b"l:j").unwrap().ctx.covers(Dot::new(3, 2)),
        "the new j's context does not name ap's old write"
    );
    // Nothing reaches eu but the transfer.
    c.inflight.retain(|(to, _)| *to != 1);
    transfer(&mut c, 0, 1);
    assert_eq!(get(&mut c, 1, "l:k"), Reply::Nil, "a deleted and purged key came back");
    assert_eq!(
        get(&mut c, 1, "l:j"),
        Reply::Bulk(b("new")),
        "an old version survived under the new one"
    );
    assert_eq!(
        c.engines[1].key_state(b"l:j").unwrap().slots,
        c.engines[0].key_state(b"l:j").unwrap().slots
    );
}

/// Two links receive full-state transfers at once (a mesh after a lost disk): each transfer's end
/// removes only what its own sender no longer holds — interleaved, one must not take the other's
/// keys for absent (a first version shared one record of "keys brought", and a transfer's end
/// dropped keys the other had just brought: lost acknowledged writes in sim sweeps).
#[test]
fn interleaved_transfers_from_two_links_keep_what_each_brought() {
    let mut c = Cluster::new(3, 12);
    c.exec(0, set("l:a", "from-us")).unwrap();
    c.exec(1, set("l:b", "from-eu")).unwrap();
    c.deliver_all();
    c.exec(0, set("l:c", "us-only")).unwrap();
    c.inflight.clear();
    let (va, sa) = c.engines[0].snapshot();
    let (vb, sb) = c.engines[1].snapshot();
    let e = &mut c.engines[2];
    let mut out = Output::default();
    e.begin_snapshot(1, &va);
    e.begin_snapshot(2, &vb);
    assert!(e.merge_transfer(1, sa, &mut out).is_empty());
    assert!(e.merge_transfer(2, sb, &mut out).is_empty());
    e.finish_transfer(1, &va, 2_000_000, &mut out);
    e.finish_transfer(2, &vb, 2_000_000, &mut out);
    c.absorb_output(2, out);
    for (k, v) in [("l:a", "from-us"), ("l:b", "from-eu"), ("l:c", "us-only")] {
        assert_eq!(get(&mut c, 2, k), Reply::Bulk(b(v)), "{k} after both transfers");
    }
}
