//! Must show 1: a write in `us` is readable in `eu` and `ap`; with `--wan-delay-ms 50` it is not
//! visible before the delay and is visible soon after (the measured lag is printed; the test
//! asserts order, not speed).

use crate::harness::*;
use std::time::{Duration, Instant};

#[test]
fn write_in_us_is_readable_everywhere() {
    let up = Up::start(&[]);
    let mut us = up.layout.redis("us");
    set(&mut us, "greeting", "hello from us");
    for r in ["eu", "ap"] {
        let mut con = up.layout.redis(r);
        eventually(&format!("greeting in {r}"), Duration::from_secs(5), || {
            (get(&mut con, "greeting").as_deref() == Some("hello from us")).then_some(())
        });
    }
    // And the other way round: a write in ap reaches us and eu.
    let mut ap = up.layout.redis("ap");
    set(&mut ap, "reply", "hello from ap");
    for r in ["us", "eu"] {
        let mut con = up.layout.redis(r);
        eventually(&format!("reply in {r}"), Duration::from_secs(5), || {
            (get(&mut con, "reply").as_deref() == Some("hello from ap")).then_some(())
        });
    }
}

#[test]
fn wan_delay_orders_visibility() {
    let up = Up::start(&["--wan-delay-ms", "50"]);
    let mut us = up.layout.redis("us");
    let mut eu = up.layout.redis("eu");
    let mut ap = up.layout.redis("ap");
    // Several rounds, so one lucky round cannot hide a link that ignores the delay.
    for round in 0..3 {
        let key = format!("wan:{round}");
        let value = format!("v{round}");
        set(&mut us, &key, &value);
        let written = Instant::now();
        // The first 30 ms: not visible in eu or ap (a read that completed before 40 ms saw nil).
        let mut reads = 0;
        while written.elapsed() < Duration::from_millis(30) {
            for (name, con) in [("eu", &mut eu), ("ap", &mut ap)] {
                let v = get(con, &key);
                let at = written.elapsed();
                reads += 1;
                if at < Duration::from_millis(40) {
                    assert_eq!(
                        v, None,
                        "round {round}: {key} visible in {name} {at:?} after the SET returned, despite a 50 ms WAN delay"
                    );
                }
            }
        }
        assert!(reads > 2, "too few early reads ({reads}) to show anything");
        // Then visible, soon: poll both regions together and note when each first shows it.
        let mut seen: [Option<Duration>; 2] = [None, None];
        eventually_every(
            &format!("{key} in eu and ap"),
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                for (i, con) in [&mut eu, &mut ap].into_iter().enumerate() {
                    if seen[i].is_none() && get(con, &key).as_deref() == Some(value.as_str()) {
                        seen[i] = Some(written.elapsed());
                    }
                }
                seen.iter().all(Option::is_some).then_some(())
            },
        );
        let lags = [("eu", seen[0].unwrap()), ("ap", seen[1].unwrap())];
        eprintln!("wan_delay_orders_visibility round {round}: {reads} early reads saw nil; visible after {lags:?} (WAN delay 50 ms)");
    }
}
