//! Signing, attestation and credential commands (Part 3, 12.5-12.6, 14, 15.5, 18, 20, 31.16):
//! Sign, VerifySignature, Quote, Certify, CertifyCreation, GetTime, NV_Certify,
//! MakeCredential, ActivateCredential, RSA_Encrypt/Decrypt, EncryptDecrypt2, HMAC.

use super::nv::nv_name;
use super::Ctx;
use crate::codec::{put_sized, Marshal, Reader, Unmarshal};
use crate::credential::{self, CredentialError};
use crate::crypto::ecc::{self, Curve, EccPublic};
use crate::engine::Tpm;
use crate::hash::HashAlg;
use crate::kdf::kdfa;
use crate::keys::{self, KeyMaterial, KeyObject, Signature};
use crate::object::{
    attr, PublicParms, Scheme, SymDefObject, Tpm2bData, Tpm2bEncryptedSecret, Tpm2bIdObject,
    Tpm2bPublicKeyRsa, SIGN_SCHEMES,
};
use crate::rc::Rc;
use crate::session::aes_cfb;
use crate::types::{
    alg, handle, nv_attr, st, Tpm2bDigest, Tpm2bMaxBuffer, Tpm2bMaxNvBuffer, Tpm2bName,
    TpmlPcrSelection, TpmsClockInfo, TpmsTimeInfo, TPM_GENERATED_VALUE,
};

/// TPM_ST_ATTEST_* (Part 2, 6.9).
mod attest_type {
    pub const NV: u16 = 0x8014;
    pub const CERTIFY: u16 = 0x8017;
    pub const QUOTE: u16 = 0x8018;
    pub const TIME: u16 = 0x8019;
    pub const CREATION: u16 = 0x801A;
    pub const SESSION_AUDIT: u16 = 0x8016;
}

/// TPMT_SIG_SCHEME (Part 2, 11.2.1.5) as a parameter.
struct SigScheme(Scheme);

impl Unmarshal for SigScheme {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        Scheme::read(r, SIGN_SCHEMES).map(SigScheme)
    }
}

/// TPMT_TK_* as a parameter: tag, hierarchy, digest.
struct Ticket {
    tag: u16,
    hierarchy: u32,
    digest: Vec<u8>,
}

impl Unmarshal for Ticket {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        Ok(Ticket {
            tag: r.u16()?,
            hierarchy: r.u32()?,
            digest: r.sized(64)?.to_vec(),
        })
    }
}

/// A signing key for an attestation (None for TPM_RH_NULL: the attestation is unsigned).
fn signer(tpm: &Tpm, h: u32, hn: u32) -> Result<Option<KeyObject>, Rc> {
    if h == handle::NULL {
        return Ok(None);
    }
    let k = tpm.key_object(h).map_err(|rc| rc.handle(hn))?;
    if !k.public.has(attr::SIGN_ENCRYPT) || k.sensitive.is_none() {
        return Err(Rc::KEY.handle(hn));
    }
    Ok(Some(k))
}

/// Build TPMS_ATTEST (Part 2, 10.12.12), obfuscating the reset and restart counts and the
/// firmware version for keys outside the endorsement and platform hierarchies (Part 3, 18.1).
fn attest(
    tpm: &Tpm,
    key: Option<&KeyObject>,
    kind: u16,
    extra_data: &[u8],
    attested: &[u8],
) -> Vec<u8> {
    let mut clock = TpmsClockInfo {
        clock: tpm.clock(),
        reset_count: tpm.perm.reset_count,
        restart_count: tpm.perm.restart_count,
        safe: u8::from(tpm.clock_safe),
    };
    let mut firmware = tpm.firmware_version();
    if let Some(k) = key {
        if k.hierarchy != handle::ENDORSEMENT && k.hierarchy != handle::PLATFORM {
            let o = kdfa(
                HashAlg::Sha256,
                &tpm.perm.storage_proof,
                b"OBFUSCATE",
                &k.name,
                &[],
                128,
            );
            let word = |i: usize, n: usize| {
                o.get(i..i + n).map_or(0u64, |b| {
                    b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x))
                })
            };
            firmware = firmware.wrapping_add(word(0, 8));
            clock.reset_count = clock.reset_count.wrapping_add(word(8, 4) as u32);
            clock.restart_count = clock.restart_count.wrapping_add(word(12, 4) as u32);
        }
    }
    let mut out = Vec::new();
    TPM_GENERATED_VALUE.marshal(&mut out);
    kind.marshal(&mut out);
    put_sized(
        &mut out,
        key.map(|k| k.qualified_name.as_slice()).unwrap_or(&[]),
    );
    put_sized(&mut out, extra_data);
    clock.marshal(&mut out);
    firmware.marshal(&mut out);
    out.extend_from_slice(attested);
    out
}

