//! The ARM-shaped REST API: routes, authentication, body limits, and the handlers that turn a
//! request into stored resources plus a long-running operation (reported through the
//! `Azure-AsyncOperation` header, polled at `…/operations/{id}`).

use crate::engine::Engine;
use crate::error::ApiError;
use crate::{auth, kube, time};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use control::model::{node_name, ManagedClusterSpec, PoolMode, SUBSCRIPTION};
use control::rules::{check_update, needs_reimage, resolve_cluster, resolve_pool, PoolContext};
use control::{
    AgentPool, AgentPoolSpec, ControlError, ManagedCluster, MaxSurge, Operation, OperationKind,
    ReimagePlan,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use store::Store;

pub struct AppState {
    pub store: Store,
    pub engine: Engine,
    pub admin_token: String,
    pub max_body: usize,
    /// Held by every mutating request from its "is anything running?" check until its
    /// operation is recorded, so two concurrent requests cannot both start an operation on
    /// the same resource. Writes are rare; reads never take it.
    pub writes: tokio::sync::Mutex<()>,
    /// The registrar and verifier, when the node backend attests (the embedded backend).
    pub verifier: Option<std::sync::Arc<verifier::Verifier>>,
    /// Agent requests per client address.
    pub agent_limiter: crate::agents::RateLimiter,
}

pub(crate) type Shared = Arc<AppState>;
type ApiResult = Result<Response, ApiError>;

const CLUSTERS: &str =
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters";

pub fn router(state: Shared) -> Router {
    let arm = Router::new()
        .route(
            "/subscriptions/{sub}/providers/Microsoft.ContainerService/managedClusters",
            get(list_all_clusters),
        )
        .route(CLUSTERS, get(list_clusters))
        .route(
            &format!("{CLUSTERS}/{{name}}"),
            get(get_cluster).put(put_cluster).delete(delete_cluster),
        )
        .route(
            &format!("{CLUSTERS}/{{name}}/listClusterUserCredential"),
            post(credentials),
        )
        .route(
            &format!("{CLUSTERS}/{{name}}/listClusterAdminCredential"),
            post(credentials),
        )
        .route(&format!("{CLUSTERS}/{{name}}/agentPools"), get(list_pools))
        .route(
            &format!("{CLUSTERS}/{{name}}/nodes"),
            get(list_cluster_nodes),
        )
        .route(
            &format!("{CLUSTERS}/{{name}}/agentPools/{{pool}}"),
            get(get_pool).put(put_pool).delete(delete_pool),
        )
        .route(
            &format!("{CLUSTERS}/{{name}}/agentPools/{{pool}}/nodes"),
            get(list_pool_nodes),
        )
        .route(
            "/subscriptions/{sub}/providers/Microsoft.ContainerService/operations/{id}",
            get(get_operation),
        )
        .merge(crate::attestation::admin_router())
        .merge(crate::agents::admin_router())
        .fallback(|req: Request| async move {
            ApiError::NoRoute(format!("{} {}", req.method(), req.uri().path()))
        })
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/openapi.json", get(openapi))
        .merge(crate::attestation::public_router())
        .merge(crate::agents::agent_router(state.clone()))
        .merge(kube::router(state.clone()))
        .merge(arm)
        .layer(DefaultBodyLimit::max(state.max_body))
        .with_state(state)
}

/// The OpenAPI 3.0 document of every route (public, as the routes' shapes are no secret).
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

async fn authenticate(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth::bearer_matches(header, &s.admin_token) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// The body as `T`, with limit and syntax failures answered in the API's error shape.
fn parse_body<T: serde::de::DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(limit)
        } else {
            ApiError::BadBody(e.body_text())
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadBody(e.to_string()))
}

fn not_found(kind: &'static str, name: String) -> ApiError {
    ControlError::NotFound { kind, name }.into()
}

fn busy(state: &str) -> bool {
    !matches!(state, "Succeeded" | "Failed" | "Canceled")
}

