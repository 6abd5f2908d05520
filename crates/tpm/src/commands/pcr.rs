//! PCR commands (Part 3, 22): Extend, Event, Read, Reset, Allocate.

use super::Ctx;
use crate::engine::Tpm;
use crate::hash::HashAlg;
use crate::pcr::{PcrAllocation, ATTRIBUTES, HCRTM_PCR, NO_INCREMENT};
use crate::rc::Rc;
use crate::types::{
    handle, Tpm2bDigest, Tpm2bEvent, TpmlDigest, TpmlDigestValues, TpmlPcrSelection,
    TpmsPcrSelection, TpmtHa, PCR_COUNT,
};

/// The PCR named by a TPMI_DH_PCR+ handle, None for TPM_RH_NULL.
fn pcr_index(h: u32) -> Option<usize> {
    if h == handle::NULL {
        None
    } else {
        Some(h as usize)
    }
}

/// PC Client: may the command's locality extend this PCR?
pub(crate) fn check_extend_locality(pcr: usize, locality: u8) -> Result<(), Rc> {
    match ATTRIBUTES.get(pcr) {
        Some(a) if a.extend_localities & (1 << locality) != 0 => Ok(()),
        _ => Err(Rc::LOCALITY),
    }
}

/// Extend `pcr` in every allocated bank for which `digests` has a value.
pub(crate) fn extend_digests(tpm: &mut Tpm, pcr: usize, digests: &[TpmtHa]) {
    for d in digests {
        // The reference implementation counts a change per extended (allocated) bank.
        if tpm.vol.pcrs.get(d.alg, pcr).is_some() {
            tpm.vol.pcrs.extend(d.alg, pcr, &d.digest);
            bump_counter(tpm, pcr);
        }
    }
}

/// pcrUpdateCounter counts changes to PCRs outside the TCB group (TPM_PT_PCR_NO_INCREMENT).
pub(crate) fn bump_counter(tpm: &mut Tpm, pcr: usize) {
    if NO_INCREMENT & (1 << pcr) == 0 {
        tpm.vol.pcr_update_counter = tpm.vol.pcr_update_counter.wrapping_add(1);
    }
}

/// TPM2_PCR_Extend (Part 3, 22.2).
pub(crate) fn extend(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let digests: TpmlDigestValues = c.param()?;
    c.end_params()?;
    let Some(pcr) = pcr_index(c.handle(0)) else {
        return Ok(());
    };
    check_extend_locality(pcr, c.locality)?;
    extend_digests(tpm, pcr, &digests.0);
    Ok(())
}

/// TPM2_PCR_Event (Part 3, 22.3): hash the event with every implemented algorithm, extend
/// the allocated banks, and return all the digests.
pub(crate) fn event(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let data: Tpm2bEvent = c.param()?;
    c.end_params()?;
    let pcr = pcr_index(c.handle(0));
    if let Some(pcr) = pcr {
        check_extend_locality(pcr, c.locality)?;
    }
    let digests: Vec<TpmtHa> = HashAlg::ALL
        .iter()
        .map(|a| TpmtHa {
            alg: *a,
            digest: a.digest(&[data.as_slice()]),
        })
        .collect();
    if let Some(pcr) = pcr {
        extend_digests(tpm, pcr, &digests);
    }
    c.put(&TpmlDigestValues(digests));
    Ok(())
}

/// TPM2_PCR_Read (Part 3, 22.4): at most eight values; the output selection says which.
pub(crate) fn read(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let selection: TpmlPcrSelection = c.param()?;
    c.end_params()?;
    let mut out_sel = Vec::with_capacity(selection.0.len());
    let mut values = Vec::new();
    for s in &selection.0 {
        let Some(alg) = HashAlg::from_id(s.hash) else {
            return Err(Rc::HASH.param(1));
        };
        let mut mask = s.mask() & tpm.vol.pcrs.allocation.mask(alg);
        for pcr in 0..PCR_COUNT {
            if mask & (1 << pcr) == 0 {
                continue;
            }
            match tpm.vol.pcrs.get(alg, pcr) {
                Some(v) if values.len() < 8 => values.push(Tpm2bDigest(v.to_vec())),
                _ => mask &= !(1 << pcr),
            }
        }
        let mut sel = TpmsPcrSelection::from_mask(s.hash, mask);
        sel.select.resize(s.select.len(), 0);
        out_sel.push(sel);
    }
    c.put(&tpm.vol.pcr_update_counter);
    c.put(&TpmlPcrSelection(out_sel));
    c.put(&TpmlDigest(values));
    Ok(())
}

/// TPM2_PCR_Reset (Part 3, 22.8): only PCRs the locality may reset (never at locality 4).
pub(crate) fn reset(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    let pcr = c.handle(0) as usize;
    let allowed = c.locality < 4
        && ATTRIBUTES
            .get(pcr)
            .is_some_and(|a| a.reset_localities & (1 << c.locality) != 0);
    if !allowed {
        return Err(Rc::LOCALITY);
    }
    tpm.vol.pcrs.reset_to_zero(pcr);
    bump_counter(tpm, pcr);
    Ok(())
}

/// TPM2_PCR_Allocate (Part 3, 22.5): the new allocation takes effect at the next TPM Reset.
pub(crate) fn allocate(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let request: TpmlPcrSelection = c.param()?;
    c.end_params()?;
    let mut next: PcrAllocation = tpm.perm.pcr_allocation;
    for s in &request.0 {
        let alg = HashAlg::from_id(s.hash).ok_or(Rc::HASH.param(1))?;
        next.set_mask(alg, s.mask());
    }
    // Some bank must keep PCR 0 (H-CRTM) and one keep PCR 17 (the first DRTM PCR).
    let has = |pcr: usize| HashAlg::ALL.iter().any(|a| next.is_allocated(*a, pcr));
    if !has(HCRTM_PCR) || !has(17) {
        return Err(Rc::PCR);
    }
    let size_needed: u32 = HashAlg::ALL
        .iter()
        .map(|a| next.mask(*a).count_ones() * a.size() as u32)
        .sum();
    let size_available: u32 = HashAlg::ALL
        .iter()
        .map(|a| (PCR_COUNT * a.size()) as u32)
        .sum();
    tpm.perm.pcr_allocation = next;
    tpm.nv_changed();
    c.put(&1u8); // allocationSuccess = YES
    c.put(&(PCR_COUNT as u32));
    c.put(&size_needed);
    c.put(&size_available);
    Ok(())
}
