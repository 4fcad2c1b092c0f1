//! The HTTP/JSON API (DESIGN §6): `/v1/kv/{key}` round trips, health, status, metrics, and
//! siblings with a context token produced honestly by two engines' concurrent writes.

use crate::harness::{bulk, http, http_raw, Region, Server, Setup};
use concord_core::{Engine, EngineConfig, Output, Received, Request, SetCondition, SetExpiry};
use concord_server::config::Config;
use concord_store::{Batch, Durability, Store};
use serde_json::json;

#[test]
fn kv_put_get_delete_round_trip() {
    let s = Server::start_with(|setup| setup.max_value_bytes = Some(4096));
    let p = s.http_port();

    let put = http(p, "PUT", "/v1/kv/greeting", &[], b"hello world");
    assert_eq!(put.status, 200, "{}", put.text());
    let put = put.json();
    assert_eq!(put["ok"], true);
    assert!(put["context"].as_str().is_some_and(|c| !c.is_empty()), "{put}");

    let get = http(p, "GET", "/v1/kv/greeting", &[], b"");
    assert_eq!(get.status, 200);
    assert!(get.header("content-type").unwrap().starts_with("application/json"));
    let get = get.json();
    assert_eq!(get["key"], "greeting");
    assert_eq!(get["value"], "hello world");
    assert_eq!(get["type"], "string");
    assert_eq!(get["context"], put["context"]);
    let siblings = get["siblings"].as_array().unwrap();
    assert_eq!(siblings.len(), 1, "{get}");
    assert_eq!(siblings[0]["origin"], "us");
    assert_eq!(siblings[0]["value"], "hello world");
    assert!(siblings[0]["hlc"].as_str().is_some());

    // HTTP and RESP see the same data.
    let mut c = s.raw();
    assert_eq!(c.cmd(&["GET", "greeting"]), bulk(Some("hello world")));
    assert_eq!(c.cmd(&["SET", "from-resp", "r"]), "+OK\r\n");
    assert_eq!(http(p, "GET", "/v1/kv/from-resp", &[], b"").json()["value"], "r");
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), ":1\r\n");
    let h = http(p, "GET", "/v1/kv/h", &[], b"").json();
    assert_eq!(
        (h["type"].clone(), h["value"].clone()),
        (json!("hash"), json!({"f": "v"}))
    );
    assert_eq!(c.cmd(&["SADD", "s", "a", "b"]), ":2\r\n");
    let set = http(p, "GET", "/v1/kv/s", &[], b"").json();
    assert_eq!(
        (set["type"].clone(), set["value"].clone()),
        (json!("set"), json!(["a", "b"]))
    );
    assert_eq!(c.cmd(&["INCRBY", "n", "5"]), ":5\r\n");
    assert_eq!(http(p, "GET", "/v1/kv/n", &[], b"").json()["value"], "5");

    // Overwrite, then a TTL.
    assert_eq!(http(p, "PUT", "/v1/kv/greeting", &[], b"v2").status, 200);
    assert_eq!(c.cmd(&["GET", "greeting"]), bulk(Some("v2")));
    assert_eq!(http(p, "PUT", "/v1/kv/temp?ttl_ms=60000", &[], b"t").status, 200);
    assert_eq!(c.cmd(&["TTL", "temp"]), ":60\r\n");
    assert!(http(p, "GET", "/v1/kv/temp", &[], b"").json()["expires_at_ms"].is_u64());

    // DELETE, then the key is gone.
    let del = http(p, "DELETE", "/v1/kv/greeting", &[], b"");
    assert_eq!((del.status, del.json()["deleted"].clone()), (200, json!(1)));
    // A deleted key reads as gone: 404, or (as http.rs does while the tombstone is kept, so a
    // writer still gets the context) 200 with `"deleted": true` and no value.
    let gone = http(p, "GET", "/v1/kv/greeting", &[], b"");
    let body = gone.json();
    match gone.status {
        404 => assert!(body["error"].is_string()),
        200 => {
            assert_eq!(
                (body["deleted"].clone(), body["value"].clone()),
                (json!(true), json!(null)),
                "{body}"
            );
            assert!(body["context"].is_string());
        }
        other => panic!("GET of a deleted key: {other} {body}"),
    }
    assert_eq!(
        http(p, "DELETE", "/v1/kv/greeting", &[], b"").json()["deleted"],
        json!(0)
    );
    assert_eq!(c.cmd(&["GET", "greeting"]), "$-1\r\n");
    assert_eq!(http(p, "GET", "/v1/kv/never-was", &[], b"").status, 404);

    // Bad requests get 4xx with a JSON error, and the server goes on.
    let too_big = http(p, "PUT", "/v1/kv/big", &[], &[b'x'; 5000]);
    assert_eq!(too_big.status, 413, "{}", too_big.text());
    assert_eq!(http(p, "GET", "/v1/kv/big", &[], b"").status, 404);
    let bad_ctx = http(p, "PUT", "/v1/kv/k", &[("X-Concord-Context", "!!not-a-token!!")], b"v");
    assert_eq!(bad_ctx.status, 400);
    assert!(bad_ctx.json()["error"].as_str().unwrap().contains("context"));
    assert_eq!(http(p, "PUT", "/v1/kv/k?ttl_ms=0", &[], b"v").status, 400);
    assert_eq!(http(p, "PUT", "/v1/kv/k?ack=bogus", &[], b"v").status, 400);
    // A single region has no other region to wait for: ack=all is met at once.
    let all = http(p, "PUT", "/v1/kv/k?ack=all", &[], b"v");
    assert_eq!(all.status, 200, "{}", all.text());
    assert_eq!(all.json()["acked_regions"], 0);
    let garbage = http_raw(p, b"\x16\x03\x01 garbage that is not HTTP\r\n\r\n");
    assert_eq!(garbage.status, 400);
    assert_eq!(http(p, "GET", "/v1/health", &[], b"").status, 200);
}