fn new_operation_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::getrandom(&mut b).is_err() {
        b = time::now().as_bytes().iter().fold([0u8; 16], |mut acc, x| {
            acc.rotate_left(1);
            acc[0] ^= x;
            acc
        });
    }
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn operation_url(headers: &HeaderMap, id: &str) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.ContainerService/operations/{id}")
}

/// Starts `op` and answers `status` with `body` and the operation's status URL.
async fn accepted(
    s: &AppState,
    headers: &HeaderMap,
    kind: OperationKind,
    resource_id: String,
    plan: ReimagePlan,
    status: StatusCode,
    body: Value,
) -> ApiResult {
    let op = Operation::new(new_operation_id(), kind, resource_id, plan, time::now());
    let url = operation_url(headers, &op.id);
    s.engine.start(op).await?;
    let mut resp = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        resp.headers_mut().insert("azure-asyncoperation", v.clone());
        resp.headers_mut().insert("location", v);
    }
    Ok(resp)
}

/// The cluster as GET returns it: its pools folded into `agentPoolProfiles`.
async fn cluster_view(s: &AppState, mut c: ManagedCluster) -> Result<Value, ApiError> {
    let pools = s
        .store
        .agent_pools()
        .list(&c.resource_group(), &c.name)
        .await?;
    c.properties.agent_pool_profiles = pools
        .into_iter()
        .map(|p| {
            let mut v = serde_json::to_value(&p.properties).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("name".into(), json!(p.name));
            }
            v
        })
        .collect();
    Ok(serde_json::to_value(&c).unwrap_or_default())
}

async fn load_cluster(s: &AppState, rg: &str, name: &str) -> Result<ManagedCluster, ApiError> {
    s.store
        .clusters()
        .get(rg, name)
        .await?
        .ok_or_else(|| not_found("managed cluster", format!("{rg}/{name}")))
}

async fn list_all_clusters(State(s): State<Shared>) -> ApiResult {
    let mut value = Vec::new();
    for c in s.store.clusters().list(None).await? {
        value.push(cluster_view(&s, c).await?);
    }
    Ok(Json(json!({ "value": value })).into_response())
}

async fn list_clusters(
    State(s): State<Shared>,
    Path((_, rg)): Path<(String, String)>,
) -> ApiResult {
    let mut value = Vec::new();
    for c in s.store.clusters().list(Some(&rg)).await? {
        value.push(cluster_view(&s, c).await?);
    }
    Ok(Json(json!({ "value": value })).into_response())
}

async fn get_cluster(
    State(s): State<Shared>,
    Path((_, rg, name)): Path<(String, String, String)>,
) -> ApiResult {
    let c = load_cluster(&s, &rg, &name).await?;
    Ok(Json(cluster_view(&s, c).await?).into_response())
}

fn surge_of(pool: &AgentPool) -> MaxSurge {
    MaxSurge::parse(&pool.properties.upgrade_settings.max_surge).unwrap_or(MaxSurge::Count(1))
}

fn node_names(
    rg: &str,
    cluster: &str,
    pool: &str,
    ordinals: impl Iterator<Item = u32>,
) -> Vec<String> {
    ordinals.map(|i| node_name(rg, cluster, pool, i)).collect()
}

