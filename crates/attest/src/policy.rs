//! Reference policies: what a node pool's nodes must have booted. A policy is JSON (stable
//! field names, `"version": 1`), made three ways:
//!
//! - **learned** from a known-good boot's event log ([`ReferencePolicy::from_claims`]);
//! - **predicted** from a node image without booting it (the virtual firmware measures the
//!   image into software PCRs: `trustlaunch attest policy from-image`);
//! - **written** by the operator (rules only: Secure Boot on, allowed db, required dbx,
//!   allowed kernel command lines).
//!
//! Evaluation names each failing component with the PCR, the expected and observed values
//! and the event that shows it.

use crate::appraisal::{BootClaims, Failure};
use crate::{HashAlg, PcrValues};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The policy format version this verifier reads and writes.
pub const POLICY_VERSION: u32 = 1;

/// The PCRs a learned policy pins besides the boot components (PCR 4, 8 and 9 are judged per
/// component): the firmware's, the Secure Boot policy's and shim's.
pub const LEARNED_PCRS: [u32; 8] = [0, 1, 2, 3, 5, 6, 7, 14];

/// What nodes must have booted. Every rule is optional; an empty policy accepts any boot
/// whose quote and log are consistent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferencePolicy {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The Secure Boot state nodes must report (PCR 7's SecureBoot variable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_boot: Option<bool>,
    /// Accepted PCR values: bank (`sha256`) → PCR → accepted lowercase hex values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pcrs: BTreeMap<String, BTreeMap<u32, Vec<String>>>,
    /// Accepted SHA-256 measurements per boot component (`shim`, `grub`, `kernel`: the
    /// Authenticode digest; `initrd`: the file's digest).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, Vec<String>>,
    /// Accepted kernel command lines (as grub measured them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_cmdline: Vec<String>,
    /// If set, the PK (SHA-256 of its EFI_SIGNATURE_DATA data) must be one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_pk: Option<Vec<String>>,
    /// If set, every KEK entry must be one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_kek: Option<Vec<String>>,
    /// If set, every db entry (SHA-256 of its EFI_SIGNATURE_DATA data) must be one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_db: Option<Vec<String>>,
    /// dbx entries that must be present (revocations nodes must have).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_dbx: Vec<String>,
}

/// What a PCR describes, for failures that have no finer component.
fn pcr_component(pcr: u32) -> &'static str {
    match pcr {
        0 => "firmware",
        1 => "firmware configuration",
        2 | 3 => "option ROMs",
        4 => "boot applications",
        5 => "boot manager",
        6 => "platform events",
        7 => "secure boot policy",
        8 => "grub commands",
        9 => "grub files",
        14 => "shim MOK state",
        _ => "PCR",
    }
}

impl ReferencePolicy {
    /// Parse a policy file (JSON).
    pub fn from_json(text: &str) -> Result<Self, String> {
        let p: ReferencePolicy = serde_json::from_str(text).map_err(|e| format!("policy: {e}"))?;
        if p.version != POLICY_VERSION {
            return Err(format!(
                "policy: version {} (this verifier reads version {POLICY_VERSION})",
                p.version
            ));
        }
        Ok(p)
    }

    /// The policy as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Learn a policy from a known-good boot: its Secure Boot state, its components and
    /// command line, and the values of `pcrs` (bank, PCR, value) given.
    pub fn from_claims(claims: &BootClaims, pcrs: &[(String, u32, String)]) -> Self {
        let mut p = ReferencePolicy {
            version: POLICY_VERSION,
            secure_boot: Some(claims.secure_boot),
            ..Default::default()
        };
        for c in &claims.components {
            match c.component.as_str() {
                "kernel command line" => p.kernel_cmdline.extend(c.text.clone()),
                name => {
                    let list = p.components.entry(name.to_string()).or_default();
                    if !list.contains(&c.sha256) {
                        list.push(c.sha256.clone());
                    }
                }
            }
        }
        for (bank, pcr, value) in pcrs {
            p.pcrs
                .entry(bank.clone())
                .or_default()
                .insert(*pcr, vec![value.clone()]);
        }
        p
    }