/// Sign an attestation structure and write TPM2B_ATTEST and TPMT_SIGNATURE.
fn sign_and_put(
    tpm: &mut Tpm,
    c: &mut Ctx<'_>,
    key: Option<&KeyObject>,
    scheme: Scheme,
    attest: &[u8],
) -> Result<(), Rc> {
    put_sized(&mut c.out, attest);
    match key {
        None => alg::NULL.marshal(&mut c.out),
        Some(k) => {
            let hash = scheme.hash.ok_or(Rc::SCHEME)?;
            let digest = hash.digest(&[attest]);
            let mut rng = |b: &mut [u8]| tpm.random(b);
            keys::sign(k, scheme, &digest, &mut rng)?.marshal(&mut c.out);
        }
    }
    Ok(())
}

fn scheme_for(key: Option<&KeyObject>, requested: Scheme, pn: u32) -> Result<Scheme, Rc> {
    match key {
        None => Ok(Scheme::NULL),
        Some(k) => {
            if k.public.has(attr::RESTRICTED)
                && matches!(k.public.parms, PublicParms::KeyedHash { .. })
            {
                return Err(Rc::KEY.handle(1));
            }
            keys::select_scheme(&k.public, requested).map_err(|rc| rc.param(pn))
        }
    }
}

/// TPM2_Quote (Part 3, 18.4).
pub(crate) fn quote(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let qualifying: Tpm2bData = c.param()?;
    let in_scheme: SigScheme = c.param()?;
    let selection: TpmlPcrSelection = c.param()?;
    c.end_params()?;
    let key = signer(tpm, c.handle(0), 1)?;
    let scheme = scheme_for(key.as_ref(), in_scheme.0, 2)?;
    let hash = scheme.hash.unwrap_or(HashAlg::Sha256);
    for s in &selection.0 {
        HashAlg::from_id(s.hash).ok_or(Rc::HASH.param(3))?;
    }
    let digest = tpm.pcr_digest(hash, &selection)?;
    let mut attested = Vec::new();
    selection.marshal(&mut attested);
    put_sized(&mut attested, &digest);
    let a = attest(
        tpm,
        key.as_ref(),
        attest_type::QUOTE,
        qualifying.as_slice(),
        &attested,
    );
    sign_and_put(tpm, c, key.as_ref(), scheme, &a)
}

/// TPM2_Certify (Part 3, 18.2).
pub(crate) fn certify(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let qualifying: Tpm2bData = c.param()?;
    let in_scheme: SigScheme = c.param()?;
    c.end_params()?;
    let object = tpm.key_object(c.handle(0)).map_err(|rc| rc.handle(1))?;
    let key = signer(tpm, c.handle(1), 2)?;
    let scheme = scheme_for(key.as_ref(), in_scheme.0, 2)?;
    let mut attested = Vec::new();
    Tpm2bName(object.name.clone()).marshal(&mut attested);
    Tpm2bName(object.qualified_name.clone()).marshal(&mut attested);
    let a = attest(
        tpm,
        key.as_ref(),
        attest_type::CERTIFY,
        qualifying.as_slice(),
        &attested,
    );
    sign_and_put(tpm, c, key.as_ref(), scheme, &a)
}