async fn put_cluster(
    State(s): State<Shared>,
    Path((_, rg, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let _writing = s.writes.lock().await;
    let spec: ManagedClusterSpec = parse_body(body, s.max_body)?;
    let (mut cluster, pools) = resolve_cluster(&rg, &name, &spec)?;
    if s.store.clusters().get(&rg, &name).await?.is_some() {
        return Err(ControlError::Conflict(format!(
            "managed cluster {rg}/{name} already exists: change its pools with nodepool add|update|delete"
        ))
        .into());
    }
    cluster.properties.provisioning_state = "Creating".into();
    s.store.clusters().put(&cluster).await?;
    let mut plan = ReimagePlan::default();
    for mut p in pools {
        p.properties.provisioning_state = "Creating".into();
        s.store.agent_pools().put(&rg, &name, &p).await?;
        let names = node_names(&rg, &name, &p.name, 0..p.properties.count);
        plan = plan.then(ReimagePlan::create(&names, surge_of(&p)));
    }
    let body = cluster_view(&s, cluster.clone()).await?;
    accepted(
        &s,
        &headers,
        OperationKind::CreateCluster,
        cluster.id,
        plan,
        StatusCode::CREATED,
        body,
    )
    .await
}

async fn delete_cluster(
    State(s): State<Shared>,
    Path((_, rg, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let _writing = s.writes.lock().await;
    let Some(mut cluster) = s.store.clusters().get(&rg, &name).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    if busy(&cluster.properties.provisioning_state) {
        return Err(ControlError::Conflict(format!(
            "managed cluster {rg}/{name} is {}: wait for its operation to finish",
            cluster.properties.provisioning_state
        ))
        .into());
    }
    if let Some(p) = s
        .store
        .agent_pools()
        .list(&rg, &name)
        .await?
        .into_iter()
        .find(|p| busy(&p.properties.provisioning_state))
    {
        return Err(ControlError::Conflict(format!(
            "agent pool {} is {}: wait for its operation to finish",
            p.name, p.properties.provisioning_state
        ))
        .into());
    }
    cluster.properties.provisioning_state = "Deleting".into();
    s.store.clusters().put(&cluster).await?;
    let nodes: Vec<String> = s
        .store
        .nodes()
        .list_cluster(&rg, &name)
        .await?
        .into_iter()
        .map(|n| n.name)
        .collect();
    let plan = ReimagePlan::remove(&nodes, MaxSurge::Percent(100));
    accepted(
        &s,
        &headers,
        OperationKind::DeleteCluster,
        cluster.id,
        plan,
        StatusCode::ACCEPTED,
        Value::Null,
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
struct PoolBody {
    #[serde(default)]
    properties: AgentPoolSpec,
}

async fn list_pools(
    State(s): State<Shared>,
    Path((_, rg, name)): Path<(String, String, String)>,
) -> ApiResult {
    load_cluster(&s, &rg, &name).await?;
    let pools = s.store.agent_pools().list(&rg, &name).await?;
    Ok(Json(json!({ "value": pools })).into_response())
}

async fn load_pool(s: &AppState, rg: &str, name: &str, pool: &str) -> Result<AgentPool, ApiError> {
    s.store
        .agent_pools()
        .get(rg, name, pool)
        .await?
        .ok_or_else(|| not_found("agent pool", format!("{rg}/{name}/{pool}")))
}

async fn get_pool(
    State(s): State<Shared>,
    Path((_, rg, name, pool)): Path<(String, String, String, String)>,
) -> ApiResult {
    Ok(Json(load_pool(&s, &rg, &name, &pool).await?).into_response())
}

async fn put_pool(
    State(s): State<Shared>,
    Path((_, rg, name, pool_name)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let _writing = s.writes.lock().await;
    let body: PoolBody = parse_body(body, s.max_body)?;
    let cluster = load_cluster(&s, &rg, &name).await?;
    if busy(&cluster.properties.provisioning_state) {
        return Err(ControlError::Conflict(format!(
            "managed cluster {rg}/{name} is {}: wait for its operation to finish",
            cluster.properties.provisioning_state
        ))
        .into());
    }
    let ctx = PoolContext {
        resource_group: &rg,
        cluster: &name,
        kubernetes_version: &cluster.properties.kubernetes_version,
        virtual_nodes: cluster.virtual_nodes(),
    };
    let old = s.store.agent_pools().get(&rg, &name, &pool_name).await?;
    let Some(old) = old else {
        let mut pool = resolve_pool(&ctx, &pool_name, &body.properties, None)?;
        pool.properties.provisioning_state = "Creating".into();
        s.store.agent_pools().put(&rg, &name, &pool).await?;
        let names = node_names(&rg, &name, &pool_name, 0..pool.properties.count);
        let plan = ReimagePlan::create(&names, surge_of(&pool));
        let view = serde_json::to_value(&pool).unwrap_or_default();
        return accepted(
            &s,
            &headers,
            OperationKind::CreateAgentPool,
            pool.id,
            plan,
            StatusCode::CREATED,
            view,
        )
        .await;
    };
    if busy(&old.properties.provisioning_state) {
        return Err(ControlError::Conflict(format!(
            "agent pool {pool_name} is {}: wait for its operation to finish",
            old.properties.provisioning_state
        ))
        .into());
    }
    let mut pool = resolve_pool(&ctx, &pool_name, &body.properties, Some(&old.properties))?;
    check_update(&old.properties, &pool.properties)?;
    if pool.properties.mode == PoolMode::System && pool.properties.count == 0 {
        return Err(
            ControlError::InvalidParameter("a System pool needs at least one node".into()).into(),
        );
    }
    pool.properties.provisioning_state = "Updating".into();
    s.store.agent_pools().put(&rg, &name, &pool).await?;
    let nodes = s.store.nodes().list_pool(&rg, &name, &pool_name).await?;
    let want = pool.properties.count as usize;
    let surge = surge_of(&pool);
    let keep: Vec<String> = nodes.iter().take(want).map(|n| n.name.clone()).collect();
    let extra: Vec<String> = nodes.iter().skip(want).map(|n| n.name.clone()).collect();
    let next = nodes.iter().map(|n| n.ordinal + 1).max().unwrap_or(0);
    let missing = want.saturating_sub(nodes.len()) as u32;
    let mut plan = ReimagePlan::remove(&extra, surge);
    if needs_reimage(&old.properties, &pool.properties) {
        plan = plan.then(ReimagePlan::rolling_reimage(&keep, surge));
    }
    plan = plan.then(ReimagePlan::create(
        &node_names(&rg, &name, &pool_name, next..next + missing),
        surge,
    ));
    let view = serde_json::to_value(&pool).unwrap_or_default();
    accepted(
        &s,
        &headers,
        OperationKind::UpdateAgentPool,
        pool.id,
        plan,
        StatusCode::OK,
        view,
    )
    .await
}

async fn delete_pool(
    State(s): State<Shared>,
    Path((_, rg, name, pool_name)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let _writing = s.writes.lock().await;
    let Some(mut pool) = s.store.agent_pools().get(&rg, &name, &pool_name).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    if busy(&pool.properties.provisioning_state) {
        return Err(ControlError::Conflict(format!(
            "agent pool {pool_name} is {}: wait for its operation to finish",
            pool.properties.provisioning_state
        ))
        .into());
    }
    if pool.properties.mode == PoolMode::System {
        let systems = s
            .store
            .agent_pools()
            .list(&rg, &name)
            .await?
            .iter()
            .filter(|p| p.properties.mode == PoolMode::System)
            .count();
        if systems <= 1 {
            return Err(ControlError::Conflict(format!(
                "agent pool {pool_name} is the cluster's last System pool and cannot be deleted"
            ))
            .into());
        }
    }
    pool.properties.provisioning_state = "Deleting".into();
    s.store.agent_pools().put(&rg, &name, &pool).await?;
    let nodes: Vec<String> = s
        .store
        .nodes()
        .list_pool(&rg, &name, &pool_name)
        .await?
        .into_iter()
        .map(|n| n.name)
        .collect();
    let plan = ReimagePlan::remove(&nodes, MaxSurge::Percent(100));
    accepted(
        &s,
        &headers,
        OperationKind::DeleteAgentPool,
        pool.id,
        plan,
        StatusCode::ACCEPTED,
        Value::Null,
    )
    .await
}

async fn list_pool_nodes(
    State(s): State<Shared>,
    Path((_, rg, name, pool)): Path<(String, String, String, String)>,
) -> ApiResult {
    load_pool(&s, &rg, &name, &pool).await?;
    let nodes = s.store.nodes().list_pool(&rg, &name, &pool).await?;
    Ok(Json(json!({ "value": nodes })).into_response())
}

async fn list_cluster_nodes(
    State(s): State<Shared>,
    Path((_, rg, name)): Path<(String, String, String)>,
) -> ApiResult {
    load_cluster(&s, &rg, &name).await?;
    let nodes = s.store.nodes().list_cluster(&rg, &name).await?;
    Ok(Json(json!({ "value": nodes })).into_response())
}

async fn get_operation(
    State(s): State<Shared>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult {
    let op = s
        .store
        .operations()
        .get(&id)
        .await?
        .ok_or_else(|| not_found("operation", id.clone()))?;
    let mut v = serde_json::to_value(&op).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("name".into(), json!(op.id));
    }
    Ok(Json(v).into_response())
}

/// `listClusterUserCredential` / `listClusterAdminCredential`: a kubeconfig (JSON, which
/// kubectl reads as YAML) pointing at this server's Kubernetes node API for the cluster.
async fn credentials(
    State(s): State<Shared>,
    Path((_, rg, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let c = load_cluster(&s, &rg, &name).await?;
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let user = format!("clusterUser_{rg}_{name}");
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": c.name, "cluster": {"server": format!("http://{host}{}", kube::prefix(&s.admin_token, &rg, &name))}}],
        "contexts": [{"name": c.name, "context": {"cluster": c.name, "user": user}}],
        "current-context": c.name,
        // No secret beyond the URL's read key: the admin token never leaves the data directory.
        "users": [{"name": user, "user": {}}],
        "preferences": {},
    });
    use base64::Engine as _;
    let value = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec_pretty(&kubeconfig).unwrap_or_default());
    Ok(Json(json!({"kubeconfigs": [{"name": "clusterUser", "value": value}]})).into_response())
}

#[cfg(test)]
mod openapi_tests {
    use std::collections::{BTreeMap, BTreeSet};

    /// Every `.route(PATH, METHODS)` in the router's source files, as path → methods.
    fn routes_in_source() -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for src in [
            include_str!("api.rs"),
            include_str!("kube.rs"),
            include_str!("attestation.rs"),
            include_str!("agents.rs"),
        ] {
            let src = src.split("#[cfg(test)]").next().unwrap();
            for chunk in src.split(".route(").skip(1) {
                // The call's own arguments: up to its closing parenthesis.
                let mut depth = 1usize;
                let end = chunk
                    .char_indices()
                    .find(|&(_, c)| {
                        match c {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            _ => {}
                        }
                        depth == 0
                    })
                    .map_or(chunk.len(), |(i, _)| i);
                let chunk = &chunk[..end];
                let path = if chunk.trim_start().starts_with("CLUSTERS,") {
                    super::CLUSTERS
                } else {
                    let q = chunk.find('"').unwrap();
                    let rest = &chunk[q + 1..];
                    &rest[..rest.find('"').unwrap()]
                };
                let path = path
                    .replace("{CLUSTERS}", super::CLUSTERS)
                    .replace("{{", "{")
                    .replace("}}", "}");
                let methods = out.entry(path).or_default();
                for m in ["get", "put", "post", "delete"] {
                    if chunk.contains(&format!("{m}(")) {
                        methods.insert(m.to_string());
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_routes_and_methods_served() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let documented: BTreeMap<String, BTreeSet<String>> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(p, ops)| {
                (
                    p.clone(),
                    ops.as_object().unwrap().keys().cloned().collect(),
                )
            })
            .collect();
        let served = routes_in_source();
        assert!(served.len() > 25, "{served:?}");
        assert_eq!(documented, served);
        // Every operation names its responses and has a unique id.
        let mut ids = BTreeSet::new();
        for ops in doc["paths"].as_object().unwrap().values() {
            for op in ops.as_object().unwrap().values() {
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
                assert!(ids.insert(op["operationId"].as_str().unwrap().to_string()));
            }
        }
    }
}
