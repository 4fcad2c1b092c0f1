//! Must show 6: a peer with the wrong secret or the wrong cluster name is refused. An impostor
//! claims to be region `ap` (on ap's addresses and data dir, with ap's real process stopped) with
//! a config that differs only in `secret` or in `cluster`: its writes never reach `us`/`eu`, theirs
//! never reach it, `us`/`eu` show `ap` not connected, and both sides log why. The same for a
//! region whose cluster-wide config (here its policies) differs (issue 10, F8).

use crate::harness::*;
use std::time::{Duration, Instant};

fn impostor_is_refused(c: &mut ServeCluster, variant: &str, cluster: &str, secret: &str, reason_word: &str) {
    let text = c.config_text(cluster, secret);
    let refused = |line: &str| line.contains("refused") || line.contains("does not match");
    impostor_with_config_is_refused(c, variant, &text, reason_word, &refused);
}

fn impostor_with_config_is_refused(
    c: &mut ServeCluster,
    variant: &str,
    config_text: &str,
    reason_word: &str,
    refused: &dyn Fn(&str) -> bool,
) {
    let l = c.layout.clone();
    let config = c.dir.path().join(format!("impostor-{variant}.toml"));
    std::fs::write(&config, config_text).expect("write impostor config");
    let log = c.dir.path().join(format!("impostor-{variant}.log"));
    let us_log_before = c.log("us").len();
    let eu_log_before = c.log("eu").len();
    let mut impostor = c.spawn_with(&config, "ap", &log);
    l.wait_ping("ap");
    assert!(impostor.running(), "impostor exited:\n{}", impostor.log());
    l.wait_writable("ap");

    let imp_key = format!("impostor:{variant}");
    let probe_key = format!("probe:{variant}");
    let mut imp = l.redis("ap");
    let mut us = l.redis("us");
    let mut eu = l.redis("eu");
    set(&mut imp, &imp_key, "written by an impostor");
    set(&mut us, &probe_key, "written in us");
    // The impostor's link attempts fail over and over (reconnect with backoff): watch a while.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        assert_eq!(
            get(&mut us, &imp_key),
            None,
            "{variant}: the impostor's write reached us"
        );
        assert_eq!(
            get(&mut eu, &imp_key),
            None,
            "{variant}: the impostor's write reached eu"
        );
        assert_eq!(
            get(&mut imp, &probe_key),
            None,
            "{variant}: us's write reached the impostor"
        );
        for r in ["us", "eu"] {
            let p = l.peer_status(r, "ap");
            assert_eq!(
                p["connected"], false,
                "{variant}: {r} shows the impostor connected: {p}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Both sides say why.
    eventually(&format!("{variant}: the impostor logging the refusal"), WAIT, || {
        let text = impostor.log();
        text.lines()
            .any(|line| line.contains(reason_word) && refused(line))
            .then_some(())
    });
    eventually(&format!("{variant}: us or eu logging the refusal"), WAIT, || {
        let us_log = c.log("us");
        let eu_log = c.log("eu");
        [us_log.get(us_log_before..), eu_log.get(eu_log_before..)]
            .iter()
            .flatten()
            .any(|t| {
                t.lines()
                    .any(|line| line.contains(reason_word) && line.contains("ap") && refused(line))
            })
            .then_some(())
    });
    assert!(impostor.terminate(), "the impostor did not stop on SIGTERM");
    // us and eu still replicate between themselves.
    set(&mut us, &format!("after:{variant}"), "ok");
    eventually("us's write in eu", WAIT, || {
        (get(&mut eu, &format!("after:{variant}")).as_deref() == Some("ok")).then_some(())
    });
}

#[test]
fn peer_with_wrong_secret_or_cluster_is_refused() {
    let mut c = ServeCluster::new("topology = \"mesh\"");
    c.start_all();
    c.stop("ap");
    let (cluster, secret) = (c.cluster.clone(), c.secret.clone());
    impostor_is_refused(&mut c, "secret", &cluster, "a-different-secret-9876543210", "secret");
    impostor_is_refused(&mut c, "cluster", &format!("{cluster}-other"), &secret, "cluster");
}

#[test]
fn a_region_whose_cluster_wide_config_differs_is_refused_naming_the_difference() {
    let mut c = ServeCluster::new("topology = \"mesh\"");
    c.start_all();
    c.stop("ap");
    let (cluster, secret) = (c.cluster.clone(), c.secret.clone());
    // ap would make `user:*` single-master in us; us and eu do not: they would diverge.
    let text = c.config_text(&cluster, &secret) + "\n[[policy]]\nmatch = \"user:*\"\nhome = \"us\"\n";
    let names_it = |line: &str| line.contains("policies differ") && line.contains("user:* lww home=us");
    impostor_with_config_is_refused(&mut c, "policies", &text, "cluster config differs", &names_it);
}
