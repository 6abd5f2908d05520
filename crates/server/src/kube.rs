//! The read-only Kubernetes API for nodes, one per cluster under `/k8s/{rg}/{cluster}`:
//! discovery (`/api`, `/apis`, `/api/v1`, `/version`), `GET /api/v1/nodes` with
//! `labelSelector`, and `GET /api/v1/nodes/{name}`, in the Kubernetes `v1` Node schema, so
//! that `kubectl get nodes -l …` works through the kubeconfig `get-credentials` writes.
//! Authorised by the cluster's read key in the path (`/k8s/{rg}/{cluster}/{key}/…`, see
//! `auth::cluster_read_key`) or by the admin bearer token.

use crate::api::AppState;
use crate::error::ApiError;
use crate::{auth, time};
use axum::extract::{Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use control::model::SUBSCRIPTION;
use control::{ControlError, Node};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

type Shared = Arc<AppState>;

/// The path under which a cluster's Kubernetes API is served.
pub fn prefix(admin_token: &str, rg: &str, cluster: &str) -> String {
    format!(
        "/k8s/{rg}/{cluster}/{}",
        auth::cluster_read_key(admin_token, rg, cluster)
    )
}

pub fn router(state: Shared) -> Router<Shared> {
    Router::new()
        .route("/k8s/{rg}/{cluster}/{key}/version", get(version))
        .route("/k8s/{rg}/{cluster}/{key}/api", get(api_versions))
        .route("/k8s/{rg}/{cluster}/{key}/apis", get(api_groups))
        .route("/k8s/{rg}/{cluster}/{key}/api/v1", get(api_resources))
        .route("/k8s/{rg}/{cluster}/{key}/api/v1/nodes", get(list_nodes))
        .route(
            "/k8s/{rg}/{cluster}/{key}/api/v1/nodes/{name}",
            get(get_node),
        )
        .layer(middleware::from_fn_with_state(state, authorise))
}

/// Admits a request carrying the cluster's read key in its path, or the admin token.
async fn authorise(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let parts: Vec<&str> = req.uri().path().split('/').collect();
    let key_ok = match (parts.get(2), parts.get(3), parts.get(4)) {
        (Some(rg), Some(cluster), Some(key)) => {
            auth::same(key, &auth::cluster_read_key(&s.admin_token, rg, cluster))
        }
        _ => false,
    };
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if key_ok || auth::bearer_matches(header, &s.admin_token) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

async fn cluster_version(s: &AppState, rg: &str, cluster: &str) -> Result<String, ApiError> {
    let c = s.store.clusters().get(rg, cluster).await?.ok_or_else(|| {
        ApiError::Control(ControlError::NotFound {
            kind: "managed cluster",
            name: format!("{rg}/{cluster}"),
        })
    })?;
    Ok(c.properties.current_kubernetes_version)
}

async fn version(
    State(s): State<Shared>,
    Path((rg, cluster, _)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let v = cluster_version(&s, &rg, &cluster).await?;
    let mut parts = v.split('.');
    Ok(Json(json!({
        "major": parts.next().unwrap_or("1"),
        "minor": parts.next().unwrap_or("0"),
        "gitVersion": format!("v{v}"),
        "platform": "linux/amd64",
    }))
    .into_response())
}

async fn api_versions() -> Json<Value> {
    Json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }))
}

async fn api_groups() -> Json<Value> {
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}))
}

async fn api_resources() -> Json<Value> {
    Json(json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [{
            "name": "nodes",
            "singularName": "node",
            "namespaced": false,
            "kind": "Node",
            "verbs": ["get", "list"],
            "shortNames": ["no"],
        }],
    }))
}

/// One requirement of a label selector.
#[derive(Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

/// Parses the equality-based selector syntax (`k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-joined).
fn parse_selector(text: &str) -> Result<Vec<Requirement>, ApiError> {
    let bad = || ApiError::BadSelector(text.to_string());
    let valid = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    };
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part.contains(" in ") || part.contains(" notin ") || part.contains('(') {
            return Err(bad());
        }
        let req = if let Some((k, v)) = part.split_once("!=") {
            Requirement::NotEquals(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Requirement::Equals(k.trim().into(), v.trim().into())
        } else if let Some(k) = part.strip_prefix('!') {
            Requirement::NotExists(k.trim().into())
        } else {
            Requirement::Exists(part.into())
        };
        let (Requirement::Equals(k, _)
        | Requirement::NotEquals(k, _)
        | Requirement::Exists(k)
        | Requirement::NotExists(k)) = &req;
        if !valid(k) {
            return Err(bad());
        }
        out.push(req);
    }
    Ok(out)
}

fn matches(labels: &BTreeMap<String, String>, reqs: &[Requirement]) -> bool {
    reqs.iter().all(|r| match r {
        Requirement::Equals(k, v) => labels.get(k) == Some(v),
        Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
        Requirement::Exists(k) => labels.contains_key(k),
        Requirement::NotExists(k) => !labels.contains_key(k),
    })
}

