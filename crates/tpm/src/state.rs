//! The TPM's permanent state (what real TPMs keep in NV: seeds, proofs, hierarchy
//! authorizations, PCR allocation, NV indices, clock and counters, Shutdown data) and its
//! versioned on-disk encoding. Decoding is strict: a malformed blob is an error, never a reset.

use std::collections::BTreeMap;

use crate::codec::{put_sized, Marshal, Reader, Unmarshal};
use crate::hash::HashAlg;
use crate::pcr::PcrAllocation;
use crate::types::{TpmsNvPublic, PCR_COUNT};

/// Magic at the start of every permanent-state blob.
pub const MAGIC: &[u8; 8] = b"TLTPM2PS";
/// The current encoding. Older versions are upgraded on load; newer ones are refused.
pub const VERSION: u32 = 1;

/// Why a state blob cannot be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("TPM state is malformed at offset {offset}: {what}")]
    Malformed { offset: usize, what: &'static str },
    #[error("TPM state has version {0}, newer than this build understands ({VERSION})")]
    Version(u32),
}

/// One NV index: its public area, authorization value and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvIndex {
    pub public: TpmsNvPublic,
    pub auth: Vec<u8>,
    pub data: Vec<u8>,
}

/// What TPM2_Shutdown recorded for the next TPM2_Startup (an orderly shutdown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShutdownState {
    /// TPM_SU_CLEAR or TPM_SU_STATE.
    pub shutdown_type: u16,
    /// For STATE: the saved PCRs (bank, index, value) and the allocation they belong to.
    pub pcrs: Vec<(HashAlg, u8, Vec<u8>)>,
    pub allocation: PcrAllocation,
    pub pcr_update_counter: u32,
}

/// Dictionary-attack state; defaults as the reference implementation and swtpm have them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaState {
    pub failed_tries: u32,
    pub max_tries: u32,
    /// Seconds per failure forgiven.
    pub recovery_time: u32,
    /// Seconds after a lockoutAuth failure before lockoutAuth may be used again.
    pub lockout_recovery: u32,
    pub lockout_auth_enabled: bool,
    /// TPM clock (ms) of the last failure or self-healing step.
    pub reference_clock: u64,
    /// TPM clock (ms) of the last lockoutAuth failure.
    pub lockout_failure_clock: u64,
}

impl Default for DaState {
    fn default() -> Self {
        DaState {
            failed_tries: 0,
            max_tries: 3,
            recovery_time: 1000,
            lockout_recovery: 1000,
            lockout_auth_enabled: true,
            reference_clock: 0,
            lockout_failure_clock: 0,
        }
    }
}

/// Everything that survives _TPM_Init.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permanent {
    pub endorsement_seed: [u8; 64],
    pub storage_seed: [u8; 64],
    pub platform_seed: [u8; 64],
    pub endorsement_proof: [u8; 64],
    pub storage_proof: [u8; 64],
    pub platform_proof: [u8; 64],
    /// The NULL hierarchy's seed and proof, renewed at every TPM Reset (also keys saved contexts).
    pub null_seed: [u8; 64],
    pub null_proof: [u8; 64],
    pub owner_auth: Vec<u8>,
    pub endorsement_auth: Vec<u8>,
    pub lockout_auth: Vec<u8>,
    /// Takes effect at the next TPM Reset.
    pub pcr_allocation: PcrAllocation,
    pub nv: BTreeMap<u32, NvIndex>,
    /// Persistent objects (EvictControl), each as encoded by `keys::encode_object`.
    pub persistent: BTreeMap<u32, Vec<u8>>,
    /// The largest value any counter index ever had (new counters start above it).
    pub max_counter: u64,
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub disable_clear: bool,
    /// Dictionary-attack protection (Part 1, 19.8): failures so far and the parameters.
    pub da: DaState,
    pub shutdown: Option<ShutdownState>,
}

