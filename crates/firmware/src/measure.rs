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

/// A digest of a large input through OpenSSL's SHA code (SHA-NI, AVX2: about half again as
/// fast as the portable crates on megabytes); small inputs use the event log's hashers.
fn hash_large(bank: AlgorithmId, data: &[u8]) -> Result<Vec<u8>, String> {
    let md = match bank {
        AlgorithmId::SHA1 => openssl::hash::MessageDigest::sha1(),
        AlgorithmId::SHA256 => openssl::hash::MessageDigest::sha256(),
        AlgorithmId::SHA384 => openssl::hash::MessageDigest::sha384(),
        AlgorithmId::SHA512 => openssl::hash::MessageDigest::sha512(),
        other => {
            return other
                .hash(data)
                .ok_or_else(|| format!("cannot hash with {other:?}"))
        }
    };
    openssl::hash::hash(md, data)
        .map(|d| d.to_vec())
        .map_err(|e| format!("{bank:?}: {e}"))
}

/// Measurements of at least this many bytes hash their banks on parallel threads: the
/// kernel and the initrd are most of a boot's time, and the banks are independent.
const PARALLEL_HASH_BYTES: usize = 1 << 20;

/// What one byte costs a bank, relative to SHA-256 (OpenSSL on x86-64 with SHA-NI: SHA-1
/// and SHA-256 alike, SHA-384/512 about twice as slow).
fn bank_cost(bank: AlgorithmId) -> u32 {
    match bank {
        AlgorithmId::SHA384 | AlgorithmId::SHA512 => 2,
        _ => 1,
    }
}

/// One digest per bank, in bank order. The banks are split into two groups of about equal
/// cost, one hashed on a second thread and one on this thread: a host runs many boots on few
/// cores, and more threads than two would only take turns.
fn per_bank(
    banks: &[AlgorithmId],
    digest: impl Fn(AlgorithmId) -> Result<Vec<u8>, String> + Sync,
) -> Result<Vec<Digest>, String> {
    // Greedy: the costliest banks first, each to the lighter group.
    let mut order: Vec<usize> = (0..banks.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(bank_cost(banks[i])));
    let (mut other, mut here) = (Vec::new(), Vec::new());
    let (mut other_cost, mut here_cost) = (0, 0);
    for i in order {
        let c = bank_cost(banks[i]);
        if other_cost <= here_cost {
            other.push(i);
            other_cost += c;
        } else {
            here.push(i);
            here_cost += c;
        }
    }
    let digest = &digest;
    let mut results: Vec<Option<Result<Vec<u8>, String>>> = vec![None; banks.len()];
    let (from_other, from_here) = std::thread::scope(|scope| {
        let other_banks: Vec<(usize, AlgorithmId)> = other.iter().map(|&i| (i, banks[i])).collect();
        let handle = scope.spawn(move || {
            other_banks
                .into_iter()
                .map(|(i, b)| (i, digest(b)))
                .collect::<Vec<_>>()
        });
        let mine: Vec<_> = here.iter().map(|&i| (i, digest(banks[i]))).collect();
        let theirs = handle
            .join()
            .unwrap_or_else(|_| vec![(usize::MAX, Err("a hashing thread panicked".into()))]);
        (theirs, mine)
    });
    for (i, r) in from_other.into_iter().chain(from_here) {
        match results.get_mut(i) {
            Some(slot) => *slot = Some(r),
            None => return Err(r.err().unwrap_or_else(|| "hashing failed".into())),
        }
    }
    banks
        .iter()
        .zip(results)
        .map(|(bank, r)| {
            r.unwrap_or_else(|| Err("a bank was not hashed".into()))
                .map(|bytes| Digest { alg: *bank, bytes })
        })
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
        let digests =
            per_bank(&self.banks, |bank| hash_large(bank, measured)).map_err(TpmFailure)?;
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
            None => self.authenticode_digests(image, flavor)?,
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

    /// The image's Authenticode digest in every bank, in bank order, the banks hashed on
    /// threads of their own.
    pub(crate) fn authenticode_digests(
        &self,
        image: &PeImage<'_>,
        flavor: DigestFlavor,
    ) -> Result<Vec<Digest>, String> {
        per_bank(&self.banks, |bank| {
            let alg = authenticode_alg(bank)
                .ok_or_else(|| format!("no Authenticode digest for PCR bank {bank:?}"))?;
            image
                .authenticode_digest(alg, flavor)
                .map_err(|e| format!("cannot hash the image: {e}"))
        })
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
            None => per_bank(&self.banks, |bank| hash_large(bank, measured)).map_err(TpmFailure)?,
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
