//! PCR banks with the PC Client Platform TPM Profile's attributes: which PCRs survive
//! Shutdown(STATE), and which localities may extend or reset each one.

use crate::hash::HashAlg;
use crate::types::PCR_COUNT;

/// Per-PCR attributes (PC Client PTP, Table "PCR Attributes"): state saved, and the locality
/// bitmaps (bit n = locality n) allowed to reset and to extend.
#[derive(Clone, Copy)]
pub struct PcrAttributes {
    pub state_save: bool,
    pub reset_localities: u8,
    pub extend_localities: u8,
}

const fn attr(state_save: bool, reset_localities: u8, extend_localities: u8) -> PcrAttributes {
    PcrAttributes {
        state_save,
        reset_localities,
        extend_localities,
    }
}

/// PCR 0-15: static RTM, saved, never reset; 16 debug and 23 application: reset by 0-3;
/// 17-22: the DRTM PCRs, reset by locality 4 (and 2 for 20-22), extended by their localities.
pub const ATTRIBUTES: [PcrAttributes; PCR_COUNT] = [
    attr(true, 0, 0x1F),
    attr(true, 0, 0x1F),
    attr(true, 0, 0x1F),
    attr(true, 0, 0x1F),
    attr(true, 0, 0x1F),
    attr(true, 0, 0x1F),
    attr(true, 0, 0x1F),
    attr(true, 0, 0x1F),
    attr(true, 0, 0x1F),
    attr(true, 0, 0x1F),
    attr(true, 0, 0x1F),
    attr(true, 0, 0x1F),
    attr(true, 0, 0x1F),
    attr(true, 0, 0x1F),
    attr(true, 0, 0x1F),
    attr(true, 0, 0x1F),
    attr(false, 0x0F, 0x1F),
    attr(false, 0x10, 0x1C),
    attr(false, 0x10, 0x1C),
    attr(false, 0x10, 0x0C),
    attr(false, 0x14, 0x0E),
    attr(false, 0x14, 0x04),
    attr(false, 0x14, 0x04),
    attr(false, 0x0F, 0x1F),
];

/// PCRs whose changes do not advance pcrUpdateCounter: 16 (debug), 21-23, as PC Client
/// TPMs (and swtpm) report in TPM_PT_PCR_NO_INCREMENT.
pub const NO_INCREMENT: u32 = (1 << 16) | (1 << 21) | (1 << 22) | (1 << 23);

/// The PCR that records the startup locality and H-CRTM (PCR 0).
pub const HCRTM_PCR: usize = 0;

/// Which PCRs each bank has (bit n = PCR n), indexed like [`HashAlg::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcrAllocation(pub [u32; 4]);

impl PcrAllocation {
    /// What cloud vTPMs expose: SHA-1, SHA-256 and SHA-384 banks, all 24 PCRs each.
    pub const DEFAULT: PcrAllocation = PcrAllocation([0x00FF_FFFF, 0x00FF_FFFF, 0x00FF_FFFF, 0]);

    pub fn mask(&self, alg: HashAlg) -> u32 {
        self.0.get(alg.index()).copied().unwrap_or(0)
    }

    pub fn set_mask(&mut self, alg: HashAlg, mask: u32) {
        if let Some(m) = self.0.get_mut(alg.index()) {
            *m = mask & 0x00FF_FFFF;
        }
    }

    pub fn is_allocated(&self, alg: HashAlg, pcr: usize) -> bool {
        pcr < PCR_COUNT && self.mask(alg) & (1 << pcr) != 0
    }
}

/// The PCR values of all banks. Unallocated PCRs keep no meaningful value.
#[derive(Clone)]
pub struct PcrBanks {
    pub allocation: PcrAllocation,
    /// One buffer per bank: PCR_COUNT digests of that bank's size.
    values: [Vec<u8>; 4],
}

impl PcrBanks {
    pub fn new(allocation: PcrAllocation) -> Self {
        let values = HashAlg::ALL.map(|a| {
            if allocation.mask(a) != 0 {
                vec![0u8; a.size() * PCR_COUNT]
            } else {
                Vec::new()
            }
        });
        PcrBanks { allocation, values }
    }

    /// The PCR's value, if allocated in that bank.
    pub fn get(&self, alg: HashAlg, pcr: usize) -> Option<&[u8]> {
        if !self.allocation.is_allocated(alg, pcr) {
            return None;
        }
        let n = alg.size();
        self.values.get(alg.index())?.get(pcr * n..(pcr + 1) * n)
    }

    fn get_mut(&mut self, alg: HashAlg, pcr: usize) -> Option<&mut [u8]> {
        if !self.allocation.is_allocated(alg, pcr) {
            return None;
        }
        let n = alg.size();
        self.values
            .get_mut(alg.index())?
            .get_mut(pcr * n..(pcr + 1) * n)
    }

    pub fn set(&mut self, alg: HashAlg, pcr: usize, value: &[u8]) {
        if let Some(slot) = self.get_mut(alg, pcr) {
            if slot.len() == value.len() {
                slot.copy_from_slice(value);
            }
        }
    }

    /// PCR := H(PCR || digest) in the bank of `alg`, if allocated.
    pub fn extend(&mut self, alg: HashAlg, pcr: usize, digest: &[u8]) {
        if let Some(slot) = self.get_mut(alg, pcr) {
            let new = alg.digest(&[slot, digest]);
            slot.copy_from_slice(&new);
        }
    }

    /// The value a PCR takes at TPM Reset/Restart: all ones for PCRs only locality 4 may
    /// reset (the DRTM PCRs), zero otherwise, with PCR 0's last octet the startup locality.
    pub fn reset_value(alg: HashAlg, pcr: usize, startup_locality: u8) -> Vec<u8> {
        let mut v = vec![0u8; alg.size()];
        match ATTRIBUTES.get(pcr) {
            Some(a) if a.reset_localities & 0x10 != 0 => v.fill(0xFF),
            _ if pcr == HCRTM_PCR => {
                if let Some(last) = v.last_mut() {
                    *last = startup_locality;
                }
            }
            _ => {}
        }
        v
    }

    /// Reset every PCR to its startup value.
    pub fn reset_all(&mut self, startup_locality: u8) {
        for alg in HashAlg::ALL {
            for pcr in 0..PCR_COUNT {
                let v = Self::reset_value(alg, pcr, startup_locality);
                self.set(alg, pcr, &v);
            }
        }
    }

    /// PCR_Reset's value: zero (Part 3, 22.8).
    pub fn reset_to_zero(&mut self, pcr: usize) {
        for alg in HashAlg::ALL {
            let zero = vec![0u8; alg.size()];
            self.set(alg, pcr, &zero);
        }
    }
}
