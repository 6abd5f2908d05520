//! Credential protection (TCG TPM 2.0 Part 1, 24): the TPM2B_ID_OBJECT and encrypted seed
//! that TPM2_MakeCredential produces and TPM2_ActivateCredential opens.
//!
//! Public so that a verifier makes its challenges with the same code the engine runs:
//! a verifier only ever has the EK's public area, never a TPM.

use crate::codec::{put_sized, Marshal, Reader, Unmarshal};
use crate::crypto::ByteSource;
use crate::hash::HashAlg;
use crate::kdf::kdfa;
use crate::keys::{self, KeyObject};
use crate::object::{SymDefObject, TpmtPublic};
use crate::rc::Rc;
use crate::session::aes_cfb;
use crate::types::Tpm2bDigest;

/// Where a credential operation failed: the caller maps it to a handle or parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// The protecting key is not a storage key (restricted decryption with a symmetric
    /// definition) or cannot encrypt: TPM_RC_TYPE/KEY on the key.
    Key(Rc),
    /// The credential value does not fit a TPM2B_DIGEST.
    Credential(Rc),
    /// The encrypted seed does not decrypt under the key.
    Secret(Rc),
    /// The ID object's HMAC does not match (wrong key, wrong name or tampered blob).
    Integrity(Rc),
}

/// The symmetric key and HMAC key a credential seed yields for `name` (Part 1, 24.4-24.5).
fn seed_keys(
    public: &TpmtPublic,
    seed: &[u8],
    name: &[u8],
) -> Result<(Vec<u8>, Vec<u8>, HashAlg), Rc> {
    let bits = match public.symmetric() {
        SymDefObject::Aes(bits) => bits,
        SymDefObject::Null => return Err(Rc::TYPE),
    };
    let alg = public.name_alg;
    Ok((
        kdfa(alg, seed, b"STORAGE", name, &[], u32::from(bits)),
        kdfa(alg, seed, b"INTEGRITY", &[], &[], (alg.size() * 8) as u32),
        alg,
    ))
}

/// Protect `credential` for the object named `object_name`, so that only the TPM holding
/// `key`'s private part (and the object) can recover it. Returns the TPM2B_ID_OBJECT and
/// TPM2B_ENCRYPTED_SECRET contents (without their size fields).
pub fn make(
    key: &KeyObject,
    credential: &[u8],
    object_name: &[u8],
    rng: &mut dyn ByteSource,
) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    if !key.public.is_storage() {
        return Err(CredentialError::Key(Rc::TYPE));
    }
    if credential.len() > Tpm2bDigest::CAP {
        return Err(CredentialError::Credential(Rc::SIZE));
    }
    let credential = Tpm2bDigest(credential.to_vec());
    let (seed, secret) =
        keys::encrypt_secret(key, keys::label::IDENTITY, rng).map_err(CredentialError::Key)?;
    let (sym, hmac_key, alg) =
        seed_keys(&key.public, &seed, object_name).map_err(CredentialError::Key)?;
    let mut enc = Vec::new();
    credential.marshal(&mut enc);
    aes_cfb(&sym, &[0u8; 16], &mut enc, true);
    let integrity = alg.hmac(&hmac_key, &[&enc, object_name]);
    let mut blob = Vec::new();
    put_sized(&mut blob, &integrity);
    blob.extend_from_slice(&enc);
    Ok((blob, secret))
}

/// [`make`] for a key known only by its public area, as a verifier holds an EK.
pub fn make_for_public(
    public: &TpmtPublic,
    credential: &[u8],
    object_name: &[u8],
    rng: &mut dyn ByteSource,
) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    let key = KeyObject {
        key: keys::material(public, None).map_err(CredentialError::Key)?,
        name: public.name(),
        qualified_name: Vec::new(),
        hierarchy: crate::types::handle::NULL,
        sensitive: None,
        public: public.clone(),
    };
    make(&key, credential, object_name, rng)
}

/// Recover the credential from an ID object and encrypted seed with `key`'s private part,
/// for the object named `object_name`.
pub fn activate(
    key: &KeyObject,
    id_object: &[u8],
    secret: &[u8],
    object_name: &[u8],
) -> Result<Vec<u8>, CredentialError> {
    if !key.public.is_storage() || key.sensitive.is_none() {
        return Err(CredentialError::Key(Rc::TYPE));
    }
    let seed = keys::decrypt_secret(key, keys::label::IDENTITY, secret)
        .map_err(CredentialError::Secret)?;
    let (sym, hmac_key, alg) =
        seed_keys(&key.public, &seed, object_name).map_err(CredentialError::Key)?;
    let mut r = Reader::new(id_object);
    let integrity = r
        .sized(64)
        .map_err(|_| CredentialError::Integrity(Rc::SIZE))?;
    let mut enc = r.rest().to_vec();
    if alg.hmac(&hmac_key, &[&enc, object_name]) != integrity {
        return Err(CredentialError::Integrity(Rc::INTEGRITY));
    }
    aes_cfb(&sym, &[0u8; 16], &mut enc, false);
    let credential =
        Tpm2bDigest::from_bytes(&enc).map_err(|_| CredentialError::Integrity(Rc::SIZE))?;
    Ok(credential.as_slice().to_vec())
}
