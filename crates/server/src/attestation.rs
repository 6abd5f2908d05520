//! The attestation API beside the control plane: the JWKS that health tokens verify
//! against (public), integrity alerts (list, acknowledge, stream as server-sent events),
//! a node's attestation history, and node reboot/tamper for demos and tests (admin).

use crate::api::Shared;
use crate::error::ApiError;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;

/// Routes that need the admin token.
pub fn admin_router() -> Router<Shared> {
    Router::new()
        .route("/admin/alerts", get(list_alerts))
        .route("/admin/alerts/stream", get(stream_alerts))
        .route("/admin/alerts/{id}/ack", post(ack_alert))
        .route("/admin/nodes/{name}/attestations", get(history))
        .route("/admin/nodes/{name}/reboot", post(reboot))
        .route("/admin/nodes/{name}/tamper", post(tamper))
}

/// Public routes: relying parties fetch the token keys without credentials.
pub fn public_router() -> Router<Shared> {
    Router::new().route("/attestation/jwks", get(jwks))
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

fn no_verifier() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "AttestationNotConfigured",
        "this server runs without a verifier (start it with the embedded backend)",
    )
}

async fn jwks(State(s): State<Shared>) -> Response {
    match &s.verifier {
        Some(v) => Json(v.jwks()).into_response(),
        None => no_verifier(),
    }
}

#[derive(Debug, Deserialize)]
struct AlertQuery {
    node: Option<String>,
}

async fn list_alerts(State(s): State<Shared>, Query(q): Query<AlertQuery>) -> Response {
    match &s.verifier {
        Some(v) => Json(json!({"value": v.alerts(q.node.as_deref())})).into_response(),
        None => no_verifier(),
    }
}

async fn ack_alert(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let Some(v) = &s.verifier else {
        return no_verifier();
    };
    let Ok(id) = id.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidAlertId",
            format!("alert id {id:?} is not a number"),
        );
    };
    match v.acknowledge(id) {
        // The alert as it now stands (what `alerts list` shows for it).
        Ok(true) => match v.alerts(None).into_iter().find(|a| a.id == id) {
            Some(alert) => Json(alert).into_response(),
            None => Json(json!({"id": id, "acknowledged": true})).into_response(),
        },
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            "AlertNotFound",
            format!("no alert {id}"),
        ),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "StoreUnavailable",
            e.to_string(),
        ),
    }
}

/// Alerts as server-sent events: those raised after the stream opened, one `alert` event
/// each (JSON), polled every 500 ms.
async fn stream_alerts(State(s): State<Shared>) -> Response {
    let Some(v) = s.verifier.clone() else {
        return no_verifier();
    };
    let mut seen = v.alerts(None).iter().map(|a| a.id).max().unwrap_or(0);
    let stream = async_stream(move || {
        let fresh: Vec<_> = v.alerts(None).into_iter().filter(|a| a.id > seen).collect();
        if let Some(max) = fresh.iter().map(|a| a.id).max() {
            seen = max;
        }
        fresh
            .into_iter()
            .map(|a| {
                Event::default()
                    .event("alert")
                    .json_data(&a)
                    .unwrap_or_default()
            })
            .collect()
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A stream of events produced by polling `next` every 500 ms.
fn async_stream(
    mut next: impl FnMut() -> Vec<Event> + Send + 'static,
) -> impl futures_core::Stream<Item = Result<Event, Infallible>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        loop {
            for e in next() {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    ReceiverStream(rx)
}

/// An mpsc receiver as a stream of `Ok` events.
struct ReceiverStream(tokio::sync::mpsc::Receiver<Event>);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Event, Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|e| e.map(Ok))
    }
}

/// The newest verdicts of a node (up to `verifier::HISTORY`, oldest first) and how many the
/// store holds in all.
async fn history(State(s): State<Shared>, Path(name): Path<String>) -> Response {
    let Some(v) = &s.verifier else {
        return no_verifier();
    };
    match s.store.attestations().count(Some(&name)).await {
        Ok((total, healthy)) => Json(json!({
            "node": name,
            "value": v.history(&name),
            "stored": {"total": total, "healthy": healthy},
        }))
        .into_response(),
        Err(e) => ApiError::Store(e).into_response(),
    }
}

async fn reboot(State(s): State<Shared>, Path(name): Path<String>) -> Response {
    match s.engine.reboot(&name).await {
        Ok(Some(node)) => Json(node).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "NodeNotFound",
            format!("no node {name}"),
        ),
        Err((code, message)) => error(StatusCode::INTERNAL_SERVER_ERROR, &code, message),
    }
}

#[derive(Debug, Deserialize)]
struct TamperBody {
    component: String,
}

async fn tamper(
    State(s): State<Shared>,
    Path(name): Path<String>,
    body: Result<Json<TamperBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return ApiError::BadBody("expected {\"component\": \"kernel|grub|shim|module\"}".into())
            .into_response();
    };
    match s.store.nodes().get(&name).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "NodeNotFound",
                format!("no node {name}"),
            )
        }
        Err(e) => return ApiError::Store(e).into_response(),
    }
    match s.engine.tamper(&name, &body.component).await {
        Ok(changed) => Json(json!({"node": name, "component": body.component, "changed": changed}))
            .into_response(),
        Err((code, message)) => error(StatusCode::BAD_REQUEST, &code, message),
    }
}