/// TPM2_CertifyCreation (Part 3, 18.3): the creation ticket proves this TPM made the object.
pub(crate) fn certify_creation(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let qualifying: Tpm2bData = c.param()?;
    let creation_hash: Tpm2bDigest = c.param()?;
    let in_scheme: SigScheme = c.param()?;
    let ticket: Ticket = c.param()?;
    c.end_params()?;
    let key = signer(tpm, c.handle(0), 1)?;
    let object = tpm.key_object(c.handle(1)).map_err(|rc| rc.handle(2))?;
    let scheme = scheme_for(key.as_ref(), in_scheme.0, 3)?;
    if ticket.tag != st::CREATION
        || !tpm.ticket_valid(
            st::CREATION,
            ticket.hierarchy,
            &ticket.digest,
            &[&object.name, creation_hash.as_slice()],
        )
    {
        return Err(Rc::TICKET.param(4));
    }
    let mut attested = Vec::new();
    Tpm2bName(object.name.clone()).marshal(&mut attested);
    creation_hash.marshal(&mut attested);
    let a = attest(
        tpm,
        key.as_ref(),
        attest_type::CREATION,
        qualifying.as_slice(),
        &attested,
    );
    sign_and_put(tpm, c, key.as_ref(), scheme, &a)
}

/// TPM2_GetTime (Part 3, 18.7).
pub(crate) fn get_time(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let qualifying: Tpm2bData = c.param()?;
    let in_scheme: SigScheme = c.param()?;
    c.end_params()?;
    let key = signer(tpm, c.handle(1), 2)?;
    let scheme = scheme_for(key.as_ref(), in_scheme.0, 2)?;
    let time = u64::try_from(tpm.vol.init_at.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut attested = Vec::new();
    TpmsTimeInfo {
        time,
        clock_info: TpmsClockInfo {
            clock: tpm.clock(),
            reset_count: tpm.perm.reset_count,
            restart_count: tpm.perm.restart_count,
            safe: u8::from(tpm.clock_safe),
        },
    }
    .marshal(&mut attested);
    tpm.firmware_version().marshal(&mut attested);
    let a = attest(
        tpm,
        key.as_ref(),
        attest_type::TIME,
        qualifying.as_slice(),
        &attested,
    );
    sign_and_put(tpm, c, key.as_ref(), scheme, &a)
}

/// TPM2_NV_Certify (Part 3, 31.16).
pub(crate) fn nv_certify(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let qualifying: Tpm2bData = c.param()?;
    let in_scheme: SigScheme = c.param()?;
    let size: u16 = c.param()?;
    let offset: u16 = c.param()?;
    c.end_params()?;
    let key = signer(tpm, c.handle(0), 1)?;
    let scheme = scheme_for(key.as_ref(), in_scheme.0, 2)?;
    let (auth_handle, nv_index) = (c.handle(1), c.handle(2));
    let idx = tpm.perm.nv.get(&nv_index).ok_or(Rc::HANDLE.handle(3))?;
    let attrs = idx.public.attributes;
    let readable = match auth_handle {
        handle::PLATFORM => attrs & nv_attr::PPREAD != 0,
        handle::OWNER => attrs & nv_attr::OWNERREAD != 0,
        h if h == nv_index => attrs & nv_attr::AUTHREAD != 0,
        _ => false,
    };
    if !readable {
        return Err(Rc::NV_AUTHORIZATION);
    }
    if attrs & nv_attr::READLOCKED != 0 {
        return Err(Rc::NV_LOCKED);
    }
    if attrs & nv_attr::WRITTEN == 0 {
        return Err(Rc::NV_UNINITIALIZED);
    }
    let end = usize::from(offset) + usize::from(size);
    let contents = idx
        .data
        .get(usize::from(offset)..end)
        .ok_or(Rc::NV_RANGE)?
        .to_vec();
    let mut attested = Vec::new();
    Tpm2bName(nv_name(&idx.public)).marshal(&mut attested);
    offset.marshal(&mut attested);
    Tpm2bMaxNvBuffer(contents).marshal(&mut attested);
    let a = attest(
        tpm,
        key.as_ref(),
        attest_type::NV,
        qualifying.as_slice(),
        &attested,
    );
    sign_and_put(tpm, c, key.as_ref(), scheme, &a)
}

/// TPM2_Sign (Part 3, 20.2): restricted keys sign only digests the TPM hashed itself.
pub(crate) fn sign(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let digest: Tpm2bDigest = c.param()?;
    let in_scheme: SigScheme = c.param()?;
    let validation: Ticket = c.param()?;
    c.end_params()?;
    let key = signer(tpm, c.handle(0), 1)?.ok_or(Rc::HANDLE.handle(1))?;
    let scheme = keys::select_scheme(&key.public, in_scheme.0).map_err(|rc| rc.param(2))?;
    let hash = scheme.hash.ok_or(Rc::SCHEME.param(2))?;
    if digest.len() != hash.size() {
        return Err(Rc::SIZE.param(1));
    }
    if key.public.has(attr::RESTRICTED) {
        let ok = validation.tag == st::HASHCHECK
            && tpm.ticket_valid(
                st::HASHCHECK,
                validation.hierarchy,
                &validation.digest,
                &[digest.as_slice()],
            );
        if !ok {
            return Err(Rc::TICKET.param(3));
        }
    }
    let mut rng = |b: &mut [u8]| tpm.random(b);
    let sig = keys::sign(&key, scheme, digest.as_slice(), &mut rng)?;
    sig.marshal(&mut c.out);
    Ok(())
}

/// TPM2_VerifySignature (Part 3, 20.1): a TPMT_TK_VERIFIED ticket for PolicyAuthorize.
pub(crate) fn verify_signature(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let digest: Tpm2bDigest = c.param()?;
    let sig = c.param_with(Signature::read)?;
    c.end_params()?;
    let key = tpm.key_object(c.handle(0)).map_err(|rc| rc.handle(1))?;
    if !key.public.has(attr::SIGN_ENCRYPT) {
        return Err(Rc::ATTRIBUTES.handle(1));
    }
    keys::verify(&key, digest.as_slice(), &sig).map_err(|rc| rc.param(2))?;
    let ticket = tpm.ticket(st::VERIFIED, key.hierarchy, &[digest.as_slice(), &key.name]);
    c.out.extend_from_slice(&ticket);
    Ok(())
}

/// TPM2_MakeCredential (Part 3, 12.6): done with the public key only (Part 1, 24).
pub(crate) fn make_credential(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let credential: Tpm2bDigest = c.param()?;
    let object_name: Tpm2bName = c.param()?;
    c.end_params()?;
    let key = tpm.key_object(c.handle(0)).map_err(|rc| rc.handle(1))?;
    let mut rng = |b: &mut [u8]| tpm.random(b);
    let (blob, secret) = credential::make(
        &key,
        credential.as_slice(),
        object_name.as_slice(),
        &mut rng,
    )
    .map_err(|e| match e {
        CredentialError::Credential(rc) => rc.param(1),
        CredentialError::Key(rc) | CredentialError::Secret(rc) | CredentialError::Integrity(rc) => {
            rc.handle(1)
        }
    })?;
    c.put(&Tpm2bIdObject(blob));
    c.put(&Tpm2bEncryptedSecret(secret));
    Ok(())
}

/// TPM2_ActivateCredential (Part 3, 12.5).
pub(crate) fn activate_credential(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let blob: Tpm2bIdObject = c.param()?;
    let secret: Tpm2bEncryptedSecret = c.param()?;
    c.end_params()?;
    let object = tpm.key_object(c.handle(0)).map_err(|rc| rc.handle(1))?;
    let key = tpm.key_object(c.handle(1)).map_err(|rc| rc.handle(2))?;
    let value = credential::activate(&key, blob.as_slice(), secret.as_slice(), &object.name)
        .map_err(|e| match e {
            CredentialError::Key(rc) => rc.handle(2),
            CredentialError::Secret(rc) => rc.param(2),
            CredentialError::Integrity(rc) | CredentialError::Credential(rc) => rc.param(1),
        })?;
    c.put(&Tpm2bDigest(value));
    Ok(())
}

/// TPMT_RSA_DECRYPT: the scheme an RSA encryption uses (key's own, or the caller's).
fn rsa_scheme(key: &KeyObject, requested: Scheme) -> Result<Scheme, Rc> {
    let PublicParms::Rsa { scheme, .. } = &key.public.parms else {
        return Err(Rc::KEY.handle(1));
    };
    if !key.public.has(attr::DECRYPT) || key.public.has(attr::RESTRICTED) {
        return Err(Rc::ATTRIBUTES.handle(1));
    }
    if scheme.scheme == alg::NULL {
        Ok(requested)
    } else if requested.scheme == alg::NULL || requested == *scheme {
        Ok(*scheme)
    } else {
        Err(Rc::SCHEME.param(2))
    }
}

struct RsaDecryptScheme(Scheme);

impl Unmarshal for RsaDecryptScheme {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        Scheme::read(r, &[alg::RSAES, alg::OAEP]).map(RsaDecryptScheme)
    }
}