/// A node in the Kubernetes `v1` Node schema.
fn kube_node(n: &Node, kubelet_version: &str) -> Value {
    let mut taints: Vec<Value> = n
        .taints
        .iter()
        .map(|t| json!({"key": t.key, "value": t.value, "effect": t.effect}))
        .collect();
    if n.cordoned {
        taints.push(json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}));
    }
    let conditions: Vec<Value> = n
        .conditions
        .iter()
        .map(|c| json!({"type": c.kind, "status": c.status, "reason": c.reason, "message": c.message}))
        .collect();
    let arch = n
        .labels
        .get("kubernetes.io/arch")
        .cloned()
        .unwrap_or_else(|| "amd64".into());
    json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": n.name,
            "uid": n.name,
            "creationTimestamp": n.created_at,
            "labels": n.labels,
            "annotations": {
                "trustlaunch.dev/boot-count": n.boot_count.to_string(),
                "trustlaunch.dev/attestation-status": n.attestation.status.as_str(),
            },
        },
        "spec": {
            "providerID": format!(
                "azure:///subscriptions/{SUBSCRIPTION}/resourceGroups/MC_{}_{}/providers/Microsoft.Compute/virtualMachineScaleSets/{}-vmss/virtualMachines/{}",
                n.resource_group,
                n.cluster_name,
                n.name.rsplit_once("-vmss").map_or(n.name.as_str(), |(set, _)| set),
                n.ordinal
            ),
            "unschedulable": n.cordoned,
            "taints": taints,
        },
        "status": {
            "conditions": conditions,
            "addresses": [{"type": "Hostname", "address": n.name}],
            "nodeInfo": {
                "kubeletVersion": format!("v{kubelet_version}"),
                "kubeProxyVersion": format!("v{kubelet_version}"),
                "osImage": n.node_image_version,
                "operatingSystem": n.labels.get("kubernetes.io/os").cloned().unwrap_or_else(|| "linux".into()),
                "architecture": arch,
                "containerRuntimeVersion": "containerd://1.7.22",
                "kernelVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": n.boot_count.to_string(),
            },
        },
    })
}

/// kubectl asks for a server-side `Table` (`Accept: application/json;as=Table;…`) to print
/// its default columns; other clients get the objects.
fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=Table"))
}

/// `kubectl get nodes` columns: NAME, STATUS, ROLES, AGE, VERSION.
fn table(nodes: &[&Node], kubelet_version: &str) -> Value {
    let col = |name: &str, format: &str| json!({"name": name, "type": "string", "format": format, "description": "", "priority": 0});
    let rows: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let ready = n
                .conditions
                .iter()
                .any(|c| c.kind == "Ready" && c.status == "True");
            let mut status = if ready { "Ready" } else { "NotReady" }.to_string();
            if n.cordoned {
                status.push_str(",SchedulingDisabled");
            }
            json!({
                "cells": [n.name, status, "<none>", time::age(&n.created_at), format!("v{kubelet_version}")],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": {
                        "name": n.name, "uid": n.name, "labels": n.labels,
                        "creationTimestamp": n.created_at,
                    },
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "1"},
        "columnDefinitions": [
            col("Name", "name"), col("Status", ""), col("Roles", ""), col("Age", ""), col("Version", ""),
        ],
        "rows": rows,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    #[serde(default)]
    label_selector: Option<String>,
}

async fn list_nodes(
    State(s): State<Shared>,
    Path((rg, cluster, _)): Path<(String, String, String)>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let version = cluster_version(&s, &rg, &cluster).await?;
    let reqs = parse_selector(q.label_selector.as_deref().unwrap_or(""))?;
    let all = s.store.nodes().list_cluster(&rg, &cluster).await?;
    let selected: Vec<&Node> = all.iter().filter(|n| matches(&n.labels, &reqs)).collect();
    if wants_table(&headers) {
        return Ok(Json(table(&selected, &version)).into_response());
    }
    let items: Vec<Value> = selected.iter().map(|n| kube_node(n, &version)).collect();
    Ok(Json(json!({
        "kind": "NodeList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "1"},
        "items": items,
    }))
    .into_response())
}

async fn get_node(
    State(s): State<Shared>,
    Path((rg, cluster, _, name)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let version = cluster_version(&s, &rg, &cluster).await?;
    match s.store.nodes().get(&name).await? {
        Some(n) if n.resource_group == rg && n.cluster_name == cluster => {
            if wants_table(&headers) {
                return Ok(Json(table(&[&n], &version)).into_response());
            }
            Ok(Json(kube_node(&n, &version)).into_response())
        }
        _ => Ok((
            axum::http::StatusCode::NOT_FOUND,
            Json(json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": format!("nodes \"{name}\" not found"), "reason": "NotFound",
                "details": {"name": name, "kind": "nodes"}, "code": 404,
            })),
        )
            .into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let l = BTreeMap::from([
            (
                "kubernetes.azure.com/secure-boot".to_string(),
                "true".to_string(),
            ),
            ("agentpool".to_string(), "np".to_string()),
        ]);
        let m = |s: &str| matches(&l, &parse_selector(s).unwrap());
        assert!(m("kubernetes.azure.com/secure-boot=true"));
        assert!(m("kubernetes.azure.com/secure-boot==true,agentpool=np"));
        assert!(!m("kubernetes.azure.com/trusted-launch=true"));
        assert!(m("!kubernetes.azure.com/trusted-launch"));
        assert!(m("agentpool!=sys"));
        assert!(m("agentpool"));
        assert!(m(""));
        assert!(parse_selector("env in (a,b)").is_err());
        assert!(parse_selector("=x").is_err());
    }
}
