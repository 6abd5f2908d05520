//! Hashing commands (Part 3, 15 and 17): Hash, hash and event sequences, FlushContext of
//! sequence objects, and the hashcheck tickets they produce.

use super::pcr::{check_extend_locality, extend_digests};
use super::Ctx;
use crate::engine::{Object, Tpm, MAX_LOADED_OBJECTS};
use crate::hash::{HashAlg, Hasher};
use crate::rc::Rc;
use crate::types::{
    alg, handle, st, Tpm2bDigest, Tpm2bMaxBuffer, TpmlDigestValues, TpmtHa, TpmtTkHashcheck,
    TPM_GENERATED_VALUE,
};

fn starts_with_generated_value(data: &[u8]) -> bool {
    data.get(..4) == Some(&TPM_GENERATED_VALUE.to_be_bytes()[..])
}

/// The proof value of a hierarchy that may carry tickets (TPMI_RH_HIERARCHY+).
fn hierarchy_proof(tpm: &Tpm, h: u32) -> Result<Option<&[u8; 64]>, Rc> {
    match h {
        handle::OWNER if tpm.vol.sh_enable => Ok(Some(&tpm.perm.storage_proof)),
        handle::ENDORSEMENT if tpm.vol.eh_enable => Ok(Some(&tpm.perm.endorsement_proof)),
        handle::PLATFORM if tpm.vol.ph_enable => Ok(Some(&tpm.perm.platform_proof)),
        handle::OWNER | handle::ENDORSEMENT | handle::PLATFORM => Err(Rc::HIERARCHY),
        handle::NULL => Ok(None),
        _ => Err(Rc::VALUE),
    }
}

/// TPMT_TK_HASHCHECK: HMAC(proof, TPM_ST_HASHCHECK || digest), or the NULL ticket.
fn hashcheck_ticket(proof: Option<&[u8; 64]>, hierarchy: u32, digest: &[u8]) -> TpmtTkHashcheck {
    match proof {
        Some(proof) => TpmtTkHashcheck {
            tag: st::HASHCHECK,
            hierarchy,
            digest: Tpm2bDigest(
                HashAlg::Sha256.hmac(proof, &[&st::HASHCHECK.to_be_bytes(), digest]),
            ),
        },
        None => TpmtTkHashcheck {
            tag: st::HASHCHECK,
            hierarchy: handle::NULL,
            digest: Tpm2bDigest::default(),
        },
    }
}

/// TPM2_Hash (Part 3, 15.4).
pub(crate) fn hash(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let data: Tpm2bMaxBuffer = c.param()?;
    let hash_alg: u16 = c.param()?;
    let hierarchy: u32 = c.param()?;
    c.end_params()?;
    let alg = HashAlg::from_id(hash_alg).ok_or(Rc::HASH.param(2))?;
    let proof = hierarchy_proof(tpm, hierarchy).map_err(|rc| rc.param(3))?;
    let digest = alg.digest(&[data.as_slice()]);
    let proof = if starts_with_generated_value(data.as_slice()) {
        None
    } else {
        proof
    };
    let ticket = hashcheck_ticket(proof, hierarchy, &digest);
    c.put(&Tpm2bDigest(digest));
    c.put(&ticket);
    Ok(())
}

/// TPM2_HashSequenceStart (Part 3, 17.3): TPM_ALG_NULL starts an event sequence.
pub(crate) fn hash_sequence_start(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let auth: Tpm2bDigest = c.param()?;
    let hash_alg: u16 = c.param()?;
    c.end_params()?;
    let object = if hash_alg == alg::NULL {
        Object::EventSequence {
            hashers: HashAlg::ALL.iter().map(|a| Hasher::new(*a)).collect(),
            auth: auth.0,
        }
    } else {
        let alg = HashAlg::from_id(hash_alg).ok_or(Rc::HASH.param(2))?;
        Object::HashSequence {
            hasher: Box::new(Hasher::new(alg)),
            auth: auth.0,
            ticket_ok: true,
            started: false,
        }
    };
    let h = free_transient_handle(tpm).ok_or(Rc::OBJECT_MEMORY)?;
    tpm.vol.objects.insert(h, object);
    c.out_handle = Some(h);
    Ok(())
}

