//! The registrar and the verifier as a service: enrollment of a node's TPM (EK certificate
//! from a trusted vTPM CA, AK attributes, credential activation), one fresh nonce per
//! attestation, appraisal of the evidence against the node pool's reference policy, and the
//! outcome — a signed health token (ES256 JWT) or an integrity alert naming the failing
//! components — with a history per node and alerts to list, acknowledge and stream.
//!
//! State is in memory behind one lock and every record is serialisable, so the server can
//! persist it; no network I/O here (the server publishes the JWKS and streams alerts).

#![forbid(unsafe_code)]

use attest::appraisal::{appraise, Appraisal, Evidence, Failure};
use attest::enroll::{self, CredentialChallenge, TrustedRoots};
use attest::policy::ReferencePolicy;
use attest::token::TokenSigner;
use attest::{AkPublic, PcrValues};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use tpm::object::TpmtPublic;

/// How long a nonce or an enrollment challenge stays valid, in seconds.
pub const CHALLENGE_TTL: u64 = 300;
/// How long a health token is valid, in seconds.
pub const TOKEN_TTL: u64 = 3600;
/// Attestation records kept per node.
pub const HISTORY: usize = 64;

/// Why a request to the registrar or verifier was refused (each maps to one HTTP status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifierError {
    #[error("enrollment refused: {0}")]
    Enrollment(String),
    #[error("node {0} is not enrolled")]
    NotEnrolled(String),
    #[error("no pending challenge for node {0} (expired or never issued)")]
    NoChallenge(String),
    #[error("no reference policy for pool {0}")]
    NoPolicy(String),
}

impl VerifierError {
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Enrollment(_) => 403,
            Self::NotEnrolled(_) | Self::NoChallenge(_) => 409,
            Self::NoPolicy(_) => 404,
        }
    }
}

/// An enrolled node: its EK and its AK, bound by credential activation.
#[derive(Debug, Clone, Serialize)]
pub struct Enrollment {
    pub node: String,
    pub pool: String,
    pub ek_certificate_serial: String,
    pub ek_certificate_issuer: String,
    /// The AK's Name (hex): what quotes are checked against.
    pub ak_name: String,
    #[serde(skip)]
    ak: AkPublic,
    #[serde(skip)]
    ek: TpmtPublic,
    pub enrolled_at: u64,
}

/// The severity of an integrity alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The node booted something it must not (components, Secure Boot, policy).
    Critical,
    /// The evidence itself is untrustworthy (signature, nonce, log consistency).
    High,
}

/// An integrity alert: a node failed attestation.
#[derive(Debug, Clone, Serialize)]
pub struct IntegrityAlert {
    pub id: u64,
    pub severity: Severity,
    pub node: String,
    pub pool: String,
    pub time: u64,
    pub failures: Vec<Failure>,
    pub acknowledged: bool,
}