/// A label as OAEP uses it: the given bytes, with a terminating zero added if missing.
fn oaep_label(label: &[u8]) -> Vec<u8> {
    if label.is_empty() || label.last() == Some(&0) {
        label.to_vec()
    } else {
        [label, &[0]].concat()
    }
}

/// TPM2_RSA_Encrypt (Part 3, 14.2).
pub(crate) fn rsa_encrypt(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let message: Tpm2bPublicKeyRsa = c.param()?;
    let in_scheme: RsaDecryptScheme = c.param()?;
    let label: Tpm2bData = c.param()?;
    c.end_params()?;
    let key = tpm.key_object(c.handle(0)).map_err(|rc| rc.handle(1))?;
    let scheme = rsa_scheme(&key, in_scheme.0)?;
    let public = match &key.key {
        KeyMaterial::RsaPrivate(k) => k.public(),
        KeyMaterial::RsaPublic(k) => k.clone(),
        _ => return Err(Rc::KEY.handle(1)),
    };
    let mut rng = |b: &mut [u8]| tpm.random(b);
    let out = match (scheme.scheme, scheme.hash) {
        (alg::OAEP, Some(h)) => public.encrypt_oaep(
            h,
            &oaep_label(label.as_slice()),
            message.as_slice(),
            &mut rng,
        ),
        (alg::RSAES, _) => public.encrypt_pkcs1(message.as_slice(), &mut rng),
        (alg::NULL, _) => public.encrypt_raw(message.as_slice()),
        _ => Err(Rc::SCHEME),
    }
    .map_err(|rc| rc.param(1))?;
    c.put(&Tpm2bPublicKeyRsa(out));
    Ok(())
}

