//! The registrar and the verifier as a service: enrollment of a node's TPM (EK certificate
//! from a trusted vTPM CA, AK attributes, credential activation), one fresh nonce per
//! attestation, appraisal of the evidence against the node pool's reference policy, and the
//! outcome — a signed health token (ES256 JWT) or an integrity alert naming the failing
//! components — with a history per node and alerts to list, acknowledge and stream.
//!
//! Decisions are made from memory behind one lock. A persistent verifier is given a
//! [`Journal`]: every enrollment, policy, verdict, acknowledgement and deletion is written to
//! it *before* memory changes and before the caller sees the outcome, so a verdict a node was
//! told is never lost; [`Verifier::restore`] loads a [`Snapshot`] back at start-up. No I/O
//! here: the server implements the journal on its store, publishes the JWKS and streams
//! alerts.

#![forbid(unsafe_code)]

use attest::appraisal::{appraise, Appraisal, Evidence, Failure};
use attest::enroll::{self, CredentialChallenge, TrustedRoots};
use attest::policy::ReferencePolicy;
use attest::token::TokenSigner;
use attest::{AkPublic, PcrValues};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use tpm::codec::{Marshal, Unmarshal};
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
    #[error("no consistent evidence from node {0} since the verifier started: relearn after its next attestation")]
    NoEvidence(String),
    #[error("node {node} is in pool {actual}, not {pool}")]
    WrongPool {
        node: String,
        pool: String,
        actual: String,
    },
    /// The journal could not record the change; nothing changed (the caller retries).
    #[error("the verifier's store is unavailable: {0}")]
    Storage(String),
}

impl VerifierError {
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Enrollment(_) => 403,
            Self::NotEnrolled(_) | Self::NoChallenge(_) | Self::NoEvidence(_) => 409,
            Self::WrongPool { .. } => 400,
            Self::NoPolicy(_) => 404,
            Self::Storage(_) => 503,
        }
    }
}

/// An enrolled node: its EK and its AK, bound by credential activation. Serialised with both
/// public areas (TPMT_PUBLIC, hex), which is how it is persisted and restored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "EnrollmentDocument")]
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
    /// The EK's TPMT_PUBLIC, hex.
    pub ek_public: String,
    /// The AK's TPMT_PUBLIC, hex.
    pub ak_public: String,
}

/// An [`Enrollment`] as stored: the public areas are parsed (and the AK's attributes checked
/// again) when it is read back.
#[derive(Deserialize)]
struct EnrollmentDocument {
    node: String,
    pool: String,
    ek_certificate_serial: String,
    ek_certificate_issuer: String,
    enrolled_at: u64,
    ek_public: String,
    ak_public: String,
}

impl TryFrom<EnrollmentDocument> for Enrollment {
    type Error = String;
    fn try_from(d: EnrollmentDocument) -> Result<Self, String> {
        let public = |what: &str, h: &str| {
            let bytes = hex::decode(h).map_err(|e| format!("{what}: {e}"))?;
            TpmtPublic::from_bytes(&bytes).map_err(|rc| format!("{what}: TPM_RC {:#x}", rc.0))
        };
        let ek = public("ek_public", &d.ek_public)?;
        let ak_tpmt = public("ak_public", &d.ak_public)?;
        let ak_name = hex::encode(ak_tpmt.name());
        let ak = AkPublic::from_tpmt_public(ak_tpmt).map_err(|e| e.to_string())?;
        enroll::check_ak_attributes(&ak).map_err(|e| e.to_string())?;
        Ok(Enrollment {
            node: d.node,
            pool: d.pool,
            ek_certificate_serial: d.ek_certificate_serial,
            ek_certificate_issuer: d.ek_certificate_issuer,
            ak_name,
            ak,
            ek,
            enrolled_at: d.enrolled_at,
            ek_public: d.ek_public,
            ak_public: d.ak_public,
        })
    }
}

/// The severity of an integrity alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The node booted something it must not (components, Secure Boot, policy).
    Critical,
    /// The evidence itself is untrustworthy (signature, nonce, log consistency).
    High,
}

