//! The HTTP/JSON API (axum), for what Redis cannot express: siblings, causal contexts, status,
//! the conflict log, metrics. Errors map to HTTP statuses in one place ([`ApiError`]).

use crate::node::{Node, NodeError};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use concord_core::codec::parse_context_token;
use concord_core::{CommandError, ConflictRecord, Kind, Reply, Request, SetCondition, SetExpiry};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio_stream::StreamExt;

pub const CONTEXT_HEADER: &str = "x-concord-context";

/// Every API error, mapped to a status and a JSON body `{"error": ...}`.
pub enum ApiError {
    BadRequest(String),
    NotFound,
    PayloadTooLarge(usize),
    WrongType,
    Unavailable(String),
    /// Applied, but not by as many regions as asked before the timeout (202, not undone).
    NotAcked(String),
    Internal(String),
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Command(CommandError::WrongType) => ApiError::WrongType,
            NodeError::Command(c) => ApiError::BadRequest(c.to_string()),
            NodeError::WritesRefused(r) | NodeError::TryAgain(r) => ApiError::Unavailable(r),
            NodeError::Other(o) => ApiError::Internal(o),
            e @ NodeError::NotAcked(_) => ApiError::NotAcked(e.to_string()),
            e @ NodeError::Conflict(_) => ApiError::BadRequest(e.to_string()),
            // An error line from the home region: the same statuses as a local error.
            NodeError::Remote(line) if line.starts_with("WRONGTYPE") => ApiError::WrongType,
            NodeError::Remote(line) if line.starts_with("TRYAGAIN") => ApiError::Unavailable(line),
            NodeError::Remote(line) if line.starts_with("NOTACKED") => ApiError::NotAcked(line),
            NodeError::Remote(line) => ApiError::BadRequest(line),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "key not found".into()),
            ApiError::PayloadTooLarge(max) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("value larger than limits.max_value_bytes ({max})"),
            ),
            ApiError::WrongType => (
                StatusCode::CONFLICT,
                "WRONGTYPE Operation against a key holding the wrong kind of value".into(),
            ),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            ApiError::NotAcked(m) => (StatusCode::ACCEPTED, m),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
        };
        (status, Json(json!({ "error": msg }))).into_response()
    }
}

/// With a `password` configured, every route but `/v1/health` and `/metrics` needs
/// `Authorization: Bearer <password>` (the same password Redis clients give to `AUTH`).
async fn require_auth(
    State(node): State<Arc<Node>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(pw) = &node.config.password else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if path == "/v1/health" || path == "/metrics" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = given
        .is_some_and(|g| g.len() == pw.len() && g.bytes().zip(pw.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0);
    if ok {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "authentication required: Authorization: Bearer <password>" })),
        )
            .into_response()
    }
}

pub fn router(node: Arc<Node>) -> Router {
    let max_body = node.config.limits.max_value_bytes;
    let auth = axum::middleware::from_fn_with_state(node.clone(), require_auth);
    let mut routes = Router::new();
    if node.config.testing.hooks {
        // Test hooks (`[testing] hooks = true` only): break this region on purpose.
        routes = routes.route("/v1/admin/test/corrupt/{key}", axum::routing::post(test_corrupt));
    }
    routes
        .route("/v1/health", get(health))
        .route("/v1/kv/{key}", get(kv_get).put(kv_put).delete(kv_delete))
        .route("/v1/status", get(status))
        .route("/v1/conflicts", get(conflicts))
        .route("/v1/conflicts/stream", get(conflict_stream))
        .route("/metrics", get(metrics))
        .route("/v1/admin/links", get(links_get))
        .route("/v1/admin/links/{peer}", axum::routing::put(link_put).get(link_get))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(auth)
        .with_state(node)
}

async fn health(State(node): State<Arc<Node>>) -> Json<Value> {
    Json(json!({ "status": "ok", "region": node.region.name }))
}

fn text(b: &Bytes) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => json!({ "base64": base64_encode(b) }),
    }
}