/// TPM2_RSA_Decrypt (Part 3, 14.3).
pub(crate) fn rsa_decrypt(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let cipher: Tpm2bPublicKeyRsa = c.param()?;
    let in_scheme: RsaDecryptScheme = c.param()?;
    let label: Tpm2bData = c.param()?;
    c.end_params()?;
    let key = tpm.key_object(c.handle(0)).map_err(|rc| rc.handle(1))?;
    let scheme = rsa_scheme(&key, in_scheme.0)?;
    let KeyMaterial::RsaPrivate(k) = &key.key else {
        return Err(Rc::KEY.handle(1));
    };
    let out = match (scheme.scheme, scheme.hash) {
        (alg::OAEP, Some(h)) => k.decrypt_oaep(h, &oaep_label(label.as_slice()), cipher.as_slice()),
        (alg::RSAES, _) => k.decrypt_pkcs1(cipher.as_slice()),
        (alg::NULL, _) => k.decrypt_raw(cipher.as_slice()),
        _ => Err(Rc::SCHEME),
    }
    .map_err(|_| Rc::VALUE.param(1))?;
    c.put(&Tpm2bPublicKeyRsa(out));
    Ok(())
}

/// TPM2_EncryptDecrypt2 (Part 3, 15.3): AES-CFB with a SYMCIPHER key.
pub(crate) fn encrypt_decrypt2(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let data: Tpm2bMaxBuffer = c.param()?;
    let decrypt: u8 = c.param()?;
    let mode: u16 = c.param()?;
    let iv: Tpm2bDigest = c.param()?;
    c.end_params()?;
    if decrypt > 1 {
        return Err(Rc::VALUE.param(2));
    }
    let key = tpm.key_object(c.handle(0)).map_err(|rc| rc.handle(1))?;
    let PublicParms::SymCipher {
        sym: SymDefObject::Aes(_),
        ..
    } = key.public.parms
    else {
        return Err(Rc::KEY.handle(1));
    };
    if key.public.has(attr::RESTRICTED) {
        return Err(Rc::ATTRIBUTES.handle(1));
    }
    let allowed = if decrypt == 1 {
        attr::DECRYPT
    } else {
        attr::SIGN_ENCRYPT
    };
    if !key.public.has(allowed) {
        return Err(Rc::ATTRIBUTES.handle(1));
    }
    if mode != alg::CFB && mode != alg::NULL {
        return Err(Rc::MODE.param(3));
    }
    if iv.len() != 16 {
        return Err(Rc::SIZE.param(4));
    }
    let secret = key
        .sensitive
        .as_ref()
        .map(|s| s.sensitive.clone())
        .ok_or(Rc::KEY.handle(1))?;
    let mut out = data.0.clone();
    aes_cfb(&secret, iv.as_slice(), &mut out, decrypt == 0);
    // The chained IV for CFB is the last full ciphertext block.
    let ciphertext = if decrypt == 1 { &data.0 } else { &out };
    let iv_out = if ciphertext.len() >= 16 {
        ciphertext
            .get(ciphertext.len() - 16..)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    } else {
        iv.0.clone()
    };
    c.put(&Tpm2bMaxBuffer(out));
    c.put(&Tpm2bDigest(iv_out));
    Ok(())
}

