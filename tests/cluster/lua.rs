//! Issue 5, must show 4: a three-way conflict under a Lua resolver yields the same value in every
//! region and eventually one stored version; a script with an infinite loop or calling
//! `os.execute` is stopped, the siblings are kept and logged, and the node keeps serving.

use crate::harness::*;

const CONCAT: &str = r#"
-- Join the concurrent versions, sorted, with "+" (deleted versions are skipped).
function resolve(key, siblings)
  local vals = {}
  for _, s in ipairs(siblings) do
    if s.value ~= nil then vals[#vals + 1] = s.value end
  end
  table.sort(vals)
  return table.concat(vals, "+")
end
"#;

const LOOP: &str = "function resolve(key, siblings) while true do end end\n";
const ESCAPE: &str = "function resolve(key, siblings) os.execute('touch /tmp/concord-lua-escaped') return 'x' end\n";

fn isolate_all(l: &Layout) {
    for (a, b) in [("us", "eu"), ("us", "ap"), ("eu", "ap")] {
        l.set_link(a, b, r#"{"partitioned": true}"#);
    }
    eventually("every link down", WAIT, || {
        REGIONS
            .iter()
            .all(|r| {
                l.try_status(r).is_some_and(|st| {
                    st["peers"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().all(|p| p["connected"] == false))
                })
            })
            .then_some(())
    });
}

fn heal_all(l: &Layout) {
    for (a, b) in [("us", "eu"), ("us", "ap"), ("eu", "ap")] {
        l.set_link(a, b, "{}");
    }
    l.wait_ready(&REGIONS);
}

#[test]
fn lua_resolver_three_way_conflict_converges_and_bad_scripts_are_contained() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("concat.lua"), CONCAT).unwrap();
    std::fs::write(dir.path().join("loop.lua"), LOOP).unwrap();
    std::fs::write(dir.path().join("escape.lua"), ESCAPE).unwrap();
    let policies = dir.path().join("policies.toml");
    std::fs::write(
        &policies,
        "[[policy]]\nmatch = \"note:*\"\nstrings = \"script\"\nscript = \"concat.lua\"\n\n\
         [[policy]]\nmatch = \"loop:*\"\nstrings = \"script\"\nscript = \"loop.lua\"\n\n\
         [[policy]]\nmatch = \"esc:*\"\nstrings = \"script\"\nscript = \"escape.lua\"\n",
    )
    .unwrap();
    let _ = std::fs::remove_file("/tmp/concord-lua-escaped");
    let up = Up::start_in(dir, &["--policies", policies.to_str().unwrap()]);
    let l = &up.layout;

    isolate_all(l);
    for (region, v) in [("us", "a"), ("eu", "b"), ("ap", "c")] {
        let mut con = l.redis(region);
        for key in ["note:1", "loop:1", "esc:1"] {
            set(&mut con, key, v);
        }
    }
    heal_all(l);

    // Same resolved value everywhere, and the designated replica's write-back leaves one version.
    let mut last = Vec::new();
    let resolved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(
            "note:1 resolved to a+b+c with one stored version everywhere",
            WAIT,
            || {
                last = REGIONS
                    .iter()
                    .map(|r| {
                        let mut con = l.redis(r);
                        let v = get(&mut con, "note:1");
                        let kv = http(l.http(r), "GET", "/v1/kv/note:1", b"").json();
                        (*r, v, kv)
                    })
                    .collect();
                last.iter()
                    .all(|(_, v, kv)| {
                        v.as_deref() == Some("a+b+c") && kv["siblings"].as_array().is_some_and(|s| s.len() == 1)
                    })
                    .then_some(())
            },
        )
    }));
    if resolved.is_err() {
        let status: Vec<String> = REGIONS.iter().map(|r| format!("{r}: {}", l.status(r))).collect();
        panic!(
            "note:1 never resolved to one version a+b+c everywhere; last (region, GET, /v1/kv): {last:#?}\nstatus:\n{}\nup log:\n{}",
            status.join("\n"),
            up.proc.log()
        );
    }

    // Bad scripts: every region answers (with the deterministic fallback), keeps the three
    // siblings, and logs the resolver's failure; nothing escaped the sandbox.
    for key in ["loop:1", "esc:1"] {
        let mut values = Vec::new();
        for r in REGIONS {
            let mut con = l.redis(r);
            values.push(get(&mut con, key));
            let kv = http(l.http(r), "GET", &format!("/v1/kv/{key}"), b"").json();
            assert_eq!(kv["siblings"].as_array().map(|s| s.len()), Some(3), "{r} {key}: {kv}");
        }
        assert!(
            values.iter().all(|v| v == &values[0] && v.is_some()),
            "{key}: {values:?}"
        );
    }
    let failures = eventually("the resolver failures are in the conflict log", WAIT, || {
        let all: Vec<String> = REGIONS
            .iter()
            .flat_map(|r| {
                let c = http(l.http(r), "GET", "/v1/conflicts?limit=100", b"").json();
                c["conflicts"].as_array().cloned().unwrap_or_default()
            })
            .map(|c| c["outcome"].as_str().unwrap_or_default().to_string())
            .filter(|o| o.contains("resolver failed"))
            .collect();
        (all.iter().any(|o| o.contains("instruction limit")) && all.iter().any(|o| o.contains("os"))).then_some(all)
    });
    eprintln!("resolver failures logged: {failures:?}");
    assert!(
        !std::path::Path::new("/tmp/concord-lua-escaped").exists(),
        "os.execute ran"
    );

    // The nodes keep serving.
    for r in REGIONS {
        let mut con = l.redis(r);
        set(&mut con, "after", r);
        assert_eq!(get(&mut con, "after").as_deref(), Some(r));
    }
}