fn base64_encode(b: &[u8]) -> String {
    use std::fmt::Write;
    // Hex keeps this crate free of another dependency; values that are not UTF-8 are rare here.
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn reply_json(r: Reply) -> Value {
    match r {
        Reply::Ok => json!("OK"),
        Reply::Nil => Value::Null,
        Reply::Int(i) => json!(i),
        Reply::Bulk(b) => text(&b),
        Reply::Status(s) => json!(s),
        Reply::Array(a) | Reply::Set(a) => Value::Array(a.into_iter().map(reply_json).collect()),
        Reply::Map(m) => {
            let mut o = serde_json::Map::new();
            for (k, v) in m {
                let k = match reply_json(k) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                o.insert(k, reply_json(v));
            }
            Value::Object(o)
        }
        // JSON has no infinities: those are the strings Redis writes.
        Reply::Double(d) if d.is_finite() => json!(d),
        Reply::Double(d) => json!(if d > 0.0 { "inf" } else { "-inf" }),
        Reply::Pairs(p) => Value::Array(
            p.into_iter()
                .map(|(a, b)| Value::Array(vec![reply_json(a), reply_json(b)]))
                .collect(),
        ),
        Reply::Error(line) => json!({ "error": line }),
    }
}

async fn kv_get(State(node): State<Arc<Node>>, Path(key): Path<String>) -> Result<Json<Value>, ApiError> {
    let key = Bytes::from(key);
    let view = node.with_engine(|e| e.describe(&key, node.now_ms()));
    let Some(kind) = view.kind else {
        if view.siblings.is_empty() {
            return Err(ApiError::NotFound);
        }
        // All siblings are tombstones (deleted), but the context is still useful to a writer.
        return Ok(Json(json!({ "key": text(&key), "value": null, "deleted": true,
            "context": view.context, "siblings": siblings_json(&view.siblings) })));
    };
    let value = match kind {
        Kind::String | Kind::Counter => view.value.as_ref().map(text).unwrap_or(Value::Null),
        Kind::Hash => reply_json(node.execute(Request::HGetAll(key.clone())).await?),
        Kind::Set => reply_json(node.execute(Request::SMembers(key.clone())).await?),
        // `[member, score]` pairs, lowest first (ZRANGE key 0 -1 WITHSCORES).
        Kind::ZSet => reply_json(
            node.execute(Request::Zset(concord_core::ZsetRequest::Range {
                key: key.clone(),
                by: concord_core::ZRangeBy::Rank(0, -1),
                rev: false,
                limit: None,
                with_scores: true,
            }))
            .await?,
        ),
        // The estimate (PFCOUNT key).
        Kind::Hll => reply_json(
            node.execute(Request::Hll(concord_core::HllRequest::Count(vec![key.clone()])))
                .await?,
        ),
        Kind::List => reply_json(
            node.execute(Request::LRange {
                key: key.clone(),
                start: 0,
                stop: -1,
            })
            .await?,
        ),
    };
    Ok(Json(json!({
        "key": text(&key),
        "type": kind.name(),
        "value": value,
        "siblings": siblings_json(&view.siblings),
        "context": view.context,
        "expires_at_ms": view.expiry_ms,
        "policy": view.policy,
        "replicated": view.replicated,
    })))
}

fn siblings_json(s: &[concord_core::SiblingView]) -> Value {
    Value::Array(
        s.iter()
            .map(|s| {
                json!({
                    "value": s.value.as_ref().map(text),
                    "deleted": s.value.is_none(),
                    "origin": s.region,
                    "hlc": s.hlc.to_string(),
                    "dot": s.dot.to_string(),
                })
            })
            .collect(),
    )
}

#[derive(Deserialize)]
struct PutParams {
    /// Time to live in ms.
    ttl_ms: Option<u64>,
    ack: Option<String>,
}

async fn kv_put(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
    Query(params): Query<PutParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.len() > node.config.limits.max_value_bytes {
        return Err(ApiError::PayloadTooLarge(node.config.limits.max_value_bytes));
    }
    let ack = ack_param(params.ack.as_deref())?;
    let key = Bytes::from(key);
    // The same command a Redis client would send: it is what a home region executes.
    let (req, args) = match headers.get(CONTEXT_HEADER) {
        Some(token) => {
            let context =
                parse_context_token(token.as_bytes()).map_err(|e| ApiError::BadRequest(format!("bad context: {e}")))?;
            if params.ttl_ms.is_some() {
                return Err(ApiError::BadRequest("ttl_ms cannot be combined with a context".into()));
            }
            let args = vec![
                Bytes::from_static(b"CONCORD.RESOLVE"),
                key.clone(),
                Bytes::copy_from_slice(token.as_bytes()),
                body.clone(),
            ];
            (
                Request::Resolve {
                    key: key.clone(),
                    context,
                    value: body,
                },
                args,
            )
        }
        None => {
            let expiry = match params.ttl_ms {
                Some(0) => return Err(ApiError::BadRequest("ttl_ms must be positive".into())),
                Some(ms) => SetExpiry::InMs(ms),
                None => SetExpiry::Clear,
            };
            let mut args = vec![Bytes::from_static(b"SET"), key.clone(), body.clone()];
            if let Some(ms) = params.ttl_ms {
                args.push(Bytes::from_static(b"PX"));
                args.push(Bytes::from(ms.to_string()));
            }
            (
                Request::Set {
                    key: key.clone(),
                    value: body,
                    condition: SetCondition::Always,
                    expiry,
                    get: false,
                },
                args,
            )
        }
    };
    write_with_ack(&node, key, req, args, ack).await
}

/// Run a write where it belongs (here or at its home region) and, with an ack level, wait for
/// other regions: 200 when enough have it, 202 with the honest count at the timeout, 409 with the
/// siblings when another region wrote a concurrent version of a `siblings` key.
async fn write_with_ack(
    node: &Arc<Node>,
    key: Bytes,
    req: Request,
    args: Vec<Bytes>,
    ack: Option<concord_core::AckLevel>,
) -> Result<Response, ApiError> {
    if let Some(home) = node.route(&req)? {
        let reply = match ack {
            Some(level) => node.forward_with_ack(home, args, level).await?,
            None => node.forward(home, args).await?,
        };
        let home_name = node
            .config
            .regions
            .iter()
            .find(|r| r.id == home)
            .map(|r| r.name.clone());
        return Ok(Json(json!({ "ok": true, "reply": reply_json(reply), "home": home_name })).into_response());
    }
    let is_delete = matches!(req, Request::Del(_));
    if node.home_of(&key) == Some(node.region.id) {
        node.check_home_writes()?;
    }
    let (reply, ticket, own_seq) = node.execute_tracked(req).await?;
    if let Some(t) = ticket {
        node.wait_acknowledgeable(t).await?;
    }
    let level = ack.unwrap_or_else(|| node.policy_ack(&key));
    let view = node.with_engine(|e| e.describe(&key, node.now_ms()));
    let mut body = json!({ "ok": true, "reply": reply_json(reply.clone()), "context": view.context });
    if let (true, Reply::Int(n)) = (is_delete, &reply) {
        body["deleted"] = json!(n);
    }
    if level == concord_core::AckLevel::Local {
        return Ok(Json(body).into_response());
    }
    let wanted = crate::routing::regions_needed(level, node.config.regions.len());
    let timeout = std::time::Duration::from_millis(node.config.ack_timeout_ms);
    // This write's own seq (a region-local key takes none: nothing to wait for).
    let Some(seq) = own_seq else {
        return Ok(Json(body).into_response());
    };
    let o = node.wait_for_acks(&key, seq, wanted, timeout).await;
    body["acked_regions"] = json!(o.acked);
    body["wanted_regions"] = json!(o.wanted);
    body["timed_out"] = json!(o.timed_out);
    if o.concurrent_versions > 1 && node.policy_name(&key) == "siblings" {
        let view = node.with_engine(|e| e.describe(&key, node.now_ms()));
        body["ok"] = json!(false);
        body["error"] = json!("another region wrote a concurrent version: resolve with the context");
        body["siblings"] = siblings_json(&view.siblings);
        body["context"] = json!(view.context);
        return Ok((StatusCode::CONFLICT, Json(body)).into_response());
    }
    let status = if o.timed_out {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)).into_response())
}

