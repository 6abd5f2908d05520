//! TPM2_StartAuthSession (Part 3, 11.1).

use super::Ctx;
use crate::engine::Tpm;
use crate::hash::HashAlg;
use crate::rc::Rc;
use crate::session::{Session, SessionType, SymDef};
use crate::types::{handle, Tpm2bDigest};

/// TPM2B_ENCRYPTED_SECRET's largest size (an RSA-4096 ciphertext).
const MAX_ENCRYPTED_SECRET: usize = 512;

pub(crate) fn start_auth_session(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let nonce_caller: Tpm2bDigest = c.param()?;
    let encrypted_salt: Vec<u8> = {
        let s: crate::types::Tpm2bMaxBuffer = c.param()?;
        if s.len() > MAX_ENCRYPTED_SECRET {
            return Err(Rc::SIZE.param(2));
        }
        s.0
    };
    let session_type: u8 = c.param()?;
    let symmetric: SymDef = c.param()?;
    let auth_hash: u16 = c.param()?;
    c.end_params()?;
    let (tpm_key, bind) = (c.handle(0), c.handle(1));

    let kind = match session_type {
        0x00 => SessionType::Hmac,
        0x01 => SessionType::Policy,
        0x03 => SessionType::Trial,
        _ => return Err(Rc::VALUE.param(3)),
    };
    let hash = HashAlg::from_id(auth_hash).ok_or(Rc::HASH.param(5))?;
    if nonce_caller.len() < 16 || nonce_caller.len() > hash.size() {
        return Err(Rc::SIZE.param(1));
    }
    let salt = if tpm_key == handle::NULL {
        if !encrypted_salt.is_empty() {
            return Err(Rc::VALUE.param(2));
        }
        Vec::new()
    } else {
        tpm.decrypt_salt(tpm_key, &encrypted_salt)?
    };
    let bind = if bind == handle::NULL {
        None
    } else {
        let auth = tpm.entity_auth(bind).map_err(|rc| rc.handle(2))?;
        let name = tpm.entity_name(bind).map_err(|rc| rc.handle(2))?;
        Some((name, crate::engine::trim_zeros(&auth).to_vec()))
    };
    let h = tpm.free_session_handle(kind).ok_or(Rc::SESSION_MEMORY)?;
    let mut nonce_tpm = vec![0u8; hash.size()];
    tpm.random(&mut nonce_tpm);
    let session = Session::start(
        kind,
        hash,
        symmetric,
        nonce_caller.as_slice(),
        nonce_tpm.clone(),
        bind,
        &salt,
    );
    let mut session = session;
    session.start_time = tpm.time();
    tpm.vol.sessions.insert(h, session);
    c.out_handle = Some(h);
    c.put(&Tpm2bDigest(nonce_tpm));
    Ok(())
}