    /// Add the failures of evidence (its quoted `pcrs`, the claims of its log) to `failures`.
    pub fn evaluate(
        &self,
        pcrs: &PcrValues,
        claims: Option<&BootClaims>,
        failures: &mut Vec<Failure>,
    ) {
        for (bank, values) in &self.pcrs {
            let alg = HashAlg::ALL.into_iter().find(|a| a.name() == bank);
            for (pcr, accepted) in values {
                let observed = alg
                    .zip(u8::try_from(*pcr).ok())
                    .and_then(|(a, p)| pcrs.get(a, p))
                    .map(|v| v.iter().map(|b| format!("{b:02x}")).collect::<String>());
                match observed {
                    None => failures.push(
                        Failure::new(format!(
                            "{bank} PCR {pcr} is not quoted; the policy requires it"
                        ))
                        .component(pcr_component(*pcr))
                        .pcr(*pcr),
                    ),
                    Some(v) if !accepted.contains(&v) => failures.push(
                        Failure::new(format!(
                            "{} (PCR {pcr}) not in baseline",
                            pcr_component(*pcr)
                        ))
                        .component(pcr_component(*pcr))
                        .pcr(*pcr)
                        .values(accepted.join(" | "), v),
                    ),
                    Some(_) => {}
                }
            }
        }
        let needs_log = self.secure_boot.is_some()
            || !self.components.is_empty()
            || !self.kernel_cmdline.is_empty()
            || self.allowed_pk.is_some()
            || self.allowed_kek.is_some()
            || self.allowed_db.is_some()
            || !self.required_dbx.is_empty();
        let Some(claims) = claims else {
            if needs_log {
                failures.push(
                    Failure::new("no usable event log: the policy's boot rules cannot be checked")
                        .component("event log"),
                );
            }
            return;
        };
        if self.secure_boot == Some(true) && !claims.secure_boot {
            failures.push(
                Failure::new("Secure Boot disabled")
                    .component("secure boot")
                    .pcr(7)
                    .values("enabled", "disabled"),
            );
        }
        for (name, accepted) in &self.components {
            let seen: Vec<_> = claims
                .components
                .iter()
                .filter(|c| &c.component == name)
                .collect();
            if seen.is_empty() {
                failures.push(
                    Failure::new(format!("{name} not measured; the policy requires one"))
                        .component(name.clone()),
                );
            }
            for c in seen {
                if !accepted.contains(&c.sha256) {
                    failures.push(
                        Failure::new(format!("{name} digest not in baseline"))
                            .component(name.clone())
                            .pcr(c.pcr)
                            .values(accepted.join(" | "), c.sha256.clone())
                            .event(c.event),
                    );
                }
            }
        }
        if !self.kernel_cmdline.is_empty() {
            for c in claims
                .components
                .iter()
                .filter(|c| c.component == "kernel command line")
            {
                let text = c.text.clone().unwrap_or_default();
                if !self.kernel_cmdline.contains(&text) {
                    failures.push(
                        Failure::new("kernel command line not allowed")
                            .component("kernel command line")
                            .pcr(c.pcr)
                            .values(self.kernel_cmdline.join(" | "), text)
                            .event(c.event),
                    );
                }
            }
        }
        for (name, allowed, present) in [
            ("PK", &self.allowed_pk, &claims.pk),
            ("KEK", &self.allowed_kek, &claims.kek),
            ("db", &self.allowed_db, &claims.db),
        ] {
            let Some(allowed) = allowed else { continue };
            for entry in present.iter().filter(|e| !allowed.contains(e)) {
                failures.push(
                    Failure::new(format!("{name} holds an entry the policy does not allow"))
                        .component("secure boot policy")
                        .pcr(7)
                        .values(allowed.join(" | "), entry.clone()),
                );
            }
        }
        for entry in self.required_dbx.iter().filter(|e| !claims.dbx.contains(e)) {
            failures.push(
                Failure::new("dbx lacks a revocation the policy requires")
                    .component("secure boot policy")
                    .pcr(7)
                    .values(entry.clone(), "absent"),
            );
        }
    }
}
