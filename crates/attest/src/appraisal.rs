//! Appraisal: one node's evidence (a quote, the PCR values it covers, the TCG event log)
//! against the verifier's nonce, the node's attestation key and a reference policy, giving a
//! verdict and, when it fails, every failing component with the PCR, the expected and the
//! observed digests and the event that shows it.
//!
//! The order is the trust order: the quote's signature and nonce first (without them
//! nothing else is evidence), then the log (attack checks, replay against the quoted PCRs),
//! then the policy on what the log says booted. No I/O and no clock.

use crate::policy::ReferencePolicy;
use crate::{verify_quote, AkPublic, Error, HashAlg, PcrValues, VerifiedQuote};
use eventlog::{AlgorithmId, BootComponents, BootRole, EventLog, SecureBootState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One reason the evidence is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What failed, in words an operator reads ("kernel digest not in baseline").
    pub reason: String,
    /// The boot component concerned (`kernel`, `shim`, `secure boot`, ...), if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcr: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    /// Index of the event log entry that shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<usize>,
}

impl Failure {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Failure {
            reason: reason.into(),
            component: None,
            pcr: None,
            expected: None,
            observed: None,
            event: None,
        }
    }

    pub(crate) fn component(mut self, c: impl Into<String>) -> Self {
        self.component = Some(c.into());
        self
    }

    pub(crate) fn pcr(mut self, pcr: u32) -> Self {
        self.pcr = Some(pcr);
        self
    }

    pub(crate) fn values(
        mut self,
        expected: impl Into<String>,
        observed: impl Into<String>,
    ) -> Self {
        self.expected = Some(expected.into());
        self.observed = Some(observed.into());
        self
    }

    pub(crate) fn event(mut self, event: usize) -> Self {
        self.event = Some(event);
        self
    }
}

/// A boot component the log shows, with its SHA-256 measurement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentClaim {
    pub component: String,
    pub pcr: u32,
    pub sha256: String,
    pub event: usize,
    /// The kernel command line or the file name, where the event carries one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// What the log says booted, after its attack checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct BootClaims {
    pub secure_boot: bool,
    pub components: Vec<ComponentClaim>,
    /// SHA-256 of each EFI_SIGNATURE_DATA's data in the measured PK, KEK, db and dbx.
    pub pk: Vec<String>,
    pub kek: Vec<String>,
    pub db: Vec<String>,
    pub dbx: Vec<String>,
}

/// The verdict on one piece of evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Appraisal {
    pub valid: bool,
    pub failures: Vec<Failure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<u32>,
    /// The quoted PCRs: bank → PCR → lowercase hex.
    pub pcrs: BTreeMap<String, BTreeMap<u32, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootClaims>,
}

/// A node's evidence, as bytes.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// TPMS_ATTEST (`tpm2_quote -m`).
    pub quote: &'a [u8],
    /// TPMT_SIGNATURE (`tpm2_quote -s`).
    pub signature: &'a [u8],
    /// The values of the quoted PCRs.
    pub pcrs: &'a PcrValues,
    /// The TCG event log (`/sys/kernel/security/tpm0/binary_bios_measurements`).
    pub event_log: Option<&'a [u8]>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn bank_of(alg: HashAlg) -> AlgorithmId {
    AlgorithmId(alg.id())
}

fn quote_failure(e: &Error) -> Failure {
    match e {
        Error::SignatureInvalid { .. }
        | Error::SignatureKeyMismatch { .. }
        | Error::SchemeMismatch { .. } => {
            Failure::new(format!("quote signature invalid: {e}")).component("quote")
        }
        Error::NonceMismatch { expected, observed } => {
            Failure::new("nonce mismatch: possible replay")
                .component("quote")
                .values(hex(expected), hex(observed))
        }
        Error::PcrDigestMismatch { expected, observed } => {
            Failure::new("the PCR values are not the ones the quote covers")
                .component("quote")
                .values(hex(observed), hex(expected))
        }
        other => Failure::new(format!("quote rejected: {other}")).component("quote"),
    }
}

/// The event a rejection points at.
fn rejected_event(r: &eventlog::Rejection) -> Option<usize> {
    use eventlog::Rejection as R;
    match r {
        R::DigestMismatch { event, .. }
        | R::RetypedEvent { event, .. }
        | R::InvalidSeparator { event, .. }
        | R::ExtraSeparator { event, .. }
        | R::EventAfterSeparator { event, .. }
        | R::DuplicateVariable { event, .. }
        | R::WrongVariableGuid { event, .. }
        | R::BadPayload { event, .. } => Some(*event),
        _ => None,
    }
}