/// An integrity alert: a node failed attestation.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

    /// What the management plane records on the node for this alert (its attestation's
    /// `alert`): id, severity, the failing components, the failures and a one-line summary.
    pub fn node_record(&self) -> Value {
        json!({
            "alertId": self.id,
            "severity": self.severity,
            "failedComponents": self.components(),
            "failures": self.failures,
            "summary": self.summary(),
        })
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttestationRecord {
    /// Unique per verdict (random, hex): what makes a journal write idempotent.
    pub id: String,
    pub node: String,
    pub time: u64,
    pub healthy: bool,
    pub reset_count: Option<u32>,
    pub restart_count: Option<u32>,
    pub alert_id: Option<u64>,
}

/// A change a persistent verifier records before making it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JournalEntry {
    Enrolled(Box<Enrollment>),
    Policy {
        pool: String,
        policy: ReferencePolicy,
    },
    /// A verdict, with the alert it raised.
    Attested {
        record: AttestationRecord,
        alert: Option<IntegrityAlert>,
    },
    Acknowledged {
        id: u64,
    },
    /// A deleted node's enrollment is dropped (its history and alerts stay).
    Forgotten {
        node: String,
    },
}

/// Where a persistent verifier writes its changes. `write` returns only once the entry is
/// durable; an error leaves the verifier unchanged and is reported to the caller as
/// [`VerifierError::Storage`]. Writing the same entry twice must be harmless.
pub trait Journal: Send + Sync {
    fn write(&self, entry: &JournalEntry) -> Result<(), String>;
}

/// What a verifier restores at start-up from its journal's store.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub enrollments: Vec<Enrollment>,
    pub policies: Vec<(String, ReferencePolicy)>,
    /// Attestation records, oldest first (the newest [`HISTORY`] per node are kept).
    pub history: Vec<AttestationRecord>,
    pub alerts: Vec<IntegrityAlert>,
}

/// Quoted PCR values: bank → PCR → lowercase hex.
type PcrMap = BTreeMap<String, BTreeMap<u32, String>>;

/// Nonces a node may hold at once (a retried request must not invalidate the first).
pub const OUTSTANDING_NONCES: usize = 4;

