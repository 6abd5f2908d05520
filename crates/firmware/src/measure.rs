//! Measurement: every event goes into the TCG event log and, with the same digests, into the
//! node's vTPM (TPM2_PCR_Extend through the [`Pcrs`] seam), so the log always replays to the
//! PCRs. Nothing here decides what to measure; `boot` does.

pub use eventlog::Digest;
use eventlog::{AlgorithmId, Event, EventType, LogBuilder};
use secureboot::pe::{DigestFlavor, PeImage};
use secureboot::HashAlgorithm;

/// The node's TPM as the firmware sees it: the banks it has and PCR extension.
pub trait Pcrs {
    /// The active PCR banks, in the order the log lists them.
    fn banks(&self) -> Vec<AlgorithmId>;
    /// TPM2_PCR_Extend(pcr, digests), one digest per active bank.
    fn extend(&mut self, pcr: u32, digests: &[(AlgorithmId, Vec<u8>)]) -> Result<(), String>;
}

/// The Authenticode hash algorithm of a PCR bank.
pub(crate) fn authenticode_alg(bank: AlgorithmId) -> Option<HashAlgorithm> {
    match bank {
        AlgorithmId::SHA1 => Some(HashAlgorithm::Sha1),
        AlgorithmId::SHA256 => Some(HashAlgorithm::Sha256),
        AlgorithmId::SHA384 => Some(HashAlgorithm::Sha384),
        AlgorithmId::SHA512 => Some(HashAlgorithm::Sha512),
        _ => None,
    }
}

/// Measurements of at least this many bytes hash their banks on parallel threads: the
/// kernel and the initrd are most of a boot's time, and the banks are independent.
const PARALLEL_HASH_BYTES: usize = 1 << 20;

/// One digest per bank, in bank order, the banks computed on threads of their own.
fn per_bank(
    banks: &[AlgorithmId],
    digest: impl Fn(AlgorithmId) -> Result<Vec<u8>, String> + Sync,
) -> Result<Vec<Digest>, String> {
    let digest = &digest;
    let results: Vec<Result<Vec<u8>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = banks
            .iter()
            .map(|bank| scope.spawn(move || digest(*bank)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a hashing thread panicked".into()))
            })
            .collect()
    });
    banks
        .iter()
        .zip(results)
        .map(|(bank, r)| r.map(|bytes| Digest { alg: *bank, bytes }))
        .collect()
}

/// A TPM failure during the boot: the platform stops, as firmware does when its TPM fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TPM: {0}")]
pub struct TpmFailure(pub String);

/// Writes the log and extends the TPM, event by event.
pub(crate) struct Measurer<'t> {
    log: LogBuilder,
    tpm: &'t mut dyn Pcrs,
    banks: Vec<AlgorithmId>,
}

impl<'t> Measurer<'t> {
    pub(crate) fn new(tpm: &'t mut dyn Pcrs) -> Result<Self, TpmFailure> {
        let banks = tpm.banks();
        let log = LogBuilder::new(&banks, b"")
            .map_err(|e| TpmFailure(format!("the TPM's PCR banks cannot be logged: {e}")))?;
        Ok(Measurer { log, tpm, banks })
    }

    fn extend(&mut self, event: &Event) -> Result<(), TpmFailure> {
        let digests: Vec<(AlgorithmId, Vec<u8>)> = event
            .digests
            .iter()
            .map(|d| (d.alg, d.bytes.clone()))
            .collect();
        self.tpm.extend(event.pcr, &digests).map_err(TpmFailure)
    }

    /// An event whose digests are the hashes of its data.
    pub(crate) fn data(&mut self, pcr: u32, ty: EventType, data: &[u8]) -> Result<(), TpmFailure> {
        let event = self.log.measure(pcr, ty, data);
        self.extend(&event)
    }

    /// An event whose digests are the hashes of `measured` while the log holds `data`.
    pub(crate) fn other(
        &mut self,
        pcr: u32,
        ty: EventType,
        measured: &[u8],
        data: &[u8],
    ) -> Result<(), TpmFailure> {
        if measured.len() < PARALLEL_HASH_BYTES {
            let event = self.log.measure_other(pcr, ty, measured, data.to_vec());
            return self.extend(&event);
        }
        // Large files (the kernel, the initrd): one bank per thread.
        let digests = per_bank(&self.banks, |bank| {
            bank.hash(measured)
                .ok_or_else(|| format!("cannot hash with {bank:?}"))
        })
        .map_err(TpmFailure)?;
        let event = self
            .log
            .record(pcr, ty, digests, data.to_vec())
            .map_err(|e| TpmFailure(e.to_string()))?;
        self.extend(&event)
    }