/// What the log claims booted (after its attack checks), or the failure that stops there.
pub fn boot_claims(log: &EventLog) -> Result<BootClaims, Failure> {
    eventlog::validate(log).map_err(|r| {
        let f = Failure::new(format!("event log rejected: {r}")).component("event log");
        match rejected_event(&r) {
            Some(e) => f.event(e),
            None => f,
        }
    })?;
    let state = SecureBootState::from_log(log)
        .map_err(|e| Failure::new(format!("event log: {e}")).component("event log"))?;
    let comps = BootComponents::from_log(log)
        .map_err(|e| Failure::new(format!("event log: {e}")).component("event log"))?;
    let sha256 = |d: &[eventlog::Digest]| {
        eventlog::digest_of(d, AlgorithmId::SHA256)
            .map(hex)
            .unwrap_or_default()
    };
    let mut components = Vec::new();
    for app in &comps.applications {
        let name = match app.role {
            BootRole::Shim => "shim",
            BootRole::Grub => "grub",
            BootRole::Kernel => "kernel",
        };
        let digest = sha256(&app.digests);
        // The kernel is measured twice (grub's verifier and its loader): one claim.
        if components
            .iter()
            .any(|c: &ComponentClaim| c.component == name && c.sha256 == digest)
        {
            continue;
        }
        components.push(ComponentClaim {
            component: name.into(),
            pcr: 4,
            sha256: digest,
            event: app.event,
            text: None,
        });
    }
    for (name, s) in [
        ("initrd", &comps.initrd),
        ("kernel command line", &comps.kernel_cmdline),
    ] {
        if let Some(s) = s {
            components.push(ComponentClaim {
                component: name.into(),
                pcr: s.pcr,
                sha256: sha256(&s.digests),
                event: s.event,
                text: Some(s.text.clone()),
            });
        }
    }
    let entries = |name: &str| -> Vec<String> {
        state
            .variable(name)
            .and_then(|v| secureboot::esl::parse(&v.data).ok())
            .map(|lists| {
                lists
                    .iter()
                    .flat_map(|l| l.signatures.iter())
                    .filter_map(|s| AlgorithmId::SHA256.hash(&s.data).map(|d| hex(&d)))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(BootClaims {
        secure_boot: state.enabled,
        components,
        pk: entries("PK"),
        kek: entries("KEK"),
        db: entries("db"),
        dbx: entries("dbx"),
    })
}

/// Appraise `evidence` from the node whose attestation key is `ak`, for the verifier's
/// `nonce`, against `policy` (None: only the quote and the log's consistency are checked).
pub fn appraise(
    ak: &AkPublic,
    nonce: &[u8],
    evidence: &Evidence<'_>,
    policy: Option<&ReferencePolicy>,
) -> Appraisal {
    let mut failures = Vec::new();
    let mut appraisal = Appraisal {
        valid: false,
        failures: Vec::new(),
        reset_count: None,
        restart_count: None,
        pcrs: BTreeMap::new(),
        boot: None,
    };
    let quote: Option<VerifiedQuote> =
        match verify_quote(ak, evidence.quote, evidence.signature, nonce, evidence.pcrs) {
            Ok(q) => Some(q),
            Err(e) => {
                let f = quote_failure(&e);
                let fatal = !matches!(e, Error::NonceMismatch { .. });
                failures.push(f);
                if fatal {
                    appraisal.failures = failures;
                    return appraisal;
                }
                None
            }
        };
    if let Some(q) = &quote {
        appraisal.reset_count = Some(q.reset_count);
        appraisal.restart_count = Some(q.restart_count);
    }
    for (bank, pcr, value) in evidence.pcrs.iter() {
        appraisal
            .pcrs
            .entry(bank.name().to_string())
            .or_default()
            .insert(u32::from(pcr), hex(value));
    }

    let mut claims = None;
    if let Some(bytes) = evidence.event_log {
        match EventLog::parse(bytes) {
            Err(e) => failures
                .push(Failure::new(format!("event log malformed: {e}")).component("event log")),
            Ok(log) => {
                replay_against_quote(&log, evidence.pcrs, &mut failures);
                match boot_claims(&log) {
                    Ok(c) => claims = Some(c),
                    Err(f) => failures.push(f),
                }
            }
        }
    }
    if let Some(policy) = policy {
        policy.evaluate(evidence.pcrs, claims.as_ref(), &mut failures);
    }
    appraisal.boot = claims;
    appraisal.valid = failures.is_empty();
    appraisal.failures = failures;
    appraisal
}

/// Each quoted PCR of a bank the log records must be what the log replays to (a PCR the log
/// never extends must still hold its reset value).
fn replay_against_quote(log: &EventLog, quoted: &PcrValues, failures: &mut Vec<Failure>) {
    let replayed = match log.replay() {
        Ok(r) => r,
        Err(e) => {
            failures.push(
                Failure::new(format!("event log does not replay: {e}")).component("event log"),
            );
            return;
        }
    };
    let banks = log.banks();
    for (bank, pcr, value) in quoted.iter() {
        let alg = bank_of(bank);
        if !banks.contains(&alg) {
            continue;
        }
        // PCRs 17-22 reset to all ones (PC Client locality 4 PCRs), the others to zeros.
        let fill = if (17..=22).contains(&pcr) { 0xff } else { 0 };
        let replayed_value = replayed
            .get(alg, u32::from(pcr))
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|| vec![fill; value.len()]);
        if replayed_value != value {
            failures.push(
                Failure::new("event log does not replay to the quoted PCRs")
                    .component("event log")
                    .pcr(u32::from(pcr))
                    .values(hex(value), hex(&replayed_value)),
            );
        }
    }
}
