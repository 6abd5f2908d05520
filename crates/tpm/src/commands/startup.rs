//! Start-up, shut-down, self test, random numbers, clock and TestParms (Part 3, 9, 10, 16, 29).

use super::Ctx;
use crate::engine::Tpm;
use crate::hash::HashAlg;
use crate::pcr::{PcrBanks, ATTRIBUTES};
use crate::rc::Rc;
use crate::state::ShutdownState;
use crate::types::{
    alg, curve, nv_attr, su, Tpm2bDigest, Tpm2bMaxBuffer, Tpm2bSensitiveData, TpmlAlg,
    TpmsClockInfo, TpmsTimeInfo, PCR_COUNT,
};

/// TPM2_Startup (Part 3, 9.3): TPM Reset, TPM Restart or TPM Resume, decided by the startup
/// type and what the last TPM2_Shutdown recorded.
pub(crate) fn startup(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    if tpm.started {
        return Err(Rc::INITIALIZE);
    }
    let startup_type: u16 = c.param()?;
    c.end_params()?;
    if startup_type != su::CLEAR && startup_type != su::STATE {
        return Err(Rc::VALUE.param(1));
    }
    // PC Client: Startup comes from locality 0 or 3, recorded in PCR 0.
    if c.locality != 0 && c.locality != 3 {
        return Err(Rc::LOCALITY);
    }
    let saved = tpm.perm.shutdown.clone();
    let after_state = matches!(&saved, Some(s) if s.shutdown_type == su::STATE);
    if startup_type == su::STATE {
        match &saved {
            Some(s) if s.shutdown_type == su::STATE && s.allocation == tpm.perm.pcr_allocation => {}
            _ => return Err(Rc::VALUE.param(1)),
        }
    }

    let mut pcrs = PcrBanks::new(tpm.perm.pcr_allocation);
    pcrs.reset_all(c.locality);
    if startup_type == su::STATE {
        // TPM Resume: restore the PCRs the profile preserves.
        if let Some(s) = &saved {
            for (alg, pcr, value) in &s.pcrs {
                if ATTRIBUTES
                    .get(usize::from(*pcr))
                    .is_some_and(|a| a.state_save)
                {
                    pcrs.set(*alg, usize::from(*pcr), value);
                }
            }
            tpm.vol.pcr_update_counter = s.pcr_update_counter;
        }
        tpm.perm.restart_count = tpm.perm.restart_count.wrapping_add(1);
    } else {
        if after_state {
            // TPM Restart.
            tpm.perm.restart_count = tpm.perm.restart_count.wrapping_add(1);
        } else {
            // TPM Reset: a new NULL hierarchy, so contexts and NULL-hierarchy keys expire.
            tpm.perm.reset_count = tpm.perm.reset_count.wrapping_add(1);
            tpm.perm.restart_count = 0;
            let mut fresh = [0u8; 64];
            tpm.random(&mut fresh);
            tpm.perm.null_seed = fresh;
            tpm.random(&mut fresh);
            tpm.perm.null_proof = fresh;
        }
        // Startup(CLEAR) releases the locks that last until the next one (Part 3, 31.3).
        for idx in tpm.perm.nv.values_mut() {
            let a = &mut idx.public.attributes;
            *a &= !nv_attr::READLOCKED;
            let define_locked = *a & nv_attr::WRITEDEFINE != 0 && *a & nv_attr::WRITTEN != 0;
            if !define_locked && *a & (nv_attr::WRITE_STCLEAR | nv_attr::GLOBALLOCK) != 0 {
                *a &= !nv_attr::WRITELOCKED;
            }
            if *a & nv_attr::CLEAR_STCLEAR != 0 {
                *a &= !nv_attr::WRITTEN;
            }
        }
    }
    tpm.vol.pcrs = pcrs;
    tpm.perm.shutdown = None;
    tpm.started = true;
    tpm.nv_changed();
    Ok(())
}

/// TPM2_Shutdown (Part 3, 9.4): record an orderly shutdown, and for STATE the PCRs to resume.
pub(crate) fn shutdown(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let shutdown_type: u16 = c.param()?;
    c.end_params()?;
    if shutdown_type != su::CLEAR && shutdown_type != su::STATE {
        return Err(Rc::VALUE.param(1));
    }
    let mut pcrs = Vec::new();
    if shutdown_type == su::STATE {
        for alg in HashAlg::ALL {
            for pcr in 0..PCR_COUNT {
                if ATTRIBUTES.get(pcr).is_some_and(|a| a.state_save) {
                    if let Some(v) = tpm.vol.pcrs.get(alg, pcr) {
                        pcrs.push((alg, pcr as u8, v.to_vec()));
                    }
                }
            }
        }
    }
    tpm.perm.shutdown = Some(ShutdownState {
        shutdown_type,
        pcrs,
        allocation: tpm.vol.pcrs.allocation,
        pcr_update_counter: tpm.vol.pcr_update_counter,
    });
    tpm.clock_safe = true;
    tpm.nv_changed();
    Ok(())
}

/// TPM2_SelfTest (Part 3, 10.2). The algorithms are software and were tested at build time.
pub(crate) fn self_test(_tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let full: u8 = c.param()?;
    c.end_params()?;
    if full > 1 {
        return Err(Rc::VALUE.param(1));
    }
    Ok(())
}

