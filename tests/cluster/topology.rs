//! Must show 5: a ring with one node stopped shows the break in the others' status; a mesh with
//! one node stopped keeps the other two replicating.

use crate::harness::*;
use serde_json::Value;
use std::time::Duration;

#[test]
fn ring_with_a_stopped_node_shows_the_break() {
    let mut c = ServeCluster::new("topology = \"ring\"");
    c.start_all();
    let l = c.layout.clone();
    // Healthy ring: a write goes all the way round, and nobody warns.
    let mut us = l.redis("us");
    set(&mut us, "ring:before", "1");
    for r in ["eu", "ap"] {
        let mut con = l.redis(r);
        eventually(&format!("ring:before in {r}"), WAIT, || {
            (get(&mut con, "ring:before").as_deref() == Some("1")).then_some(())
        });
    }
    for r in REGIONS {
        let st = l.status(r);
        assert_eq!(st["topology"], "ring", "{st}");
        assert_eq!(
            st["warnings"],
            Value::Array(vec![]),
            "{r} warns on a healthy ring: {st}"
        );
    }

    c.stop("eu");
    let others = ["us", "ap"];
    let statuses = eventually("us and ap to see eu gone", WAIT, || {
        let sts: Vec<Value> = others.iter().map(|r| l.try_status(r)).collect::<Option<_>>()?;
        sts.iter()
            .all(|st| peer_of(st, "eu")["connected"] == false)
            .then_some(sts)
    });
    // The region downstream of eu has lost its only upstream: its warnings say the ring is broken.
    let broken: Vec<&str> = eventually("a ring-broken warning", WAIT, || {
        let hits: Vec<&str> = others
            .iter()
            .copied()
            .filter(|r| {
                l.try_status(r).is_some_and(|st| {
                    st["warnings"].as_array().is_some_and(|w| {
                        w.iter().any(|x| {
                            x.as_str()
                                .is_some_and(|s| s.contains("ring broken") && s.contains("eu"))
                        })
                    })
                })
            })
            .collect();
        (!hits.is_empty()).then_some(hits)
    });
    eprintln!(
        "ring without eu: warnings from {broken:?}; statuses: {}",
        statuses
            .iter()
            .map(|s| format!("{}: {}", s["region"], s["warnings"]))
            .collect::<Vec<_>>()
            .join("; ")
    );
    // INFO replication / CONCORD.STATUS show the same document.
    let r = broken[0];
    let mut con = l.redis(r);
    let doc: String = redis::cmd("CONCORD.STATUS").query(&mut con).unwrap();
    assert!(
        doc.contains("ring broken"),
        "CONCORD.STATUS of {r} lacks the warning: {doc}"
    );
}

#[test]
fn mesh_with_a_stopped_node_keeps_the_others_replicating() {
    let mut c = ServeCluster::new("topology = \"mesh\"");
    c.start_all();
    let l = c.layout.clone();
    c.stop("eu");
    eventually("us and ap to see eu gone", WAIT, || {
        let us = l.try_status("us")?;
        let ap = l.try_status("ap")?;
        (peer_of(&us, "eu")["connected"] == false && peer_of(&ap, "eu")["connected"] == false).then_some(())
    });
    let mut us = l.redis("us");
    let mut ap = l.redis("ap");
    set(&mut us, "mesh:from-us", "1");
    set(&mut ap, "mesh:from-ap", "2");
    eventually("us's write in ap", Duration::from_secs(5), || {
        (get(&mut ap, "mesh:from-us").as_deref() == Some("1")).then_some(())
    });
    eventually("ap's write in us", Duration::from_secs(5), || {
        (get(&mut us, "mesh:from-ap").as_deref() == Some("2")).then_some(())
    });
    let st = l.status("us");
    assert_eq!(peer_of(&st, "ap")["connected"], true, "{st}");
    assert_eq!(peer_of(&st, "eu")["connected"], false, "{st}");
    let warnings = st["warnings"].to_string();
    assert!(
        warnings.contains("eu"),
        "us's status does not mention eu being down: {warnings}"
    );

    // eu comes back and gets what it missed.
    c.start("eu");
    let mut eu = l.redis("eu");
    eventually("eu catching up", WAIT, || {
        (get(&mut eu, "mesh:from-us").as_deref() == Some("1") && get(&mut eu, "mesh:from-ap").as_deref() == Some("2"))
            .then_some(())
    });
}
