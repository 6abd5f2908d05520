//! `trustlaunch attest`: stateless verification of any TPM's evidence (as Keylime's
//! verify/evidence), and reference policies learned from a boot or predicted from a node
//! image.

use super::firmware::read_esp;
use anyhow::{bail, Context, Result};
use attest::appraisal::{appraise, boot_claims, Evidence};
use attest::policy::ReferencePolicy;
use attest::{AkPublic, PcrValues};
use clap::{Args, Subcommand};
use eventlog::{AlgorithmId, EventLog};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use attest::policy::LEARNED_PCRS;
/// What a prediction from the image alone can know: the Secure Boot policy and shim's
/// state (the firmware PCRs belong to the platform).
const PREDICTED_PCRS: [u32; 2] = [7, 14];

#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Verify a TPM quote and, optionally, its event log and a reference policy.
    ///
    /// Takes tpm2_quote's outputs (-m, -s, -o) and the attestation key's public key. Prints
    /// JSON `{"valid": bool, "failures": [{"reason", "component", "pcr", "expected",
    /// "observed", "event"}], "pcrs": {...}, "boot": {...}}`. Exit status: 0 valid, 1 not
    /// valid, 2 usage or I/O error.
    VerifyEvidence(VerifyArgs),
    /// Write reference policies that `verify-evidence --policy` accepts.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The attestation key: PEM public key, or TPM2B_PUBLIC (`tpm2_createak -u`).
    #[arg(long, value_name = "AK.pem")]
    ak_pub: PathBuf,
    /// The quoted TPMS_ATTEST (`tpm2_quote -m`).
    #[arg(long, value_name = "MSG")]
    quote: PathBuf,
    /// The quote's TPMT_SIGNATURE (`tpm2_quote -s`).
    #[arg(long, value_name = "SIG")]
    signature: PathBuf,
    /// The quoted PCR values (`tpm2_quote -o`, or `<bank> <pcr> <hex>` lines).
    #[arg(long, value_name = "PCRS")]
    pcrs: PathBuf,
    /// The nonce the verifier gave the node (`tpm2_quote -q`), hex.
    #[arg(long, value_name = "HEX")]
    nonce: String,
    /// The node's TCG event log (binary_bios_measurements).
    #[arg(long, value_name = "LOG")]
    eventlog: Option<PathBuf>,
    /// A reference policy (JSON, from `attest policy …`).
    #[arg(long, value_name = "POLICY")]
    policy: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Learn a policy from a known-good boot's event log.
    FromEventlog {
        #[arg(value_name = "LOG")]
        log: PathBuf,
    },
    /// Predict a policy from a node image, without booting it: the virtual firmware
    /// measures the image into software PCRs.
    FromImage {
        #[arg(value_name = "ESP_DIR")]
        esp: PathBuf,
        /// The firmware variable store the nodes boot with.
        #[arg(long, value_name = "OVMF_VARS.fd")]
        vars: PathBuf,
    },
}

pub fn run(cmd: AttestCommand) -> Result<ExitCode> {
    let result = match cmd {
        AttestCommand::VerifyEvidence(a) => verify(&a),
        AttestCommand::Policy(p) => policy(&p),
    };
    // Usage and I/O errors are exit 2, so that 1 always means "not valid".
    Ok(result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    }))
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{what} {}", path.display()))
}

fn verify(a: &VerifyArgs) -> Result<ExitCode> {
    let ak_bytes = read(&a.ak_pub, "--ak-pub")?;
    let ak = if ak_bytes.starts_with(b"-----BEGIN") {
        AkPublic::from_pem(&String::from_utf8_lossy(&ak_bytes))
    } else {
        AkPublic::from_tpm2b_public(&ak_bytes)
    }
    .with_context(|| format!("--ak-pub {}", a.ak_pub.display()))?;
    let quote = read(&a.quote, "--quote")?;
    let signature = read(&a.signature, "--signature")?;
    let pcr_bytes = read(&a.pcrs, "--pcrs")?;
    let pcrs = PcrValues::from_tpm2_tools(&pcr_bytes)
        .or_else(|_| PcrValues::from_text(&String::from_utf8_lossy(&pcr_bytes)))
        .with_context(|| format!("--pcrs {}", a.pcrs.display()))?;
    let nonce = hex::decode(a.nonce.trim_start_matches("0x"))
        .with_context(|| format!("--nonce {:?}: not hex", a.nonce))?;
    let log = a
        .eventlog
        .as_deref()
        .map(|p| read(p, "--eventlog"))
        .transpose()?;
    let policy = match &a.policy {
        Some(p) => Some(
            ReferencePolicy::from_json(&String::from_utf8_lossy(&read(p, "--policy")?))
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--policy {}", p.display()))?,
        ),
        None => None,
    };
    let evidence = Evidence {
        quote: &quote,
        signature: &signature,
        pcrs: &pcrs,
        event_log: log.as_deref(),
    };
    let appraisal = appraise(&ak, &nonce, &evidence, policy.as_ref());
    println!("{}", serde_json::to_string_pretty(&appraisal)?);
    Ok(if appraisal.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn hex_of(b: &[u8]) -> String {
    hex::encode(b)
}

fn policy(cmd: &PolicyCommand) -> Result<ExitCode> {
    let p = match cmd {
        PolicyCommand::FromEventlog { log } => {
            let bytes = read(log, "LOG")?;
            let parsed =
                EventLog::parse(&bytes).with_context(|| format!("LOG {}", log.display()))?;
            let claims = boot_claims(&parsed)
                .map_err(|f| anyhow::anyhow!("LOG {}: {}", log.display(), f.reason))?;
            let replayed = parsed.replay().context("replaying the log")?;
            let pcrs: Vec<(String, u32, String)> = LEARNED_PCRS
                .iter()
                .filter_map(|&n| {
                    replayed
                        .get(AlgorithmId::SHA256, n)
                        .map(|v| ("sha256".to_string(), n, hex_of(v)))
                })
                .collect();
            let mut p = ReferencePolicy::from_claims(&claims, &pcrs);
            p.description = Some(format!("learned from the event log {}", log.display()));
            p
        }
        PolicyCommand::FromImage { esp, vars } => {
            let image = read_esp(esp)?;
            let vars_bytes = read(vars, "--vars")?;
            let banks = [AlgorithmId::SHA1, AlgorithmId::SHA256, AlgorithmId::SHA384];
            let mut soft = firmware::SoftwarePcrs::new(&banks);
            let report = firmware::boot(&image, &vars_bytes, &mut soft)?;
            if let Some(stop) = &report.stopped {
                bail!("the image does not boot, so no policy can accept it: {stop}");
            }
            let log = EventLog::parse(&report.event_log).context("the predicted event log")?;
            let claims = boot_claims(&log)
                .map_err(|f| anyhow::anyhow!("the predicted event log: {}", f.reason))?;
            let pcrs: Vec<(String, u32, String)> = PREDICTED_PCRS
                .iter()
                .filter_map(|&n| {
                    soft.value(AlgorithmId::SHA256, n)
                        .map(|v| ("sha256".to_string(), n, hex_of(&v)))
                })
                .collect();
            let mut p = ReferencePolicy::from_claims(&claims, &pcrs);
            p.description = Some(format!(
                "predicted from the node image {} with {}",
                esp.display(),
                vars.display()
            ));
            p
        }
    };
    println!("{}", p.to_json());
    Ok(ExitCode::SUCCESS)
}