impl Permanent {
    /// A newly manufactured TPM, its seeds and proofs drawn from `random`.
    pub fn manufacture(random: &mut dyn FnMut(&mut [u8])) -> Self {
        let mut seed = || {
            let mut s = [0u8; 64];
            random(&mut s);
            s
        };
        Permanent {
            endorsement_seed: seed(),
            storage_seed: seed(),
            platform_seed: seed(),
            endorsement_proof: seed(),
            storage_proof: seed(),
            platform_proof: seed(),
            null_seed: seed(),
            null_proof: seed(),
            owner_auth: Vec::new(),
            endorsement_auth: Vec::new(),
            lockout_auth: Vec::new(),
            pcr_allocation: PcrAllocation::DEFAULT,
            nv: BTreeMap::new(),
            persistent: BTreeMap::new(),
            max_counter: 0,
            clock: 0,
            reset_count: 0,
            restart_count: 0,
            disable_clear: false,
            da: DaState::default(),
            shutdown: None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(MAGIC);
        VERSION.marshal(&mut out);
        for s in [
            &self.endorsement_seed,
            &self.storage_seed,
            &self.platform_seed,
            &self.endorsement_proof,
            &self.storage_proof,
            &self.platform_proof,
            &self.null_seed,
            &self.null_proof,
        ] {
            out.extend_from_slice(s);
        }
        put_sized(&mut out, &self.owner_auth);
        put_sized(&mut out, &self.endorsement_auth);
        put_sized(&mut out, &self.lockout_auth);
        for m in self.pcr_allocation.0 {
            m.marshal(&mut out);
        }
        (self.nv.len() as u32).marshal(&mut out);
        for idx in self.nv.values() {
            idx.public.marshal(&mut out);
            put_sized(&mut out, &idx.auth);
            put_sized(&mut out, &idx.data);
        }
        (self.persistent.len() as u32).marshal(&mut out);
        for (h, blob) in &self.persistent {
            h.marshal(&mut out);
            put_sized(&mut out, blob);
        }
        self.max_counter.marshal(&mut out);
        self.clock.marshal(&mut out);
        self.reset_count.marshal(&mut out);
        self.restart_count.marshal(&mut out);
        u8::from(self.disable_clear).marshal(&mut out);
        let da = &self.da;
        for v in [
            da.failed_tries,
            da.max_tries,
            da.recovery_time,
            da.lockout_recovery,
        ] {
            v.marshal(&mut out);
        }
        u8::from(da.lockout_auth_enabled).marshal(&mut out);
        da.reference_clock.marshal(&mut out);
        da.lockout_failure_clock.marshal(&mut out);
        match &self.shutdown {
            None => 0u8.marshal(&mut out),
            Some(s) => {
                1u8.marshal(&mut out);
                s.shutdown_type.marshal(&mut out);
                for m in s.allocation.0 {
                    m.marshal(&mut out);
                }
                s.pcr_update_counter.marshal(&mut out);
                (s.pcrs.len() as u32).marshal(&mut out);
                for (alg, pcr, value) in &s.pcrs {
                    alg.id().marshal(&mut out);
                    pcr.marshal(&mut out);
                    put_sized(&mut out, value);
                }
            }
        }
        out
    }

    pub fn decode(blob: &[u8]) -> Result<Self, StateError> {
        let mut r = Reader::new(blob);
        let bad = |r: &Reader<'_>, what: &'static str| StateError::Malformed {
            offset: r.position(),
            what,
        };
        if r.take(8).map_err(|_| bad(&r, "too short for the header"))? != MAGIC {
            return Err(StateError::Malformed {
                offset: 0,
                what: "not a trustlaunch TPM state (bad magic)",
            });
        }
        let version = r.u32().map_err(|_| bad(&r, "truncated version"))?;
        if version != VERSION {
            return Err(StateError::Version(version));
        }
        let seed = |r: &mut Reader<'_>| -> Result<[u8; 64], StateError> {
            r.array::<64>().map_err(|_| bad(r, "truncated seed"))
        };
        let endorsement_seed = seed(&mut r)?;
        let storage_seed = seed(&mut r)?;
        let platform_seed = seed(&mut r)?;
        let endorsement_proof = seed(&mut r)?;
        let storage_proof = seed(&mut r)?;
        let platform_proof = seed(&mut r)?;
        let null_seed = seed(&mut r)?;
        let null_proof = seed(&mut r)?;
        let auth = |r: &mut Reader<'_>| {
            r.sized(64)
                .map(<[u8]>::to_vec)
                .map_err(|_| bad(r, "bad authorization value"))
        };
        let owner_auth = auth(&mut r)?;
        let endorsement_auth = auth(&mut r)?;
        let lockout_auth = auth(&mut r)?;
        let allocation = |r: &mut Reader<'_>| -> Result<PcrAllocation, StateError> {
            let mut a = [0u32; 4];
            for m in &mut a {
                *m = r.u32().map_err(|_| bad(r, "truncated PCR allocation"))?;
                if *m >> PCR_COUNT != 0 {
                    return Err(bad(r, "PCR allocation names PCRs this TPM lacks"));
                }
            }
            Ok(PcrAllocation(a))
        };
        let pcr_allocation = allocation(&mut r)?;
        let count = r.u32().map_err(|_| bad(&r, "truncated NV count"))?;
        let mut nv = BTreeMap::new();
        for _ in 0..count {
            let public =
                TpmsNvPublic::unmarshal(&mut r).map_err(|_| bad(&r, "bad NV public area"))?;
            let auth = r
                .sized(64)
                .map_err(|_| bad(&r, "bad NV authorization"))?
                .to_vec();
            let data = r
                .sized(u16::MAX as usize)
                .map_err(|_| bad(&r, "bad NV data"))?
                .to_vec();
            if data.len() != usize::from(public.data_size) {
                return Err(bad(&r, "NV data size differs from its public area"));
            }
            // The size must fit the index type, as NV_DefineSpace enforces.
            let fits = match crate::types::NvType::from_attributes(public.attributes) {
                Some(crate::types::NvType::Ordinary) => {
                    data.len() <= crate::types::MAX_NV_INDEX_SIZE
                }
                Some(crate::types::NvType::Counter | crate::types::NvType::Bits) => data.len() == 8,
                Some(crate::types::NvType::Extend) => {
                    HashAlg::from_id(public.name_alg).is_some_and(|a| a.size() == data.len())
                }
                _ => false,
            };
            if !fits || HashAlg::from_id(public.name_alg).is_none() {
                return Err(bad(
                    &r,
                    "NV index size does not fit its type or name algorithm",
                ));
            }
            if nv
                .insert(public.nv_index, NvIndex { public, auth, data })
                .is_some()
            {
                return Err(bad(&r, "NV index defined twice"));
            }
        }
        let count = r
            .u32()
            .map_err(|_| bad(&r, "truncated persistent object count"))?;
        let mut persistent = BTreeMap::new();
        for _ in 0..count {
            let h = r
                .u32()
                .map_err(|_| bad(&r, "truncated persistent handle"))?;
            let blob = r
                .sized(u16::MAX as usize)
                .map_err(|_| bad(&r, "bad persistent object"))?
                .to_vec();
            if h >> 24 != 0x81 || persistent.insert(h, blob).is_some() {
                return Err(bad(&r, "bad or repeated persistent handle"));
            }
        }
        let u64f = |r: &mut Reader<'_>| r.u64().map_err(|_| bad(r, "truncated counter"));
        let max_counter = u64f(&mut r)?;
        let clock = u64f(&mut r)?;
        let reset_count = r.u32().map_err(|_| bad(&r, "truncated reset count"))?;
        let restart_count = r.u32().map_err(|_| bad(&r, "truncated restart count"))?;
        let disable_clear = match r.u8().map_err(|_| bad(&r, "truncated flags"))? {
            0 => false,
            1 => true,
            _ => return Err(bad(&r, "bad disableClear flag")),
        };
        let mut da_word = || {
            r.u32().map_err(|_| StateError::Malformed {
                offset: 0,
                what: "truncated dictionary-attack state",
            })
        };
        let failed_tries = da_word()?;
        let max_tries = da_word()?;
        let recovery_time = da_word()?;
        let lockout_recovery = da_word()?;
        let lockout_auth_enabled = match r.u8().map_err(|_| bad(&r, "truncated DA flag"))? {
            0 => false,
            1 => true,
            _ => return Err(bad(&r, "bad lockoutAuth flag")),
        };
        let reference_clock = u64f(&mut r)?;
        let lockout_failure_clock = u64f(&mut r)?;
        let da = DaState {
            failed_tries,
            max_tries,
            recovery_time,
            lockout_recovery,
            lockout_auth_enabled,
            reference_clock,
            lockout_failure_clock,
        };
        let shutdown = match r.u8().map_err(|_| bad(&r, "truncated shutdown flag"))? {
            0 => None,
            1 => {
                let shutdown_type = r.u16().map_err(|_| bad(&r, "truncated shutdown type"))?;
                if shutdown_type > 1 {
                    return Err(bad(&r, "bad shutdown type"));
                }
                let allocation = allocation(&mut r)?;
                let pcr_update_counter = r.u32().map_err(|_| bad(&r, "truncated PCR counter"))?;
                let n = r.u32().map_err(|_| bad(&r, "truncated saved PCR count"))?;
                if n as usize > PCR_COUNT * 4 {
                    return Err(bad(&r, "too many saved PCRs"));
                }
                let mut pcrs = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let alg = r
                        .u16()
                        .ok()
                        .and_then(HashAlg::from_id)
                        .ok_or_else(|| bad(&r, "bad saved PCR bank"))?;
                    let pcr = r.u8().map_err(|_| bad(&r, "truncated saved PCR"))?;
                    let value = r
                        .sized(64)
                        .map_err(|_| bad(&r, "bad saved PCR value"))?
                        .to_vec();
                    if usize::from(pcr) >= PCR_COUNT || value.len() != alg.size() {
                        return Err(bad(&r, "bad saved PCR"));
                    }
                    pcrs.push((alg, pcr, value));
                }
                Some(ShutdownState {
                    shutdown_type,
                    pcrs,
                    allocation,
                    pcr_update_counter,
                })
            }
            _ => return Err(bad(&r, "bad shutdown flag")),
        };
        if !r.is_empty() {
            return Err(bad(&r, "trailing bytes"));
        }
        Ok(Permanent {
            endorsement_seed,
            storage_seed,
            platform_seed,
            endorsement_proof,
            storage_proof,
            platform_proof,
            null_seed,
            null_proof,
            owner_auth,
            endorsement_auth,
            lockout_auth,
            pcr_allocation,
            nv,
            persistent,
            max_counter,
            clock,
            reset_count,
            restart_count,
            disable_clear,
            da,
            shutdown,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{alg, Tpm2bDigest};

    fn sample() -> Permanent {
        let mut n = 0u8;
        let mut p = Permanent::manufacture(&mut |b: &mut [u8]| {
            for x in b {
                n = n.wrapping_add(1);
                *x = n;
            }
        });
        p.owner_auth = b"owner".to_vec();
        p.nv.insert(
            0x0150_0001,
            NvIndex {
                public: TpmsNvPublic {
                    nv_index: 0x0150_0001,
                    name_alg: alg::SHA256,
                    attributes: 0x0002_0002,
                    auth_policy: Tpm2bDigest::default(),
                    data_size: 4,
                },
                auth: b"pw".to_vec(),
                data: vec![1, 2, 3, 4],
            },
        );
        p.shutdown = Some(ShutdownState {
            shutdown_type: 1,
            pcrs: vec![(HashAlg::Sha256, 7, vec![7; 32])],
            allocation: PcrAllocation::DEFAULT,
            pcr_update_counter: 9,
        });
        p
    }

    #[test]
    fn round_trips() {
        let p = sample();
        assert_eq!(Permanent::decode(&p.encode()), Ok(p));
    }

    #[test]
    fn every_truncation_and_bit_flip_in_the_header_is_an_error() {
        let blob = sample().encode();
        for cut in 0..blob.len() {
            assert!(
                Permanent::decode(&blob[..cut]).is_err(),
                "truncation at {cut} accepted"
            );
        }
        let mut v = blob.clone();
        v[8..12].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(Permanent::decode(&v), Err(StateError::Version(2)));
        let mut v = blob;
        v[0] ^= 1;
        assert!(matches!(
            Permanent::decode(&v),
            Err(StateError::Malformed { offset: 0, .. })
        ));
    }
}
