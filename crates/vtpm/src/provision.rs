//! `swtpm_setup`'s job: manufacture a TPM into a new state directory, the way a TPM
//! vendor's provisioning station (or a cloud's vTPM host) does before the first boot.
//!
//! 1. manufacture (new seeds), and if asked, endorse ([`crate::endorsement`]): RSA-2048
//!    and ECC P-256 EK certificates in NV 0x01C00002 / 0x01C0000A, write-locked;
//! 2. if asked (`--createek`), make both EKs persistent as `swtpm_setup` does: RSA at
//!    0x81010001, ECC P-256 at 0x81010002 (TPM2_CreatePrimary, TPM2_EvictControl with
//!    owner authorization);
//! 3. if asked (`--pcr-banks`), allocate exactly those PCR banks (TPM2_PCR_Allocate
//!    with platform authorization, which takes effect at the next TPM Reset), then reset
//!    (TPM2_Shutdown, _TPM_Init, TPM2_Startup) and read the allocation back
//!    (TPM2_GetCapability(TPM_CAP_PCRS));
//! 4. TPM2_Shutdown(CLEAR), and save the state file.
//!
//! [`reconfigure_pcr_banks`] does step 3 on an existing TPM (`swtpm_setup --reconfigure`).
//! Platform certificates (TCG Platform Credential Profile attribute certificates) are not
//! made.

use crate::ca::CaError;
use crate::endorsement::{self, EkKind, EndorsementError, Station};
use crate::log::Log;
use crate::state::{StateDir, StateDirError};
use crate::Endorsement;
use tpm::hash::HashAlg;
use tpm::Tpm;

/// Where `--createek` makes each EK persistent: RSA at the handle the TCG provisioning
/// guidance and `swtpm_setup` use, ECC P-256 at the next one.
pub fn ek_persistent_handle(kind: EkKind) -> u32 {
    match kind {
        EkKind::Rsa2048 => 0x8101_0001,
        EkKind::EccP256 => 0x8101_0002,
    }
}

/// The name of a state file written by swtpm (libtpms), which this TPM cannot read.
pub const SWTPM_STATE_FILE: &str = "tpm2-00.permall";

const CC_EVICT_CONTROL: u32 = 0x120;
const CC_PCR_ALLOCATE: u32 = 0x12B;
const CC_SHUTDOWN: u32 = 0x145;
const CC_GET_CAPABILITY: u32 = 0x17A;
const TPM_CAP_PCRS: u32 = 5;
const TPM_RH_OWNER: u32 = 0x4000_0001;
const TPM_RH_PLATFORM: u32 = 0x4000_000C;

/// What to provision.
#[derive(Debug, Clone, Default)]
pub struct SetupOptions {
    /// EK certificates (`--create-ek-cert`), or none.
    pub endorsement: Endorsement,
    /// Make the EKs persistent (`--createek`).
    pub persist_eks: bool,
    /// Allocate exactly these PCR banks (all 24 PCRs each); `None` keeps the engine's
    /// default allocation.
    pub pcr_banks: Option<Vec<HashAlg>>,
}

/// What was provisioned.
#[derive(Debug, Clone, Default)]
pub struct SetupReport {
    /// EK certificates written to NV: kind, NV index, DER.
    pub ek_certificates: Vec<(EkKind, u32, Vec<u8>)>,
    /// The certificates' issuer, if any were made.
    pub issuer: Option<String>,
    /// Persistent EKs: kind, handle.
    pub persistent_eks: Vec<(EkKind, u32)>,
    /// The PCR banks allocated in the end (those with at least one PCR).
    pub pcr_banks: Vec<HashAlg>,
}

/// Errors of provisioning.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    State(#[from] StateDirError),
    #[error("manufacturer CA: {0}")]
    Ca(#[from] CaError),
    #[error(transparent)]
    Endorsement(EndorsementError),
    #[error("{step}: TPM2_{command} failed with response code {rc:#x}")]
    Command {
        step: &'static str,
        command: &'static str,
        rc: u32,
    },
    #[error("{step}: {error}")]
    Step {
        step: &'static str,
        error: EndorsementError,
    },
    #[error("PCR banks: {0}")]
    Banks(String),
    #[error("the state file in {dir} was rejected by the TPM engine: {error}")]
    Restore { dir: String, error: tpm::StateError },
    #[error("no TPM state in {0} to reconfigure")]
    NoState(String),
    #[error("no entropy from the operating system: {0}")]
    Entropy(String),
}

fn step(step: &'static str) -> impl Fn(EndorsementError) -> ProvisionError {
    move |error| match error {
        EndorsementError::Command { command, rc } => ProvisionError::Command { step, command, rc },
        error => ProvisionError::Step { step, error },
    }
}

fn entropy() -> Result<[u8; 32], ProvisionError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| ProvisionError::Entropy(e.to_string()))?;
    Ok(seed)
}