/// The `?ack=` parameter of a write.
fn ack_param(ack: Option<&str>) -> Result<Option<concord_core::AckLevel>, ApiError> {
    ack.map(|a| {
        crate::routing::parse_ack(a)
            .ok_or_else(|| ApiError::BadRequest(format!("ack={a}: expected local, one, majority or all")))
    })
    .transpose()
}

#[derive(Deserialize)]
struct DeleteParams {
    ack: Option<String>,
}

async fn kv_delete(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
    Query(params): Query<DeleteParams>,
) -> Result<Response, ApiError> {
    let ack = ack_param(params.ack.as_deref())?;
    let key = Bytes::from(key);
    let req = Request::Del(vec![key.clone()]);
    let args = vec![Bytes::from_static(b"DEL"), key.clone()];
    write_with_ack(&node, key, req, args, ack).await
}

/// A vector summed per region: `{"us": ops of every us writer applied, ...}` (a region has one
/// writer id per node incarnation, DESIGN §8.1).
fn per_region(e: &concord_core::Engine, vv: &concord_core::VersionVector) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for (w, c) in vv.iter() {
        let name = e.region_name(w);
        let sum = m.get(&name).and_then(|v| v.as_u64()).unwrap_or(0) + c;
        m.insert(name, json!(sum));
    }
    m
}