#[test]
fn health_status_and_metrics() {
    let s = Server::start();
    let p = s.http_port();
    let health = http(p, "GET", "/v1/health", &[], b"");
    assert_eq!(
        (health.status, health.json()),
        (200, json!({"status": "ok", "region": "us"}))
    );

    let mut c = s.raw();
    for i in 0..5 {
        assert_eq!(c.cmd(&["SET", &format!("k{i}"), "v"]), "+OK\r\n");
    }
    let status = http(p, "GET", "/v1/status", &[], b"");
    assert_eq!(status.status, 200);
    let st = status.json();
    assert_eq!(st["region"], "us");
    assert_eq!(st["id"], 1);
    assert_eq!(st["cluster"], "itest");
    assert_eq!(st["applied"]["us"], 5, "{st}");
    assert_eq!(st["keys"], 5);
    assert_eq!(st["peers"], json!([]));
    assert_eq!(st["fsync"], "batch");

    let m = http(p, "GET", "/metrics", &[], b"");
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = m.text();
    for line in [
        "# TYPE concord_commands_total counter",
        "concord_writes_total{region=\"us\"} 5",
        "concord_keys{region=\"us\"} 5",
        "# TYPE concord_connections gauge",
    ] {
        assert!(text.contains(line), "/metrics lacks {line:?}:\n{text}");
    }
    // Every sample line is `name{labels} number`.
    for l in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (_, value) = l.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample {l:?}");
    }
    let conflicts = http(p, "GET", "/v1/conflicts?limit=5", &[], b"");
    assert_eq!((conflicts.status, conflicts.json()), (200, json!({"conflicts": []})));
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn set(key: &'static str, value: &'static str) -> Request {
    Request::Set {
        key: key.into(),
        value: value.into(),
        condition: SetCondition::Always,
        expiry: SetExpiry::Clear,
        get: false,
    }
}