/// Manufacture a TPM as `opts` says and store it in `dir` (replacing any state there:
/// callers decide about overwriting).
pub fn manufacture(
    dir: &StateDir,
    opts: &SetupOptions,
    log: &Log,
) -> Result<SetupReport, ProvisionError> {
    let mut tpm = Tpm::manufacture(&entropy()?);
    let mut report = SetupReport::default();

    let resolved = opts.endorsement.resolve()?;
    if let Some((ca, kinds)) = resolved {
        let endorsed = endorsement::provision_kinds(&mut tpm, &ca, kinds)
            .map_err(ProvisionError::Endorsement)?;
        for ek in endorsed.eks {
            log.info(format_args!(
                "Successfully created NVRAM area {:#x} for {} EK certificate.",
                ek.kind.nv_index(),
                kind_name(ek.kind)
            ));
            report
                .ek_certificates
                .push((ek.kind, ek.kind.nv_index(), ek.certificate));
        }
        report.issuer = Some(ca.subject().to_string());
    }

    let mut station = Station { tpm: &mut tpm };
    endorsement::tpm_init_and_startup(&mut station).map_err(step("startup"))?;
    if opts.persist_eks {
        for kind in EkKind::ALL {
            let handle = ek_persistent_handle(kind);
            persist_ek(&mut station, kind, handle)?;
            log.info(format_args!(
                "Successfully created {} EK with handle {handle:#x}.",
                kind_name(kind)
            ));
            report.persistent_eks.push((kind, handle));
        }
    }
    if let Some(banks) = &opts.pcr_banks {
        allocate(&mut station, banks)?;
    }
    report.pcr_banks = active_banks(&mut station)?;
    if let Some(banks) = &opts.pcr_banks {
        check_banks(banks, &report.pcr_banks)?;
        log.info(format_args!(
            "Successfully activated PCR banks {} among {}.",
            names(&report.pcr_banks),
            names(&HashAlg::ALL)
        ));
    }
    shutdown(&mut station)?;
    dir.store(&tpm.permanent_state())?;
    Ok(report)
}

/// `--reconfigure --pcr-banks`: allocate exactly `banks` in the TPM stored in `dir`,
/// keeping everything else. Returns the banks allocated in the end.
pub fn reconfigure_pcr_banks(
    dir: &StateDir,
    banks: &[HashAlg],
    log: &Log,
) -> Result<Vec<HashAlg>, ProvisionError> {
    let display = dir.path().display().to_string();
    let blob = dir
        .load()?
        .ok_or(ProvisionError::NoState(display.clone()))?;
    let mut tpm = Tpm::restore(&blob, &entropy()?).map_err(|error| ProvisionError::Restore {
        dir: display,
        error,
    })?;
    let mut station = Station { tpm: &mut tpm };
    endorsement::tpm_init_and_startup(&mut station).map_err(step("startup"))?;
    allocate(&mut station, banks)?;
    let active = active_banks(&mut station)?;
    check_banks(banks, &active)?;
    shutdown(&mut station)?;
    dir.store(&tpm.permanent_state())?;
    log.info(format_args!(
        "Successfully activated PCR banks {} among {}.",
        names(&active),
        names(&HashAlg::ALL)
    ));
    Ok(active)
}

/// The name `swtpm_setup` prints for an EK.
pub fn kind_name(kind: EkKind) -> &'static str {
    match kind {
        EkKind::Rsa2048 => "RSA 2048",
        EkKind::EccP256 => "ECC NIST P-256",
    }
}

/// `sha1,sha256`-style list.
pub fn names(banks: &[HashAlg]) -> String {
    banks.iter().map(|b| b.name()).collect::<Vec<_>>().join(",")
}

/// Parse `--pcr-banks`: a comma-separated list of sha1, sha256, sha384, sha512, or `-`
/// (`None`: keep the default allocation).
pub fn parse_pcr_banks(s: &str) -> Result<Option<Vec<HashAlg>>, String> {
    if s.trim() == "-" {
        return Ok(None);
    }
    let mut banks = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(alg) = HashAlg::ALL.iter().copied().find(|a| a.name() == name) else {
            return Err(format!(
                "'{name}' is not a PCR bank this TPM has (it has {})",
                names(&HashAlg::ALL)
            ));
        };
        if !banks.contains(&alg) {
            banks.push(alg);
        }
    }
    if banks.is_empty() {
        return Err("no PCR bank given (use - to keep the default banks)".into());
    }
    banks.sort_by_key(|a| a.index());
    Ok(Some(banks))
}

fn persist_ek(station: &mut Station<'_>, kind: EkKind, handle: u32) -> Result<(), ProvisionError> {
    let (object, _) = station
        .load_primary_ek(kind)
        .map_err(step("persistent EK"))?;
    let persisted = station.run(
        "EvictControl",
        CC_EVICT_CONTROL,
        &[TPM_RH_OWNER, object],
        true,
        &handle.to_be_bytes(),
        0,
    );
    let flushed = station.flush(object);
    persisted.map_err(step("persistent EK"))?;
    flushed.map_err(step("persistent EK"))?;
    Ok(())
}