/// A vector by writer id, as text keys.
fn writers_json(vv: &concord_core::VersionVector) -> Value {
    Value::Object(vv.iter().map(|(w, c)| (w.to_string(), json!(c))).collect())
}

/// The status document (also behind `CONCORD.STATUS` and `INFO replication`).
pub fn status_json(node: &Node) -> Value {
    let peers = peers_json(node);
    let warnings = link_warnings(node);
    // Outside the engine lock below: each takes it itself.
    let state_digest = crate::aae::state_digest_hex(node);
    let anti_entropy = crate::aae::status_json(node);
    node.with_engine(|e| {
        let applied: serde_json::Map<String, Value> = per_region(e, e.applied());
        json!({
            "region": node.region.name,
            "id": node.region.id,
            "cluster": node.config.cluster,
            "applied": applied,
            "writer": node.writer(),
            "applied_writers": writers_json(e.applied()),
            "state_digest": state_digest,
            "anti_entropy": anti_entropy,
            "keys": e.key_states().count(),
            "buffered_ops": e.buffered_ops(),
            "peers": peers,
            "topology": format!("{:?}", node.config.topology).to_lowercase(),
            "warnings": warnings,
            "conflicts_by_policy": e.stats.conflicts,
            "hlc": e.clock().last().to_string(),
            "clock_skew_events": e.clock().remote_ahead_count,
            "fsync": format!("{:?}", node.config.storage.fsync).to_lowercase(),
            "uptime_s": node.started.elapsed().as_secs(),
        })
    })
}

fn peers_json(node: &Node) -> Vec<Value> {
    let links = node.links_snapshot();
    let upstreams = crate::replication::my_upstreams(node);
    let vectors = node.with_engine(|e| e.peer_vectors().clone());
    node.config
        .regions
        .iter()
        .filter(|r| r.id != node.region.id)
        .map(|r| {
            let l = links.get(&r.id);
            let (lag_ms, lag_ops) = node.lag(r.id);
            let applied: serde_json::Map<String, Value> = vectors
                .get(&r.id)
                .map(|vv| node.with_engine(|e| per_region(e, vv)))
                .unwrap_or_default();
            json!({
                "region": r.name,
                "id": r.id,
                "connected": l.is_some_and(|l| l.upstream_connected || l.downstream_connected),
                "upstream": upstreams.contains(&r.id),
                "upstream_connected": l.is_some_and(|l| l.upstream_connected),
                "downstream_connected": l.is_some_and(|l| l.downstream_connected),
                "lag_ms": lag_ms,
                "lag_ops": lag_ops,
                "applied": applied,
                "last_heard_ms_ago": l.and_then(|l| l.last_heard).map(|t| t.elapsed().as_millis() as u64),
                "last_error": l.and_then(|l| l.last_error.clone()),
                "link_faults": l.map(|l| serde_json::to_value(l.faults).unwrap_or(Value::Null)),
                "ops_sent": l.map(|l| l.ops_sent),
                "ops_received": l.map(|l| l.ops_received),
                "bytes_sent": l.map(|l| l.bytes_sent),
                "bytes_received": l.map(|l| l.bytes_received),
                "snapshots_received": l.map(|l| l.snapshots_received),
                "snapshots_sent": l.map(|l| l.snapshots_sent),
                "snapshot_progress": l.and_then(|l| l.snapshot_progress).map(|(g, t)| json!({"received": g, "total": t})),
            })
        })
        .collect()
}