/// Two regions write `keys` concurrently (neither sees the other's write); eu's ops are applied
/// to us's engine and us's resulting state is stored in us's data dir, as the node would have.
fn make_siblings(setup: &Setup, keys: &[&'static str]) {
    let cfg = Config::parse(&setup.toml()).expect("valid config");
    let engine = |id| {
        let mut ec = EngineConfig::new(id, cfg.region_names());
        ec.policies = cfg.policy_set();
        Engine::new(ec)
    };
    let (mut us, mut eu) = (engine(1), engine(2));
    let now = now_ms();
    let (mut us_out, mut eu_out, mut received) = (Output::default(), Output::default(), Output::default());
    for key in keys {
        us.execute(set(key, "from-us"), now, &mut us_out).unwrap();
        eu.execute(set(key, "from-eu"), now + 1, &mut eu_out).unwrap();
    }
    for op in eu_out.local_ops {
        assert!(matches!(us.receive(op, now + 2, &mut received), Received::Applied(_)));
    }
    let us_dir = &setup.regions[0].data_dir;
    std::fs::create_dir_all(us_dir).unwrap();
    let store = Store::open(&us_dir.join("concord.redb")).expect("open us store");
    let mut ops = us_out.local_ops;
    ops.extend(received.remote_ops);
    let batch = Batch {
        slots: Vec::new(),
        inline: Vec::new(),
        states: us.key_states().map(|(k, st)| (k.clone(), Some(st.clone()))).collect(),
        ops,
        conflicts: received.conflicts,
        meta: Some(us.meta()),
    };
    store.commit(&batch, Durability::Immediate).expect("commit");
}

#[test]
fn siblings_and_context_token() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        password: None,
        fsync: "always",
        max_value_bytes: None,
        extra: "[[policy]]\nmatch = \"doc:*\"\nstrings = \"siblings\"\n".into(),
        regions: vec![Region::new("us", 1, dir.path()), Region::new("eu", 2, dir.path())],
    };
    make_siblings(&setup, &["doc:1", "doc:2"]);
    let s = Server::spawn(setup, 0, dir.path());
    let p = s.http_port();

    let get = http(p, "GET", "/v1/kv/doc:1", &[], b"");
    assert_eq!(get.status, 200, "{}", get.text());
    let doc = get.json();
    assert_eq!(doc["policy"], "siblings", "{doc}");
    let siblings = doc["siblings"].as_array().unwrap();
    assert_eq!(siblings.len(), 2, "{doc}");
    let mut seen: Vec<(String, String)> = siblings
        .iter()
        .map(|s| {
            (
                s["origin"].as_str().unwrap().into(),
                s["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen, [("eu".into(), "from-eu".into()), ("us".into(), "from-us".into())]);
    for sib in siblings {
        assert!(sib["hlc"].as_str().is_some_and(|h| !h.is_empty()), "{sib}");
    }
    let context = doc["context"].as_str().unwrap().to_string();
    assert!(!context.is_empty());

    // The same over RESP: CONCORD.SIBLINGS answers [context, [[value, origin, hlc, dot]...]].
    let mut c = s.raw();
    let sib = c.cmd(&["CONCORD.SIBLINGS", "doc:1"]);
    assert!(
        sib.starts_with(&format!("*2\r\n{}*2\r\n", bulk(Some(&context)))),
        "{sib}"
    );
    for (origin, value) in [("us", "from-us"), ("eu", "from-eu")] {
        assert!(
            sib.contains(&format!("{}{}", bulk(Some(value)), bulk(Some(origin)))),
            "{sib}"
        );
    }
    // A plain GET still answers one of the versions, like any Redis string.
    let plain = c.cmd(&["GET", "doc:1"]);
    assert!(
        plain == bulk(Some("from-us")) || plain == bulk(Some("from-eu")),
        "{plain}"
    );

    // The concurrent writes were recorded as a conflict.
    let conflicts = http(p, "GET", "/v1/conflicts?limit=10", &[], b"").json();
    let list = conflicts["conflicts"].as_array().unwrap();
    assert!(
        list.iter().any(|c| c["key"] == "doc:1" && c["policy"] == "siblings"),
        "{conflicts}"
    );
    let status = http(p, "GET", "/v1/status", &[], b"").json();
    assert_eq!(status["applied"]["eu"], 2, "{status}");
    assert_eq!(status["peers"][0]["region"], "eu");

    // PUT with the context resolves both siblings into one.
    let put = http(p, "PUT", "/v1/kv/doc:1", &[("X-Concord-Context", &context)], b"merged");
    assert_eq!(put.status, 200, "{}", put.text());
    let doc = http(p, "GET", "/v1/kv/doc:1", &[], b"").json();
    let siblings = doc["siblings"].as_array().unwrap();
    assert_eq!(siblings.len(), 1, "{doc}");
    assert_eq!(siblings[0]["value"], "merged");
    assert_eq!(siblings[0]["origin"], "us");
    assert_eq!(doc["value"], "merged");
    assert_ne!(doc["context"], json!(context));
    assert_eq!(c.cmd(&["GET", "doc:1"]), bulk(Some("merged")));

    // CONCORD.RESOLVE does the same over RESP (doc:2 has its own two siblings).
    let sib = c.cmd(&["CONCORD.SIBLINGS", "doc:2"]);
    let ctx2 = sib.split("\r\n").nth(2).unwrap().to_string();
    assert!(sib.contains("*2\r\n*4\r\n"), "two siblings: {sib}");
    assert_eq!(c.cmd(&["CONCORD.RESOLVE", "doc:2", &ctx2, "merged-2"]), "+OK\r\n");
    let sib = c.cmd(&["CONCORD.SIBLINGS", "doc:2"]);
    assert!(
        sib.contains("*1\r\n*4\r\n$8\r\nmerged-2\r\n$2\r\nus\r\n"),
        "one sibling: {sib}"
    );
    let doc2 = http(p, "GET", "/v1/kv/doc:2", &[], b"").json();
    assert_eq!(doc2["siblings"].as_array().unwrap().len(), 1, "{doc2}");

    // Resolving again with the latest context replaces the single version.
    let latest = http(p, "GET", "/v1/kv/doc:1", &[], b"").json()["context"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        http(p, "PUT", "/v1/kv/doc:1", &[("X-Concord-Context", &latest)], b"a").status,
        200
    );
    let doc = http(p, "GET", "/v1/kv/doc:1", &[], b"").json();
    assert_eq!(doc["siblings"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["value"], "a");
}

/// With a `password`, the HTTP API wants `Authorization: Bearer <password>` (health and metrics
/// stay open, for load balancers and scrapers).
#[test]
fn http_requires_the_password_when_one_is_set() {
    let s = Server::start_with(|setup| setup.password = Some("hunter2-hunter2".into()));
    let p = s.http_port();
    assert_eq!(http(p, "GET", "/v1/health", &[], b"").status, 200);
    assert_eq!(http(p, "GET", "/metrics", &[], b"").status, 200);
    assert_eq!(http(p, "PUT", "/v1/kv/k", &[], b"v").status, 401);
    assert_eq!(
        http(p, "GET", "/v1/status", &[("Authorization", "Bearer wrong")], b"").status,
        401
    );
    let ok = http(
        p,
        "PUT",
        "/v1/kv/k",
        &[("Authorization", "Bearer hunter2-hunter2")],
        b"v",
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    let got = http(
        p,
        "GET",
        "/v1/kv/k",
        &[("Authorization", "Bearer hunter2-hunter2")],
        b"",
    );
    assert_eq!(got.json()["value"], "v");
}