/// TPM2_HMAC (Part 3, 15.5).
pub(crate) fn hmac(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let buffer: Tpm2bMaxBuffer = c.param()?;
    let hash_alg: u16 = c.param()?;
    c.end_params()?;
    let key = tpm.key_object(c.handle(0)).map_err(|rc| rc.handle(1))?;
    let PublicParms::KeyedHash { scheme, .. } = &key.public.parms else {
        return Err(Rc::TYPE.handle(1));
    };
    if !key.public.has(attr::SIGN_ENCRYPT) || key.public.has(attr::RESTRICTED) {
        return Err(Rc::ATTRIBUTES.handle(1));
    }
    let hash = match (scheme.hash, hash_alg) {
        (Some(h), a) if a == alg::NULL || a == h.id() => h,
        (None, a) => HashAlg::from_id(a).ok_or(Rc::HASH.param(2))?,
        _ => return Err(Rc::VALUE.param(2)),
    };
    let secret = key
        .sensitive
        .as_ref()
        .map(|s| s.sensitive.clone())
        .ok_or(Rc::KEY.handle(1))?;
    c.put(&Tpm2bDigest(hash.hmac(&secret, &[buffer.as_slice()])));
    Ok(())
}

/// TPM2B_ECC_POINT (Part 2, 11.2.5.3): a size, then x and y as TPM2B_ECC_PARAMETERs.
fn put_point(out: &mut Vec<u8>, p: &EccPublic) {
    let mut inner = Vec::new();
    put_sized(&mut inner, &p.x());
    put_sized(&mut inner, &p.y());
    put_sized(out, &inner);
}