fn region_name(node: &Node, id: concord_core::ReplicaId) -> String {
    node.config
        .regions
        .iter()
        .find(|r| r.id == id)
        .map(|r| r.name.clone())
        .unwrap_or_else(|| format!("#{id}"))
}

/// Links the topology expects that are down, in words (a broken ring or a lost hub is loud).
fn link_warnings(node: &Node) -> Vec<String> {
    if node.config.regions.len() < 2 {
        return Vec::new();
    }
    let links = node.links_snapshot();
    let mut w = Vec::new();
    for up in crate::replication::my_upstreams(node) {
        if !links.get(&up).is_some_and(|l| l.upstream_connected) {
            let name = region_name(node, up);
            let what = match node.config.topology {
                crate::config::Topology::Ring => {
                    format!("ring broken: upstream {name} unreachable, ops from {name} and beyond stop here")
                }
                crate::config::Topology::Star if node.config.hub.as_deref() == Some(name.as_str()) => {
                    format!("hub {name} unreachable: this region is cut off from every other")
                }
                _ => format!("not receiving from {name}: upstream link down"),
            };
            w.push(what);
        }
    }
    // A dead downstream is as loud as a dead upstream: in a ring or star, this region's writes
    // stop reaching anyone past it.
    let shape_needs_downstream = !matches!(node.config.topology, crate::config::Topology::Mesh);
    for down in crate::replication::my_downstreams(node) {
        if shape_needs_downstream && !links.get(&down).is_some_and(|l| l.downstream_connected) {
            let name = region_name(node, down);
            let what = match node.config.topology {
                crate::config::Topology::Ring => {
                    format!("ring broken: downstream {name} unreachable, writes from here reach no region past it")
                }
                _ => format!("{name} is not pulling from this region: writes from here do not reach it"),
            };
            w.push(what);
        }
    }
    for (id, l) in &links {
        if l.faults.partitioned {
            w.push(format!(
                "link to {} is partitioned by the admin API",
                region_name(node, *id)
            ));
        }
    }
    w
}

/// The status reads the op log for lag, so it runs off the async workers.
async fn status(State(node): State<Arc<Node>>) -> Result<Json<Value>, ApiError> {
    let n = node.clone();
    let doc = node
        .blocking(move || status_json(&n))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(doc))
}

/// Test hook: forget a key's state in this region without an op (`crate::aae`).
async fn test_corrupt(State(node): State<Arc<Node>>, Path(key): Path<String>) -> Result<Json<Value>, ApiError> {
    if !crate::aae::corrupt_key_for_test(&node, key.as_bytes()).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Json(json!({ "key": key, "forgotten": true })))
}

pub fn conflict_json(c: &ConflictRecord, node: &Node) -> Value {
    let name = |r| {
        node.config
            .regions
            .iter()
            .find(|x| x.id == r)
            .map(|x| x.name.clone())
            .unwrap_or_default()
    };
    json!({
        "id": format!("{:016x}", c.id),
        "key": text(&c.key),
        "policy": c.policy,
        "kind": format!("{:?}", c.kind),
        "versions": c.versions.iter().map(|v| json!({
            "origin": name(v.dot.replica),
            "dot": v.dot.to_string(),
            "hlc": v.hlc.to_string(),
            "value": v.value.as_ref().map(text),
            "type": v.kind,
        })).collect::<Vec<_>>(),
        "winner": c.winner.map(|d| d.to_string()),
        "outcome": c.outcome,
        "detected_by": name(c.detected_by),
        "detected_at_ms": c.detected_at_ms,
    })
}

fn peer_id(node: &Node, peer: &str) -> Result<concord_core::ReplicaId, ApiError> {
    node.config
        .regions
        .iter()
        .find(|r| r.name == peer && r.id != node.region.id)
        .map(|r| r.id)
        .ok_or_else(|| ApiError::BadRequest(format!("{peer:?} is not another region of this cluster")))
}