    /// Measure a boot application (PCR 4, EV_EFI_BOOT_SERVICES_APPLICATION) by its
    /// Authenticode digest in every bank, `times` times (grub's
    /// kernel is measured twice), the digests computed once — or taken from `known` (digests
    /// an earlier boot computed for the same content). Returns the digests.
    pub(crate) fn boot_application(
        &mut self,
        image: &PeImage<'_>,
        flavor: DigestFlavor,
        data: &[u8],
        times: usize,
        known: Option<&[Digest]>,
    ) -> Result<Vec<Digest>, String> {
        let digests = match known.filter(|k| self.fits(k)) {
            Some(k) => k.to_vec(),
            None => per_bank(&self.banks, |bank| {
                let alg = authenticode_alg(bank)
                    .ok_or_else(|| format!("no Authenticode digest for PCR bank {bank:?}"))?;
                image
                    .authenticode_digest(alg, flavor)
                    .map_err(|e| format!("cannot hash the image: {e}"))
            })?,
        };
        for _ in 0..times {
            let event = self
                .log
                .record(
                    4,
                    EventType::EV_EFI_BOOT_SERVICES_APPLICATION,
                    digests.clone(),
                    data.to_vec(),
                )
                .map_err(|e| e.to_string())?;
            self.extend(&event).map_err(|e| e.to_string())?;
        }
        Ok(digests)
    }

    /// Digests for exactly this log's banks, in its order.
    fn fits(&self, digests: &[Digest]) -> bool {
        digests.len() == self.banks.len()
            && digests.iter().zip(&self.banks).all(|(d, b)| d.alg == *b)
    }

    /// A file measured by its plain digests (grub's PCR 9), computed or `known`; returns them.
    pub(crate) fn file(
        &mut self,
        pcr: u32,
        ty: EventType,
        measured: &[u8],
        data: &[u8],
        known: Option<&[Digest]>,
    ) -> Result<Vec<Digest>, TpmFailure> {
        let digests = match known.filter(|k| self.fits(k)) {
            Some(k) => k.to_vec(),
            None => per_bank(&self.banks, |bank| {
                bank.hash(measured)
                    .ok_or_else(|| format!("cannot hash with {bank:?}"))
            })
            .map_err(TpmFailure)?,
        };
        let event = self
            .log
            .record(pcr, ty, digests.clone(), data.to_vec())
            .map_err(|e| TpmFailure(e.to_string()))?;
        self.extend(&event)?;
        Ok(digests)
    }

    /// The log so far, in OVMF's binary format.
    pub(crate) fn log_bytes(&self) -> Vec<u8> {
        self.log.to_bytes()
    }
}

/// PCRs computed in software, as a TPM would hold them after the same extends: for
/// predicting a node image's measurements without a TPM (reference policies).
#[derive(Debug, Clone)]
pub struct SoftwarePcrs {
    banks: Vec<AlgorithmId>,
    values: std::collections::BTreeMap<(u16, u32), Vec<u8>>,
}

impl SoftwarePcrs {
    /// PCRs of `banks`, all at their reset value (zeros).
    pub fn new(banks: &[AlgorithmId]) -> Self {
        SoftwarePcrs {
            banks: banks.to_vec(),
            values: Default::default(),
        }
    }

    /// The value of `pcr` in `bank` (zeros if never extended; None for a bank not held).
    pub fn value(&self, bank: AlgorithmId, pcr: u32) -> Option<Vec<u8>> {
        if !self.banks.contains(&bank) {
            return None;
        }
        Some(
            self.values
                .get(&(bank.0, pcr))
                .cloned()
                .unwrap_or_else(|| vec![0; bank.known_size().unwrap_or(0)]),
        )
    }
}

impl Pcrs for SoftwarePcrs {
    fn banks(&self) -> Vec<AlgorithmId> {
        self.banks.clone()
    }

    fn extend(&mut self, pcr: u32, digests: &[(AlgorithmId, Vec<u8>)]) -> Result<(), String> {
        for (bank, digest) in digests {
            let old = self
                .value(*bank, pcr)
                .ok_or_else(|| format!("no {bank:?} bank"))?;
            let new = bank
                .hash_parts(&[&old, digest])
                .ok_or_else(|| format!("cannot hash with {bank:?}"))?;
            self.values.insert((bank.0, pcr), new);
        }
        Ok(())
    }
}
