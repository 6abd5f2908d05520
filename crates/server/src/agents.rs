//! The node agents' API (push model: agents call in, nothing listens on a node) and the
//! operators' policy routes.
//!
//! Agents are authenticated by their TPM, not by a shared secret: enrollment proves the EK
//! (a certificate from a trusted vTPM CA) and that the AK lives beside it (the credential
//! only that TPM can activate); every later evidence request is signed by that AK — the quote
//! covers a nonce the verifier issued to this node, the PCR values, and (through the replay
//! of the event log against them) the log. A request that is not signed by the node's
//! enrolled AK is appraised as such and raises an alert. Nonce and enrollment requests are
//! rate-limited per client address.
//!
//! ```text
//! POST /attestation/v1/nodes/{node}/enroll    {ekCertificate (base64 DER), ekPublic, akPublic (TPMT_PUBLIC hex)}
//!                                              → {credentialBlob, encryptedSecret} (hex)
//! POST /attestation/v1/nodes/{node}/activate  {secret (hex)} → the enrollment
//! POST /attestation/v1/nodes/{node}/nonce     → {nonce (hex), expiresIn}
//! POST /attestation/v1/nodes/{node}/evidence  {quote, signature (hex), pcrs {bank: {pcr: hex}}, eventLog (base64)}
//!                                              → {status: Healthy, token} | {status: Unhealthy, alert}
//! GET|PUT /admin/attestation/policies/{rg}/{cluster}/{pool}   (admin) a pool's reference policy
//! POST .../{pool}/relearn {node}   (admin) learn it from that node's latest boot
//! POST /admin/nodes/{name}/relearn   (admin) the same for the node's own pool
//! ```

// Helpers return the finished error response for handlers to send as is; its size is
// irrelevant next to a network round trip.
#![allow(clippy::result_large_err)]

use crate::api::Shared;
use crate::error::ApiError;
use attest::policy::ReferencePolicy;
use attest::{HashAlg, PcrValues};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use control::{Attestation, AttestationStatus};
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;
use verifier::{Outcome, Verifier, VerifierError};

/// Largest agent request: evidence carries the whole event log (base64).
pub const AGENT_MAX_BODY: usize = 4 * 1024 * 1024;

/// Agent routes (no bearer token; rate-limited per client address).
pub fn agent_router(state: Shared) -> Router<Shared> {
    Router::new()
        .route("/attestation/v1/nodes/{node}/enroll", post(enroll))
        .route("/attestation/v1/nodes/{node}/activate", post(activate))
        .route("/attestation/v1/nodes/{node}/nonce", post(nonce))
        .route("/attestation/v1/nodes/{node}/evidence", post(evidence))
        .layer(middleware::from_fn_with_state(state, rate_limit))
        .layer(DefaultBodyLimit::max(AGENT_MAX_BODY))
}

/// Operators' routes (behind the admin token).
pub fn admin_router() -> Router<Shared> {
    Router::new()
        .route(
            "/admin/attestation/policies/{rg}/{cluster}/{pool}",
            get(get_policy).put(put_policy),
        )
        .route(
            "/admin/attestation/policies/{rg}/{cluster}/{pool}/relearn",
            post(relearn),
        )
        .route("/admin/nodes/{name}/relearn", post(relearn_node))
}