#[derive(Default)]
struct State {
    enrollments: BTreeMap<String, Enrollment>,
    /// node → (challenge, EK, AK, pool, EK certificate facts, expiry).
    pending: BTreeMap<String, (CredentialChallenge, Enrollment, u64)>,
    /// node → the nonces issued and not yet used, with their expiry, oldest first.
    nonces: BTreeMap<String, VecDeque<(Vec<u8>, u64)>>,
    policies: BTreeMap<String, ReferencePolicy>,
    /// node → what its latest consistent evidence (valid quote, log replaying to it) showed,
    /// whatever the policy said: what a relearn learns from.
    last_boot: BTreeMap<String, (attest::appraisal::BootClaims, PcrMap, u64)>,
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
    journal: std::sync::OnceLock<Box<dyn Journal>>,
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
            journal: std::sync::OnceLock::new(),
        }
    }

    /// From now on, write every change to `journal` first (once; false if one is attached).
    pub fn attach_journal(&self, journal: Box<dyn Journal>) -> bool {
        self.journal.set(journal).is_ok()
    }

    /// Load what a journal recorded (call before serving; replaces the current state).
    pub fn restore(&self, snapshot: Snapshot) {
        let mut st = self.state();
        st.enrollments = snapshot
            .enrollments
            .into_iter()
            .map(|e| (e.node.clone(), e))
            .collect();
        st.policies = snapshot.policies.into_iter().collect();
        st.history.clear();
        for r in snapshot.history {
            let h = st.history.entry(r.node.clone()).or_default();
            h.push_back(r);
            while h.len() > HISTORY {
                h.pop_front();
            }
        }
        st.next_alert = snapshot.alerts.iter().map(|a| a.id).max().unwrap_or(0) + 1;
        st.alerts = snapshot.alerts;
    }

    fn journal(&self, entry: JournalEntry) -> Result<(), VerifierError> {
        match self.journal.get() {
            Some(j) => j.write(&entry).map_err(VerifierError::Storage),
            None => Ok(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The JWKS relying parties verify tokens with.
    pub fn jwks(&self) -> Value {
        self.signer.jwks()
    }

    /// Set the reference policy of a pool (`RG/CLUSTER/POOL`); setting the same policy again
    /// changes nothing.
    pub fn set_policy(&self, pool: &str, policy: ReferencePolicy) -> Result<(), VerifierError> {
        if self.state().policies.get(pool) == Some(&policy) {
            return Ok(());
        }
        self.journal(JournalEntry::Policy {
            pool: pool.to_string(),
            policy: policy.clone(),
        })?;
        self.state().policies.insert(pool.to_string(), policy);
        Ok(())
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
        // A refused enrollment is an integrity event: the node presented a TPM this verifier
        // does not trust. It raises an alert (component "TPM") before the refusal is returned.
        let refuse = |component: &str, reason: String| -> VerifierError {
            let failure = Failure {
                reason: format!("enrollment refused: {reason}"),
                component: Some(component.to_string()),
                pcr: None,
                expected: None,
                observed: None,
                event: None,
            };
            match self.raise(node, pool, vec![failure], Severity::High, now) {
                Ok(()) => VerifierError::Enrollment(reason),
                Err(e) => e,
            }
        };
        let cert = enroll::verify_ek_certificate(ek_certificate, &[], &self.roots)
            .map_err(|e| refuse("EK certificate", e.to_string()))?;
        cert.check_certifies(ek)
            .map_err(|e| refuse("EK certificate", e.to_string()))?;
        // (An untrusted TPM is reported as such first.) Re-enrollment after a reimage (a new
        // AK) keeps the node's TPM: another EK claiming an enrolled node is refused until the
        // node is deleted.
        let other_tpm = self.state().enrollments.get(node).and_then(|existing| {
            (existing.ek != *ek).then(|| existing.ek_certificate_serial.clone())
        });
        if let Some(serial) = other_tpm {
            return Err(refuse(
                "TPM",
                format!("node {node} is enrolled with another TPM (EK certificate {serial}); delete the node to enroll a new one"),
            ));
        }
        let ak_public = AkPublic::from_tpmt_public(ak.clone())
            .map_err(|e| refuse("attestation key", e.to_string()))?;
        enroll::check_ak_attributes(&ak_public)
            .map_err(|e| refuse("attestation key", e.to_string()))?;
        let refuse = |e: attest::Error| VerifierError::Enrollment(e.to_string());
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
            ek_public: hex::encode(ek.to_bytes()),
            ak_public: hex::encode(ak.to_bytes()),
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
        let (challenge, enrollment, expiry) = self
            .state()
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
        self.journal(JournalEntry::Enrolled(Box::new(enrollment.clone())))?;
        self.state()
            .enrollments
            .insert(node.to_string(), enrollment.clone());
        Ok(enrollment)
    }

    pub fn enrollment(&self, node: &str) -> Option<Enrollment> {
        self.state().enrollments.get(node).cloned()
    }

    /// A fresh nonce for the node's next quote (each used once; the newest
    /// [`OUTSTANDING_NONCES`] stay valid).
    pub fn nonce(&self, node: &str, now: u64) -> Vec<u8> {
        let n = random(32);
        let mut st = self.state();
        let q = st.nonces.entry(node.to_string()).or_default();
        q.retain(|(_, expiry)| now <= *expiry);
        q.push_back((n.clone(), now + CHALLENGE_TTL));
        while q.len() > OUTSTANDING_NONCES {
            q.pop_front();
        }
        n
    }

    /// Appraise a node's evidence. The quote must carry a nonce issued to the node, unused
    /// and unexpired (it is consumed by this call whatever the verdict).
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
        let quoted = attest::quoted_nonce(quote);
        let quoted = quoted.as_deref();
        let expected = {
            let mut st = self.state();
            let q = st.nonces.entry(node.to_string()).or_default();
            let live = q
                .iter()
                .position(|(n, expiry)| Some(n.as_slice()) == quoted && now <= *expiry);
            match live.and_then(|i| q.remove(i)) {
                Some((n, _)) => n,
                // No live nonce: whatever was quoted is a replay (the newest nonce issued,
                // or none, is what the quote is compared with, and it does not match).
                None => q.back().map(|(n, _)| n.clone()).unwrap_or_default(),
            }
        };
        let evidence = Evidence {
            quote,
            signature,
            pcrs,
            event_log: Some(event_log),
        };
        let appraisal = appraise(&enrollment.ak, &expected, &evidence, policy.as_ref());
        self.record(&enrollment, appraisal, now)
    }

    fn record(
        &self,
        enrollment: &Enrollment,
        appraisal: Appraisal,
        now: u64,
    ) -> Result<Outcome, VerifierError> {
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
            id: hex::encode(random(16)),
            node: enrollment.node.clone(),
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
                Outcome::Unhealthy { alert }
            }
        };
        drop(st);
        // Durable before anyone is told (an alert id lost to a failed write stays unused).
        let alert = match &outcome {
            Outcome::Unhealthy { alert } => Some(alert.clone()),
            Outcome::Healthy { .. } => None,
        };
        self.journal(JournalEntry::Attested {
            record: record.clone(),
            alert: alert.clone(),
        })?;
        let consistent = !appraisal
            .failures
            .iter()
            .any(|f| matches!(f.component.as_deref(), Some("quote" | "event log")));
        let mut st = self.state();
        if let (true, Some(boot)) = (consistent, appraisal.boot) {
            st.last_boot
                .insert(enrollment.node.clone(), (boot, appraisal.pcrs, now));
        }
        st.alerts.extend(alert);
        let h = st.history.entry(enrollment.node.clone()).or_default();
        h.push_back(record);
        while h.len() > HISTORY {
            h.pop_front();
        }
        Ok(outcome)
    }

    /// Record an alert outside an appraisal (a refused enrollment), with its history entry.
    fn raise(
        &self,
        node: &str,
        pool: &str,
        failures: Vec<Failure>,
        severity: Severity,
        now: u64,
    ) -> Result<(), VerifierError> {
        let id = {
            let mut st = self.state();
            st.next_alert += 1;
            st.next_alert - 1
        };
        let alert = IntegrityAlert {
            id,
            severity,
            node: node.to_string(),
            pool: pool.to_string(),
            time: now,
            failures,
            acknowledged: false,
        };
        let record = AttestationRecord {
            id: hex::encode(random(16)),
            node: node.to_string(),
            time: now,
            healthy: false,
            reset_count: None,
            restart_count: None,
            alert_id: Some(id),
        };
        self.journal(JournalEntry::Attested {
            record: record.clone(),
            alert: Some(alert.clone()),
        })?;
        let mut st = self.state();
        st.alerts.push(alert);
        let h = st.history.entry(node.to_string()).or_default();
        h.push_back(record);
        while h.len() > HISTORY {
            h.pop_front();
        }
        Ok(())
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
    pub fn acknowledge(&self, id: u64) -> Result<bool, VerifierError> {
        if !self.state().alerts.iter().any(|a| a.id == id) {
            return Ok(false);
        }
        self.journal(JournalEntry::Acknowledged { id })?;
        if let Some(a) = self.state().alerts.iter_mut().find(|a| a.id == id) {
            a.acknowledged = true;
        }
        Ok(true)
    }

    /// A node's attestation history, oldest first.
    pub fn history(&self, node: &str) -> Vec<AttestationRecord> {
        self.state()
            .history
            .get(node)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forget a deleted node (its enrollment, nonces and pending challenge; history and
    /// alerts stay).
    pub fn forget(&self, node: &str) -> Result<(), VerifierError> {
        if self.state().enrollments.contains_key(node) {
            self.journal(JournalEntry::Forgotten {
                node: node.to_string(),
            })?;
        }
        let mut st = self.state();
        st.enrollments.remove(node);
        st.pending.remove(node);
        st.nonces.remove(node);
        Ok(())
    }

    /// Relearn `pool`'s policy from `node`'s latest consistent boot (like GCP's
    /// `--shielded-learn-integrity-policy`): its Secure Boot state, components, command line
    /// and the values of [`attest::policy::LEARNED_PCRS`]. The node must be in that pool.
    pub fn relearn(&self, pool: &str, node: &str) -> Result<ReferencePolicy, VerifierError> {
        let e = self
            .enrollment(node)
            .ok_or_else(|| VerifierError::NotEnrolled(node.to_string()))?;
        if e.pool != pool {
            return Err(VerifierError::WrongPool {
                node: node.to_string(),
                pool: pool.to_string(),
                actual: e.pool,
            });
        }
        let (claims, pcrs, time) = self
            .state()
            .last_boot
            .get(node)
            .cloned()
            .ok_or_else(|| VerifierError::NoEvidence(node.to_string()))?;
        let values: Vec<(String, u32, String)> = attest::policy::LEARNED_PCRS
            .iter()
            .filter_map(|n| {
                pcrs.get("sha256")
                    .and_then(|b| b.get(n))
                    .map(|v| ("sha256".to_string(), *n, v.clone()))
            })
            .collect();
        let mut policy = ReferencePolicy::from_claims(&claims, &values);
        policy.description = Some(format!(
            "learned from node {node}'s boot attested at {time} (unix time)"
        ));
        self.set_policy(pool, policy.clone())?;
        Ok(policy)
    }

    /// Every enrolled node's enrollment.
    pub fn enrollments(&self) -> Vec<Enrollment> {
        self.state().enrollments.values().cloned().collect()
    }
}