/// TPM2_PCR_Allocate of exactly `banks`, then a TPM Reset so it takes effect.
fn allocate(station: &mut Station<'_>, banks: &[HashAlg]) -> Result<(), ProvisionError> {
    let mut params = Vec::new();
    params.extend_from_slice(&(HashAlg::ALL.len() as u32).to_be_bytes());
    for alg in HashAlg::ALL {
        params.extend_from_slice(&alg.id().to_be_bytes());
        params.push(3);
        let on = if banks.contains(&alg) { 0xff } else { 0 };
        params.extend_from_slice(&[on, on, on]);
    }
    let (_, out) = station
        .run(
            "PCR_Allocate",
            CC_PCR_ALLOCATE,
            &[TPM_RH_PLATFORM],
            true,
            &params,
            0,
        )
        .map_err(step("PCR banks"))?;
    if out.first() != Some(&1) {
        return Err(ProvisionError::Banks(
            "TPM2_PCR_Allocate did not succeed (allocationSuccess = NO)".into(),
        ));
    }
    shutdown(station)?;
    endorsement::tpm_init_and_startup(station).map_err(step("PCR banks"))?;
    Ok(())
}

/// The banks with at least one PCR, from TPM2_GetCapability(TPM_CAP_PCRS).
fn active_banks(station: &mut Station<'_>) -> Result<Vec<HashAlg>, ProvisionError> {
    let mut params = Vec::new();
    params.extend_from_slice(&TPM_CAP_PCRS.to_be_bytes());
    params.extend_from_slice(&0u32.to_be_bytes());
    params.extend_from_slice(&1u32.to_be_bytes());
    let (_, out) = station
        .run("GetCapability", CC_GET_CAPABILITY, &[], false, &params, 0)
        .map_err(step("PCR banks"))?;
    let malformed = || ProvisionError::Banks("malformed TPM_CAP_PCRS response".into());
    // moreData, capability, TPML_PCR_SELECTION.
    let mut at = 5usize;
    let count = be32(out.get(at..at + 4).ok_or_else(malformed)?);
    at += 4;
    let mut active = Vec::new();
    for _ in 0..count {
        let hdr = out.get(at..at + 3).ok_or_else(malformed)?;
        let hash = u16::from_be_bytes([hdr[0], hdr[1]]);
        let size = usize::from(hdr[2]);
        let select = out.get(at + 3..at + 3 + size).ok_or_else(malformed)?;
        at += 3 + size;
        if let Some(alg) = HashAlg::from_id(hash) {
            if select.iter().any(|b| *b != 0) {
                active.push(alg);
            }
        }
    }
    active.sort_by_key(|a| a.index());
    Ok(active)
}

fn check_banks(asked: &[HashAlg], active: &[HashAlg]) -> Result<(), ProvisionError> {
    if asked != active {
        return Err(ProvisionError::Banks(format!(
            "asked for {} but the TPM has {} after the reset",
            names(asked),
            names(active)
        )));
    }
    Ok(())
}

fn shutdown(station: &mut Station<'_>) -> Result<(), ProvisionError> {
    station
        .run("Shutdown", CC_SHUTDOWN, &[], false, &[0, 0], 0)
        .map_err(step("shutdown"))?;
    Ok(())
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_bank_lists() {
        assert_eq!(parse_pcr_banks("-"), Ok(None));
        assert_eq!(
            parse_pcr_banks("sha256,sha1,sha256"),
            Ok(Some(vec![HashAlg::Sha1, HashAlg::Sha256]))
        );
        assert!(parse_pcr_banks("sm3_256")
            .expect_err("sm3")
            .contains("'sm3_256' is not a PCR bank"));
        assert!(parse_pcr_banks(",").is_err());
    }

    #[test]
    fn manufacture_with_banks_and_persistent_eks_then_reconfigure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = StateDir::open(dir.path()).expect("statedir");
        let opts = SetupOptions {
            endorsement: Endorsement::None,
            persist_eks: true,
            pcr_banks: Some(vec![HashAlg::Sha1, HashAlg::Sha256]),
        };
        let report = manufacture(&sd, &opts, &Log::none()).expect("manufacture");
        assert_eq!(report.pcr_banks, vec![HashAlg::Sha1, HashAlg::Sha256]);
        assert_eq!(
            report.persistent_eks,
            vec![
                (EkKind::Rsa2048, 0x8101_0001),
                (EkKind::EccP256, 0x8101_0002)
            ]
        );
        assert!(sd.load().expect("load").is_some());
        let active =
            reconfigure_pcr_banks(&sd, &[HashAlg::Sha384], &Log::none()).expect("reconfigure");
        assert_eq!(active, vec![HashAlg::Sha384]);
    }
}