/// A token bucket per client address: `rate` requests per second, bursts of twice that.
pub struct RateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        Self {
            rate: f64::from(per_second.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// None when the request may go on; otherwise the seconds to wait.
    fn check(&self, ip: IpAddr) -> Option<u64> {
        let now = Instant::now();
        let burst = self.rate * 2.0;
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() > 100_000 {
            // Forget idle clients rather than grow without bound.
            b.retain(|_, (tokens, at)| *tokens < burst && now.duration_since(*at).as_secs() < 60);
        }
        let (tokens, at) = b.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            None
        } else {
            Some(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

async fn rate_limit(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    match s.agent_limiter.check(ip) {
        None => next.run(req).await,
        Some(wait) => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                format!(
                    "more than {} agent requests per second from {ip}; retry in {wait} s",
                    s.agent_limiter.rate
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                r.headers_mut().insert("retry-after", v);
            }
            r
        }
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

fn refused(e: &VerifierError) -> Response {
    let code = match e {
        VerifierError::Enrollment(_) => "EnrollmentRefused",
        VerifierError::NotEnrolled(_) => "NodeNotEnrolled",
        VerifierError::NoChallenge(_) => "NoPendingChallenge",
        VerifierError::NoPolicy(_) => "NoReferencePolicy",
        VerifierError::Storage(_) => "StoreUnavailable",
        VerifierError::NoEvidence(_) => "NoEvidence",
        VerifierError::WrongPool { .. } => "WrongPool",
    };
    error(
        StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        code,
        e.to_string(),
    )
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "InvalidRequestContent", message)
}

/// The body as `T`; a body over the limit is 413, anything unreadable 400 naming the field.
fn body<T: serde::de::DeserializeOwned>(b: Result<Bytes, BytesRejection>) -> Result<T, Response> {
    let bytes = b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(AGENT_MAX_BODY).into_response()
        } else {
            bad(e.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))
}

fn hex_field(name: &str, v: &str) -> Result<Vec<u8>, Response> {
    hex::decode(v).map_err(|e| bad(format!("{name}: not hex ({e})")))
}

fn verifier_of(s: &Shared) -> Result<std::sync::Arc<Verifier>, Response> {
    s.verifier.clone().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "AttestationNotConfigured",
            "this server runs without a verifier",
        )
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The verifier's call on a blocking thread: it waits for the journal's commit.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VerifierError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(refused(&e)),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            e.to_string(),
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnrollBody {
    ek_certificate: String,
    ek_public: String,
    ak_public: String,
}

fn public_area(name: &str, v: &str) -> Result<tpm::object::TpmtPublic, Response> {
    use tpm::codec::Unmarshal;
    let bytes = hex_field(name, v)?;
    tpm::object::TpmtPublic::from_bytes(&bytes)
        .map_err(|rc| bad(format!("{name}: not a TPMT_PUBLIC (TPM_RC {:#x})", rc.0)))
}

async fn enroll(
    State(s): State<Shared>,
    Path(node): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        let v = verifier_of(&s)?;
        let b: EnrollBody = body(b)?;
        let cert = base64::engine::general_purpose::STANDARD
            .decode(b.ek_certificate.trim())
            .map_err(|e| bad(format!("ekCertificate: not base64 ({e})")))?;
        let ek = public_area("ekPublic", &b.ek_public)?;
        let ak = public_area("akPublic", &b.ak_public)?;
        let record = s
            .store
            .nodes()
            .get(&node)
            .await
            .map_err(|e| ApiError::Store(e).into_response())?
            .ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    "NodeNotFound",
                    format!("the management plane has no node {node}"),
                )
            })?;
        let pool = format!(
            "{}/{}/{}",
            record.resource_group, record.cluster_name, record.pool_name
        );
        let (blob, secret) =
            blocking(move || v.begin_enrollment(&node, &pool, &cert, &ek, &ak, now())).await?;
        Ok::<_, Response>(
            Json(json!({"credentialBlob": hex::encode(blob), "encryptedSecret": hex::encode(secret)}))
                .into_response(),
        )
    };
    run.await.unwrap_or_else(|r| r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
    secret: String,
}

async fn activate(
    State(s): State<Shared>,
    Path(node): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        let v = verifier_of(&s)?;
        let b: ActivateBody = body(b)?;
        let secret = hex_field("secret", &b.secret)?;
        let e = blocking(move || v.finish_enrollment(&node, &secret, now())).await?;
        Ok::<_, Response>(Json(e).into_response())
    };
    run.await.unwrap_or_else(|r| r)
}