impl IntegrityAlert {
    /// The failing components' names, in order, without repeats.
    pub fn components(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in &self.failures {
            let c = f.component.clone().unwrap_or_else(|| "evidence".into());
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// One line for logs and node conditions.
    pub fn summary(&self) -> String {
        self.failures
            .iter()
            .map(|f| match &f.component {
                Some(c) => format!("{c}: {}", f.reason),
                None => f.reason.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One attestation's outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status")]
pub enum Outcome {
    Healthy { token: String },
    Unhealthy { alert: IntegrityAlert },
}

/// One entry of a node's attestation history.
#[derive(Debug, Clone, Serialize)]
pub struct AttestationRecord {
    pub time: u64,
    pub healthy: bool,
    pub reset_count: Option<u32>,
    pub restart_count: Option<u32>,
    pub alert_id: Option<u64>,
}

#[derive(Default)]
struct State {
    enrollments: BTreeMap<String, Enrollment>,
    /// node → (challenge, EK, AK, pool, EK certificate facts, expiry).
    pending: BTreeMap<String, (CredentialChallenge, Enrollment, u64)>,
    /// node → (nonce, expiry).
    nonces: BTreeMap<String, (Vec<u8>, u64)>,
    policies: BTreeMap<String, ReferencePolicy>,
    history: BTreeMap<String, VecDeque<AttestationRecord>>,
    alerts: Vec<IntegrityAlert>,
    next_alert: u64,
}

/// The registrar and verifier.
pub struct Verifier {
    roots: TrustedRoots,
    signer: TokenSigner,
    issuer: String,
    state: Mutex<State>,
}

fn random(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    // getrandom fails only without a kernel RNG; a zero nonce is then still unique per use
    // because the verifier refuses reuse.
    let _ = getrandom::getrandom(&mut b);
    b
}

impl Verifier {
    /// A verifier trusting `roots` for EK certificates, signing tokens with `signer`.
    pub fn new(roots: TrustedRoots, signer: TokenSigner, issuer: impl Into<String>) -> Self {
        Verifier {
            roots,
            signer,
            issuer: issuer.into(),
            state: Mutex::new(State {
                next_alert: 1,
                ..Default::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The JWKS relying parties verify tokens with.
    pub fn jwks(&self) -> Value {
        self.signer.jwks()
    }

    /// Set the reference policy of a pool (`RG/CLUSTER/POOL`).
    pub fn set_policy(&self, pool: &str, policy: ReferencePolicy) {
        self.state().policies.insert(pool.to_string(), policy);
    }

    pub fn policy(&self, pool: &str) -> Option<ReferencePolicy> {
        self.state().policies.get(pool).cloned()
    }

    /// Enrollment, step 1: check the EK certificate and the AK; return the credential to
    /// activate (TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET contents).
    pub fn begin_enrollment(
        &self,
        node: &str,
        pool: &str,
        ek_certificate: &[u8],
        ek: &TpmtPublic,
        ak: &TpmtPublic,
        now: u64,
    ) -> Result<(Vec<u8>, Vec<u8>), VerifierError> {
        let refuse = |e: attest::Error| VerifierError::Enrollment(e.to_string());
        // Re-enrollment (after a reimage: a new AK) keeps the node's TPM: another EK claiming
        // an enrolled node is refused until the node is deleted.
        if let Some(existing) = self.state().enrollments.get(node) {
            if existing.ek != *ek {
                return Err(VerifierError::Enrollment(format!(
                    "node {node} is enrolled with another TPM (EK certificate {}); delete the node to enroll a new one",
                    existing.ek_certificate_serial
                )));
            }
        }
        let cert =
            enroll::verify_ek_certificate(ek_certificate, &[], &self.roots).map_err(refuse)?;
        cert.check_certifies(ek).map_err(refuse)?;
        let ak_public = AkPublic::from_tpmt_public(ak.clone()).map_err(refuse)?;
        enroll::check_ak_attributes(&ak_public).map_err(refuse)?;
        let mut rng = |b: &mut [u8]| b.copy_from_slice(&random(b.len()));
        let challenge = enroll::make_challenge(ek, &ak.name(), &mut rng).map_err(refuse)?;
        let out = (
            challenge.id_object.clone(),
            challenge.encrypted_secret.clone(),
        );
        let enrollment = Enrollment {
            node: node.to_string(),
            pool: pool.to_string(),
            ek_certificate_serial: cert.serial.clone(),
            ek_certificate_issuer: cert.issuer.clone(),
            ak_name: hex::encode(ak.name()),
            ak: ak_public,
            ek: ek.clone(),
            enrolled_at: now,
        };
        self.state().pending.insert(
            node.to_string(),
            (challenge, enrollment, now + CHALLENGE_TTL),
        );
        Ok(out)
    }

    /// Enrollment, step 2: the TPM's answer. A node re-enrolls (a reimage, a new AK) by
    /// running both steps again; its previous enrollment is replaced only on success.
    pub fn finish_enrollment(
        &self,
        node: &str,
        answer: &[u8],
        now: u64,
    ) -> Result<Enrollment, VerifierError> {
        let mut st = self.state();
        let (challenge, enrollment, expiry) = st
            .pending
            .remove(node)
            .ok_or_else(|| VerifierError::NoChallenge(node.to_string()))?;
        if now > expiry {
            return Err(VerifierError::NoChallenge(node.to_string()));
        }
        if !enroll::check_activation(&challenge, answer) {
            return Err(VerifierError::Enrollment(
                "the TPM did not return the credential: the AK is not in the TPM of this EK".into(),
            ));
        }
        st.enrollments.insert(node.to_string(), enrollment.clone());
        Ok(enrollment)
    }

    pub fn enrollment(&self, node: &str) -> Option<Enrollment> {
        self.state().enrollments.get(node).cloned()
    }

    /// A fresh nonce for the node's next quote (each used once).
    pub fn nonce(&self, node: &str, now: u64) -> Vec<u8> {
        let n = random(32);
        self.state()
            .nonces
            .insert(node.to_string(), (n.clone(), now + CHALLENGE_TTL));
        n
    }

    /// Appraise a node's evidence. The nonce must be the one last issued to the node and
    /// unexpired (it is consumed either way); `quoted_nonce` is what the node says it used.
    pub fn attest(
        &self,
        node: &str,
        quote: &[u8],
        signature: &[u8],
        pcrs: &PcrValues,
        event_log: &[u8],
        now: u64,
    ) -> Result<Outcome, VerifierError> {
        let enrollment = self
            .enrollment(node)
            .ok_or_else(|| VerifierError::NotEnrolled(node.to_string()))?;
        let policy = self.policy(&enrollment.pool);
        let expected = {
            let mut st = self.state();
            match st.nonces.remove(node) {
                Some((n, expiry)) if now <= expiry => n,
                // No live nonce: whatever was quoted is a replay (an empty expected nonce
                // never matches a quote's extraData of a real nonce).
                _ => Vec::new(),
            }
        };
        let evidence = Evidence {
            quote,
            signature,
            pcrs,
            event_log: Some(event_log),
        };
        let appraisal = appraise(&enrollment.ak, &expected, &evidence, policy.as_ref());
        Ok(self.record(&enrollment, appraisal, now))
    }

    fn record(&self, enrollment: &Enrollment, appraisal: Appraisal, now: u64) -> Outcome {
        let previous = self
            .state()
            .history
            .get(&enrollment.node)
            .and_then(|h| h.back())
            .and_then(|r| r.reset_count);
        // Signing happens outside the lock: attestations of other nodes go on meanwhile.
        let token = appraisal
            .valid
            .then(|| self.token(enrollment, &appraisal, previous, now));
        let mut st = self.state();
        let mut record = AttestationRecord {
            time: now,
            healthy: appraisal.valid,
            reset_count: appraisal.reset_count,
            restart_count: appraisal.restart_count,
            alert_id: None,
        };
        let outcome = match token {
            Some(token) => Outcome::Healthy { token },
            None => {
                let evidence_fault = appraisal
                    .failures
                    .iter()
                    .any(|f| matches!(f.component.as_deref(), Some("quote" | "event log")));
                let alert = IntegrityAlert {
                    id: st.next_alert,
                    severity: if evidence_fault {
                        Severity::High
                    } else {
                        Severity::Critical
                    },
                    node: enrollment.node.clone(),
                    pool: enrollment.pool.clone(),
                    time: now,
                    failures: appraisal.failures.clone(),
                    acknowledged: false,
                };
                st.next_alert += 1;
                record.alert_id = Some(alert.id);
                st.alerts.push(alert.clone());
                Outcome::Unhealthy { alert }
            }
        };
        let h = st.history.entry(enrollment.node.clone()).or_default();
        h.push_back(record);
        while h.len() > HISTORY {
            h.pop_front();
        }
        outcome
    }

    /// The health token: claims modelled on Azure Attestation's TPM claims.
    fn token(
        &self,
        e: &Enrollment,
        a: &Appraisal,
        previous_reset: Option<u32>,
        now: u64,
    ) -> String {
        let boot = a.boot.as_ref();
        let components: Vec<Value> = boot
            .map(|b| {
                b.components
                    .iter()
                    .map(|c| json!({"name": c.component, "pcr": c.pcr, "sha256": c.sha256}))
                    .collect()
            })
            .unwrap_or_default();
        let claims = json!({
            "iss": self.issuer,
            "sub": e.node,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_TTL,
            "jti": hex::encode(random(16)),
            "x-ms-attestation-type": "tpm",
            "x-ms-ver": "1.0",
            "secureboot": boot.map(|b| b.secure_boot).unwrap_or(false),
            "x-ms-tpm-pcrs": a.pcrs,
            "x-ms-boot-components": components,
            "tpm": {"present": true, "ek-certificate-serial": e.ek_certificate_serial, "ak-name": e.ak_name},
            "node": e.node,
            "pool": e.pool,
            "boot-counter": a.reset_count,
            "rebooted": previous_reset.zip(a.reset_count).map(|(p, c)| c != p),
        });
        let map: Map<String, Value> = claims.as_object().cloned().unwrap_or_default();
        self.signer.sign(&map)
    }

    /// Alerts, newest last, optionally for one node.
    pub fn alerts(&self, node: Option<&str>) -> Vec<IntegrityAlert> {
        self.state()
            .alerts
            .iter()
            .filter(|a| node.is_none_or(|n| a.node == n))
            .cloned()
            .collect()
    }

    /// Acknowledge an alert; false if there is none with that id.
    pub fn acknowledge(&self, id: u64) -> bool {
        match self.state().alerts.iter_mut().find(|a| a.id == id) {
            Some(a) => {
                a.acknowledged = true;
                true
            }
            None => false,
        }
    }

    /// A node's attestation history, oldest first.
    pub fn history(&self, node: &str) -> Vec<AttestationRecord> {
        self.state()
            .history
            .get(node)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forget a deleted node (its enrollment, nonce and pending challenge; alerts stay).
    pub fn forget(&self, node: &str) {
        let mut st = self.state();
        st.enrollments.remove(node);
        st.pending.remove(node);
        st.nonces.remove(node);
    }
}