async fn links_get(State(node): State<Arc<Node>>) -> Json<Value> {
    let links = node.links_snapshot();
    let out: serde_json::Map<String, Value> = links
        .values()
        .map(|l| (l.region.clone(), serde_json::to_value(l.faults).unwrap_or(Value::Null)))
        .collect();
    Json(Value::Object(out))
}

async fn link_get(State(node): State<Arc<Node>>, Path(peer): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = peer_id(&node, &peer)?;
    Ok(Json(serde_json::to_value(node.link_faults(id)).unwrap_or(Value::Null)))
}

/// Set a link's simulated faults (both directions at this node). Fields left out are cleared.
async fn link_put(
    State(node): State<Arc<Node>>,
    Path(peer): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = peer_id(&node, &peer)?;
    let faults: concord_net::LinkFaults =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("invalid link faults: {e}")))?;
    node.set_link_faults(id, faults).map_err(ApiError::BadRequest)?;
    Ok(Json(
        json!({ "peer": peer, "faults": serde_json::to_value(faults).unwrap_or(Value::Null) }),
    ))
}

#[derive(Deserialize)]
struct LimitParam {
    limit: Option<usize>,
}

async fn conflicts(State(node): State<Arc<Node>>, Query(p): Query<LimitParam>) -> Result<Json<Value>, ApiError> {
    let limit = p.limit.unwrap_or(100).min(10_000);
    let n = node.clone();
    let list = node
        .blocking(move || n.store().conflicts(limit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(
        json!({ "conflicts": list.iter().map(|c| conflict_json(c, &node)).collect::<Vec<_>>() }),
    ))
}

/// Newline-delimited JSON, one conflict per line, as they are committed.
async fn conflict_stream(State(node): State<Arc<Node>>) -> Response {
    let rx = node.conflict_feed.subscribe();
    let n = node.clone();
    // A reader slower than the conflicts are committed falls behind the bounded feed: it gets a
    // line saying how many it missed (they are in `GET /v1/conflicts`), never a silent gap.
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx).map(move |item| {
        Ok::<_, std::convert::Infallible>(match item {
            Ok(c) => format!("{}\n", conflict_json(&c, &n)),
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(missed)) => format!(
                "{}\n",
                json!({ "lagged": missed, "note": "this stream fell behind; the missed conflicts are in GET /v1/conflicts" })
            ),
        })
    });
    (
        [("content-type", "application/x-ndjson")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// Prometheus text. Reads the op log for lag, so it runs off the async workers.
async fn metrics(State(node): State<Arc<Node>>) -> Result<impl IntoResponse, ApiError> {
    let n = node.clone();
    let s = node
        .blocking(move || metrics_text(&n))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([("content-type", "text/plain; version=0.0.4")], s))
}

fn metrics_text(node: &Arc<Node>) -> String {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let mut s = String::new();
    let r = &node.region.name;
    let st = &node.stats;
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = writeln!(
            s,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{region=\"{r}\"}} {v}"
        );
    };
    counter(
        "concord_commands_total",
        "Commands executed.",
        st.commands.load(Relaxed),
    );
    counter(
        "concord_writes_total",
        "Write commands that changed state.",
        st.writes.load(Relaxed),
    );
    counter("concord_commits_total", "Group commits.", st.commits.load(Relaxed));
    counter("concord_fsyncs_total", "Fsyncs.", st.fsyncs.load(Relaxed));
    counter(
        "concord_connections_total",
        "Client connections accepted.",
        st.connections_total.load(Relaxed),
    );
    counter(
        "concord_rejected_connections_total",
        "Connections over the limit.",
        st.rejected_connections.load(Relaxed),
    );
    counter(
        "concord_protocol_errors_total",
        "Malformed client input.",
        st.protocol_errors.load(Relaxed),
    );
    let ps = &node.pubsub.stats;
    for (name, help, v) in [
        (
            "concord_pubsub_published_total",
            "PUBLISH commands run here.",
            &ps.published,
        ),
        (
            "concord_pubsub_received_total",
            "Pub/sub messages from other regions delivered here.",
            &ps.received,
        ),
        (
            "concord_pubsub_sent_to_peers_total",
            "Pub/sub messages sent to other regions (own and relayed).",
            &ps.sent_to_peers,
        ),
        (
            "concord_pubsub_relayed_total",
            "Other regions' pub/sub messages passed on to a further region.",
            &ps.relayed,
        ),
        (
            "concord_pubsub_peer_dropped_total",
            "Pub/sub messages a link to another region lost (its queue was full).",
            &ps.peer_dropped,
        ),
        (
            "concord_pubsub_duplicates_total",
            "Pub/sub messages from other regions dropped as seen already.",
            &ps.duplicates,
        ),
        (
            "concord_pubsub_slow_subscribers_dropped_total",
            "Subscribers disconnected because their queue was full.",
            &ps.slow_subscribers_dropped,
        ),
    ] {
        counter(name, help, v.load(Relaxed));
    }
    let (keys, conflicts, applied_remote, buffered) = node.with_engine(|e| {
        (
            e.key_states().count(),
            e.stats.conflicts.clone(),
            e.stats.remote_ops_applied,
            e.buffered_ops(),
        )
    });
    let _ = writeln!(s, "# HELP concord_keys Keys held (including tombstones).\n# TYPE concord_keys gauge\nconcord_keys{{region=\"{r}\"}} {keys}");
    let _ = writeln!(s, "# HELP concord_connections Open client connections.\n# TYPE concord_connections gauge\nconcord_connections{{region=\"{r}\"}} {}", st.connections_current.load(Relaxed));
    let _ = writeln!(s, "# HELP concord_buffered_ops Ops waiting for causal dependencies.\n# TYPE concord_buffered_ops gauge\nconcord_buffered_ops{{region=\"{r}\"}} {buffered}");
    let _ = writeln!(s, "# HELP concord_remote_ops_applied_total Remote ops applied.\n# TYPE concord_remote_ops_applied_total counter\nconcord_remote_ops_applied_total{{region=\"{r}\"}} {applied_remote}");
    let _ = writeln!(
        s,
        "# HELP concord_conflicts_total Conflicts detected, by policy.\n# TYPE concord_conflicts_total counter"
    );
    for (policy, n) in conflicts {
        let _ = writeln!(s, "concord_conflicts_total{{region=\"{r}\",policy=\"{policy}\"}} {n}");
    }
    let links = node.links_snapshot();
    let _ = writeln!(s, "# HELP concord_peer_connected Whether a replication link with the peer is up (1) or not (0).\n# TYPE concord_peer_connected gauge");
    for l in links.values() {
        let up = l.upstream_connected || l.downstream_connected;
        let _ = writeln!(
            s,
            "concord_peer_connected{{region=\"{r}\",peer=\"{}\"}} {}",
            l.region, up as u8
        );
    }
    let _ = writeln!(s, "# HELP concord_peer_lag_ops Ops this region has that the peer has not applied.\n# TYPE concord_peer_lag_ops gauge");
    let lags: Vec<(String, u64, u64)> = links
        .iter()
        .map(|(id, l)| {
            let (ms, ops) = node.lag(*id);
            (l.region.clone(), ms, ops)
        })
        .collect();
    for (peer, _, ops) in &lags {
        let _ = writeln!(s, "concord_peer_lag_ops{{region=\"{r}\",peer=\"{peer}\"}} {ops}");
    }
    let _ = writeln!(s, "# HELP concord_peer_lag_ms Age of the oldest op the peer has not applied, in ms.\n# TYPE concord_peer_lag_ms gauge");
    for (peer, ms, _) in &lags {
        let _ = writeln!(s, "concord_peer_lag_ms{{region=\"{r}\",peer=\"{peer}\"}} {ms}");
    }
    let _ = writeln!(
        s,
        "# HELP concord_peer_ops_sent_total Ops sent to the peer.\n# TYPE concord_peer_ops_sent_total counter"
    );
    for l in links.values() {
        let _ = writeln!(
            s,
            "concord_peer_ops_sent_total{{region=\"{r}\",peer=\"{}\"}} {}",
            l.region, l.ops_sent
        );
    }
    let _ = writeln!(s, "# HELP concord_peer_ops_received_total Ops received from the peer.\n# TYPE concord_peer_ops_received_total counter");
    for l in links.values() {
        let _ = writeln!(
            s,
            "concord_peer_ops_received_total{{region=\"{r}\",peer=\"{}\"}} {}",
            l.region, l.ops_received
        );
    }
    crate::aae::write_metrics(node, &mut s);
    s
}