async fn nonce(State(s): State<Shared>, Path(node): Path<String>) -> Response {
    let v = match verifier_of(&s) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if v.enrollment(&node).is_none() {
        return refused(&VerifierError::NotEnrolled(node));
    }
    Json(json!({"nonce": hex::encode(v.nonce(&node, now())), "expiresIn": verifier::CHALLENGE_TTL}))
        .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EvidenceBody {
    quote: String,
    signature: String,
    pcrs: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    event_log: String,
}

fn pcr_values(pcrs: &BTreeMap<String, BTreeMap<String, String>>) -> Result<PcrValues, Response> {
    let mut out = PcrValues::new();
    for (bank, values) in pcrs {
        let alg = HashAlg::ALL
            .into_iter()
            .find(|a| a.name() == bank)
            .ok_or_else(|| {
                bad(format!(
                    "pcrs: unknown bank {bank:?} (sha1, sha256, sha384, sha512)"
                ))
            })?;
        for (index, value) in values {
            let i: u8 = index
                .parse()
                .ok()
                .filter(|i| *i < 24)
                .ok_or_else(|| bad(format!("pcrs.{bank}: PCR {index:?} is not 0-23")))?;
            let v = hex_field(&format!("pcrs.{bank}.{index}"), value)?;
            out.insert(alg, i, v)
                .map_err(|e| bad(format!("pcrs.{bank}.{index}: {e}")))?;
        }
    }
    Ok(out)
}

async fn evidence(
    State(s): State<Shared>,
    Path(node): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        let v = verifier_of(&s)?;
        let b: EvidenceBody = body(b)?;
        let quote = hex_field("quote", &b.quote)?;
        let signature = hex_field("signature", &b.signature)?;
        let pcrs = pcr_values(&b.pcrs)?;
        let log = base64::engine::general_purpose::STANDARD
            .decode(b.event_log.trim())
            .map_err(|e| bad(format!("eventLog: not base64 ({e})")))?;
        let pool = v
            .enrollment(&node)
            .map(|e| e.pool)
            .ok_or_else(|| refused(&VerifierError::NotEnrolled(node.clone())))?;
        if v.policy(&pool).is_none() {
            return Err(refused(&VerifierError::NoPolicy(pool)));
        }
        let n = node.clone();
        let outcome =
            blocking(move || v.attest(&n, &quote, &signature, &pcrs, &log, now())).await?;
        let attestation = match &outcome {
            Outcome::Healthy { token } => Attestation {
                status: AttestationStatus::Healthy,
                token: Some(token.clone()),
                alert: None,
            },
            Outcome::Unhealthy { alert } => Attestation {
                status: AttestationStatus::Unhealthy,
                token: None,
                alert: Some(alert.node_record()),
            },
        };
        // The verdict is already durable; the node record mirrors it for kubectl and the
        // API (a failure here is reported but the verdict stands).
        if let Err(e) = s.engine.record_attestation(&node, attestation).await {
            eprintln!("node {node}: recording the attestation on the node: {e}");
        }
        Ok::<_, Response>(Json(outcome).into_response())
    };
    run.await.unwrap_or_else(|r| r)
}

fn pool_key(rg: &str, cluster: &str, pool: &str) -> String {
    format!("{rg}/{cluster}/{pool}")
}

async fn get_policy(
    State(s): State<Shared>,
    Path((rg, cluster, pool)): Path<(String, String, String)>,
) -> Response {
    let v = match verifier_of(&s) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let key = pool_key(&rg, &cluster, &pool);
    match v.policy(&key) {
        Some(p) => Json(p).into_response(),
        None => refused(&VerifierError::NoPolicy(key)),
    }
}

async fn put_policy(
    State(s): State<Shared>,
    Path((rg, cluster, pool)): Path<(String, String, String)>,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        let v = verifier_of(&s)?;
        let policy: ReferencePolicy = body(b)?;
        if policy.version != attest::policy::POLICY_VERSION {
            return Err(bad(format!(
                "version {} is not supported (this verifier reads version {})",
                policy.version,
                attest::policy::POLICY_VERSION
            )));
        }
        let key = pool_key(&rg, &cluster, &pool);
        let p = policy.clone();
        blocking(move || v.set_policy(&key, p)).await?;
        Ok::<_, Response>(Json(policy).into_response())
    };
    run.await.unwrap_or_else(|r| r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RelearnBody {
    node: String,
}

async fn relearn(
    State(s): State<Shared>,
    Path((rg, cluster, pool)): Path<(String, String, String)>,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        let v = verifier_of(&s)?;
        let b: RelearnBody = body(b)?;
        let key = pool_key(&rg, &cluster, &pool);
        let policy = blocking(move || v.relearn(&key, &b.node)).await?;
        Ok::<_, Response>(Json(policy).into_response())
    };
    run.await.unwrap_or_else(|r| r)
}

async fn relearn_node(State(s): State<Shared>, Path(node): Path<String>) -> Response {
    let run = async {
        let v = verifier_of(&s)?;
        let pool = v
            .enrollment(&node)
            .map(|e| e.pool)
            .ok_or_else(|| refused(&VerifierError::NotEnrolled(node.clone())))?;
        let p = pool.clone();
        let policy = blocking(move || v.relearn(&p, &node)).await?;
        Ok::<_, Response>(Json(json!({"pool": pool, "policy": policy})).into_response())
    };
    run.await.unwrap_or_else(|r| r)
}