fn read_point(r: &mut Reader<'_>, curve: Curve) -> Result<EccPublic, Rc> {
    let inner = r.sized(2 + 66 + 2 + 66)?;
    let mut r = Reader::new(inner);
    let x = r.sized(66)?;
    let y = r.sized(66)?;
    if !r.is_empty() {
        return Err(Rc::SIZE);
    }
    EccPublic::new(curve, x, y).map_err(|_| Rc::ECC_POINT)
}

/// The curve of an ECC key usable for ECDH (decrypt, scheme ECDH or NULL).
fn ecdh_curve(key: &KeyObject) -> Result<Curve, Rc> {
    let PublicParms::Ecc { curve, scheme, .. } = &key.public.parms else {
        return Err(Rc::KEY.handle(1));
    };
    if !key.public.has(attr::DECRYPT) {
        return Err(Rc::ATTRIBUTES.handle(1));
    }
    if scheme.scheme != alg::NULL && scheme.scheme != alg::ECDH {
        return Err(Rc::SCHEME.handle(1));
    }
    Curve::from_id(*curve).map_err(|rc| rc.handle(1))
}

/// TPM2_ECDH_KeyGen (Part 3, 14.4): an ephemeral key, and the point it shares with the key.
pub(crate) fn ecdh_keygen(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    let key = tpm.key_object(c.handle(0)).map_err(|rc| rc.handle(1))?;
    let curve = ecdh_curve(&key)?;
    let peer = match &key.key {
        KeyMaterial::EccPrivate(k) => k.public(),
        KeyMaterial::EccPublic(q) => q.clone(),
        _ => return Err(Rc::KEY.handle(1)),
    };
    let mut rng = |b: &mut [u8]| tpm.random(b);
    let ephemeral = ecc::generate(curve, &mut rng)?;
    let z = ephemeral.multiply(&peer)?;
    put_point(&mut c.out, &z);
    put_point(&mut c.out, &ephemeral.public());
    Ok(())
}

/// TPM2_ECDH_ZGen (Part 3, 14.5): d·Q for a caller's point with a loaded private key.
pub(crate) fn ecdh_zgen(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let key = tpm.key_object(c.handle(0)).map_err(|rc| rc.handle(1))?;
    let curve = ecdh_curve(&key)?;
    if key.public.has(attr::RESTRICTED) {
        return Err(Rc::ATTRIBUTES.handle(1));
    }
    let point = c.param_with(|r| read_point(r, curve))?;
    c.end_params()?;
    let KeyMaterial::EccPrivate(k) = &key.key else {
        return Err(Rc::KEY.handle(1));
    };
    put_point(&mut c.out, &k.multiply(&point)?);
    Ok(())
}

/// TPM2_GetSessionAuditDigest (Part 3, 18.5): the audit digest of an HMAC session, signed.
pub(crate) fn get_session_audit_digest(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let qualifying: Tpm2bData = c.param()?;
    let in_scheme: SigScheme = c.param()?;
    c.end_params()?;
    let key = signer(tpm, c.handle(1), 2)?;
    let scheme = scheme_for(key.as_ref(), in_scheme.0, 2)?;
    let h = c.handle(2);
    let session = tpm.vol.sessions.get(&h).ok_or(Rc::HANDLE.handle(3))?;
    let digest = session.audit_digest.clone().ok_or(Rc::TYPE.handle(3))?;
    let mut attested = Vec::new();
    u8::from(tpm.vol.exclusive_audit == Some(h)).marshal(&mut attested);
    Tpm2bDigest(digest).marshal(&mut attested);
    let a = attest(
        tpm,
        key.as_ref(),
        attest_type::SESSION_AUDIT,
        qualifying.as_slice(),
        &attested,
    );
    sign_and_put(tpm, c, key.as_ref(), scheme, &a)
}