fn free_transient_handle(tpm: &Tpm) -> Option<u32> {
    (0..MAX_LOADED_OBJECTS as u32)
        .map(|i| handle::TRANSIENT_FIRST + i)
        .find(|h| !tpm.vol.objects.contains_key(h))
}

fn feed(object: &mut Object, data: &[u8]) {
    match object {
        Object::HashSequence {
            hasher,
            ticket_ok,
            started,
            ..
        } => {
            if !*started && starts_with_generated_value(data) {
                *ticket_ok = false;
            }
            *started = true;
            hasher.update(data);
        }
        Object::EventSequence { hashers, .. } => hashers.iter_mut().for_each(|h| h.update(data)),
        Object::Key(_) => {}
    }
}

/// TPM2_SequenceUpdate (Part 3, 17.4).
pub(crate) fn sequence_update(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let buffer: Tpm2bMaxBuffer = c.param()?;
    c.end_params()?;
    let object = tpm
        .vol
        .objects
        .get_mut(&c.handle(0))
        .ok_or(Rc::HANDLE.handle(1))?;
    feed(object, buffer.as_slice());
    Ok(())
}

/// TPM2_SequenceComplete (Part 3, 17.5).
pub(crate) fn sequence_complete(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let buffer: Tpm2bMaxBuffer = c.param()?;
    let hierarchy: u32 = c.param()?;
    c.end_params()?;
    let h = c.handle(0);
    if !matches!(tpm.vol.objects.get(&h), Some(Object::HashSequence { .. })) {
        return Err(Rc::MODE.handle(1));
    }
    let proof = hierarchy_proof(tpm, hierarchy)
        .map_err(|rc| rc.param(2))?
        .copied();
    let Some(mut object) = tpm.vol.objects.remove(&h) else {
        return Err(Rc::HANDLE.handle(1));
    };
    feed(&mut object, buffer.as_slice());
    let Object::HashSequence {
        hasher, ticket_ok, ..
    } = object
    else {
        return Err(Rc::MODE.handle(1));
    };
    let digest = hasher.finish();
    let proof = if ticket_ok { proof } else { None };
    let ticket = hashcheck_ticket(proof.as_ref(), hierarchy, &digest);
    c.put(&Tpm2bDigest(digest));
    c.put(&ticket);
    Ok(())
}

/// TPM2_EventSequenceComplete (Part 3, 17.6): finish an event sequence and extend the PCR.
pub(crate) fn event_sequence_complete(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let buffer: Tpm2bMaxBuffer = c.param()?;
    c.end_params()?;
    let (pcr_handle, h) = (c.handle(0), c.handle(1));
    if !matches!(tpm.vol.objects.get(&h), Some(Object::EventSequence { .. })) {
        return Err(Rc::MODE.handle(2));
    }
    let pcr = if pcr_handle == handle::NULL {
        None
    } else {
        Some(pcr_handle as usize)
    };
    if let Some(pcr) = pcr {
        check_extend_locality(pcr, c.locality)?;
    }
    let Some(mut object) = tpm.vol.objects.remove(&h) else {
        return Err(Rc::HANDLE.handle(2));
    };
    feed(&mut object, buffer.as_slice());
    let Object::EventSequence { hashers, .. } = object else {
        return Err(Rc::MODE.handle(2));
    };
    let digests: Vec<TpmtHa> = hashers
        .into_iter()
        .map(|h| TpmtHa {
            alg: h.alg(),
            digest: h.finish(),
        })
        .collect();
    if let Some(pcr) = pcr {
        extend_digests(tpm, pcr, &digests);
    }
    c.put(&TpmlDigestValues(digests));
    Ok(())
}

/// TPM2_FlushContext (Part 3, 28.4), for transient objects.
pub(crate) fn flush_context(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let h: u32 = c.param()?;
    c.end_params()?;
    match handle::ht(h) {
        handle::HT_TRANSIENT => tpm
            .vol
            .objects
            .remove(&h)
            .map(|_| ())
            .ok_or(Rc::HANDLE.param(1)),
        handle::HT_HMAC_SESSION | handle::HT_POLICY_SESSION => tpm
            .vol
            .sessions
            .remove(&h)
            .map(|_| ())
            .ok_or(Rc::HANDLE.param(1)),
        _ => Err(Rc::VALUE.param(1)),
    }
}