/// TPM2_IncrementalSelfTest (Part 3, 10.3): nothing is left to test.
pub(crate) fn incremental_self_test(_tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let _to_test: TpmlAlg = c.param()?;
    c.end_params()?;
    c.put(&TpmlAlg::default());
    Ok(())
}

/// TPM2_GetTestResult (Part 3, 10.4).
pub(crate) fn get_test_result(_tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    c.put(&Tpm2bMaxBuffer::default());
    c.put(&Rc::SUCCESS.0);
    Ok(())
}

/// TPM2_GetRandom (Part 3, 16.1): at most the size of the largest digest per call.
pub(crate) fn get_random(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let requested: u16 = c.param()?;
    c.end_params()?;
    let mut buf = vec![0u8; usize::from(requested).min(Tpm2bDigest::CAP)];
    tpm.random(&mut buf);
    c.put(&Tpm2bDigest(buf));
    Ok(())
}

/// TPM2_StirRandom (Part 3, 16.2): mix caller data into the DRBG as additional input.
pub(crate) fn stir_random(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let data: Tpm2bSensitiveData = c.param()?;
    c.end_params()?;
    tpm.drbg.reseed(data.as_slice(), b"StirRandom");
    Ok(())
}

/// TPM2_ReadClock (Part 3, 29.1).
pub(crate) fn read_clock(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    let time = u64::try_from(tpm.vol.init_at.elapsed().as_millis()).unwrap_or(u64::MAX);
    c.put(&TpmsTimeInfo {
        time,
        clock_info: TpmsClockInfo {
            clock: tpm.clock(),
            reset_count: tpm.perm.reset_count,
            restart_count: tpm.perm.restart_count,
            safe: u8::from(tpm.clock_safe),
        },
    });
    Ok(())
}

/// TPM2_TestParms (Part 3, 10.5): is this TPMT_PUBLIC_PARMS supported?
pub(crate) fn test_parms(_tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    // Each check fails as the corresponding unmarshal or validation does, on parameter 1.
    let check = |c: &mut Ctx<'_>| -> Result<(), Rc> {
        let object_type: u16 = c.param()?;
        match object_type {
            alg::KEYEDHASH => {
                let scheme: u16 = c.param()?;
                match scheme {
                    alg::HMAC => hash_alg(c.param()?)?,
                    alg::XOR => {
                        hash_alg(c.param()?)?;
                        let kdf: u16 = c.param()?;
                        if kdf != alg::KDF1_SP800_108 {
                            return Err(Rc::KDF);
                        }
                    }
                    alg::NULL => {}
                    _ => return Err(Rc::VALUE),
                }
            }
            alg::SYMCIPHER => sym_def(c, false)?,
            alg::RSA => {
                sym_def(c, true)?;
                asym_scheme(c, &[alg::RSASSA, alg::RSAPSS, alg::RSAES, alg::OAEP])?;
                let bits: u16 = c.param()?;
                let exponent: u32 = c.param()?;
                if bits != 2048 && bits != 3072 {
                    return Err(Rc::VALUE);
                }
                if exponent != 0 && exponent != 65537 {
                    return Err(Rc::VALUE);
                }
            }
            alg::ECC => {
                sym_def(c, true)?;
                asym_scheme(c, &[alg::ECDSA, alg::ECDH])?;
                let curve_id: u16 = c.param()?;
                if curve_id != curve::NIST_P256 && curve_id != curve::NIST_P384 {
                    return Err(Rc::CURVE);
                }
                let kdf: u16 = c.param()?;
                if kdf != alg::NULL {
                    return Err(Rc::KDF);
                }
            }
            _ => return Err(Rc::TYPE),
        }
        c.end_params()
    };
    check(c).map_err(|rc| {
        if rc.is_format_one() {
            rc.base().param(1)
        } else {
            rc
        }
    })
}

fn hash_alg(id: u16) -> Result<(), Rc> {
    HashAlg::from_id(id).map(|_| ()).ok_or(Rc::HASH)
}

/// TPMT_SYM_DEF_OBJECT: AES-128/256 in CFB mode, or NULL where allowed.
fn sym_def(c: &mut Ctx<'_>, null_ok: bool) -> Result<(), Rc> {
    let algorithm: u16 = c.param()?;
    match algorithm {
        alg::NULL if null_ok => Ok(()),
        alg::AES => {
            let bits: u16 = c.param()?;
            let mode: u16 = c.param()?;
            if bits != 128 && bits != 256 {
                return Err(Rc::KEY_SIZE);
            }
            if mode != alg::CFB {
                return Err(Rc::MODE);
            }
            Ok(())
        }
        _ => Err(Rc::SYMMETRIC),
    }
}

/// TPMT_RSA_SCHEME / TPMT_ECC_SCHEME: NULL, or one of `allowed` with a hash (none for RSAES).
fn asym_scheme(c: &mut Ctx<'_>, allowed: &[u16]) -> Result<(), Rc> {
    let scheme: u16 = c.param()?;
    if scheme == alg::NULL {
        return Ok(());
    }
    if !allowed.contains(&scheme) {
        return Err(Rc::SCHEME);
    }
    if scheme != alg::RSAES {
        hash_alg(c.param()?)?;
    }
    Ok(())
}
