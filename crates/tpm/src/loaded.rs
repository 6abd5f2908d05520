//! The TPM's object memory: hierarchies and their seeds and proofs, primary derivation with
//! a cache, transient and persistent key objects, tickets, PCR digests, and saved contexts.

use crate::codec::{put_sized, Marshal, Reader};
use crate::engine::{Object, Tpm, MAX_LOADED_OBJECTS};
use crate::hash::HashAlg;
use crate::kdf::kdfa;
use crate::keys::{self, KeyObject};
use crate::object::{SensitiveCreate, TpmtPublic};
use crate::rc::Rc;
use crate::session::aes_cfb;
use crate::types::{handle, TpmlPcrSelection, PCR_COUNT};

/// Derived primaries kept so a repeated CreatePrimary of one template is cheap.
pub(crate) const PRIMARY_CACHE: usize = 8;

impl Tpm {
    /// TPM_RC_HIERARCHY if the hierarchy is disabled; TPM_RC_VALUE if it is not one.
    pub(crate) fn hierarchy_enabled(&self, h: u32) -> Result<(), Rc> {
        let on = match h {
            handle::OWNER => self.vol.sh_enable,
            handle::ENDORSEMENT => self.vol.eh_enable,
            handle::PLATFORM => self.vol.ph_enable,
            handle::NULL => true,
            _ => return Err(Rc::VALUE),
        };
        if on {
            Ok(())
        } else {
            Err(Rc::HIERARCHY)
        }
    }

    fn hierarchy_seed(&self, h: u32) -> Result<[u8; 64], Rc> {
        match h {
            handle::OWNER => Ok(self.perm.storage_seed),
            handle::ENDORSEMENT => Ok(self.perm.endorsement_seed),
            handle::PLATFORM => Ok(self.perm.platform_seed),
            handle::NULL => Ok(self.perm.null_seed),
            _ => Err(Rc::VALUE),
        }
    }

    /// The proof value of a hierarchy (None for TPM_RH_NULL: its tickets are NULL tickets).
    pub(crate) fn proof(&self, h: u32) -> Option<[u8; 64]> {
        match h {
            handle::OWNER => Some(self.perm.storage_proof),
            handle::ENDORSEMENT => Some(self.perm.endorsement_proof),
            handle::PLATFORM => Some(self.perm.platform_proof),
            _ => None,
        }
    }

    /// A marshalled ticket (TPMT_TK_*, Part 2, 10.7): HMAC(proof, tag || parts), or the NULL
    /// ticket for the NULL hierarchy.
    pub(crate) fn ticket(&self, tag: u16, hierarchy: u32, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        tag.marshal(&mut out);
        match self.proof(hierarchy) {
            Some(proof) => {
                hierarchy.marshal(&mut out);
                let tag_bytes = tag.to_be_bytes();
                let mut all: Vec<&[u8]> = vec![&tag_bytes];
                all.extend_from_slice(parts);
                put_sized(&mut out, &HashAlg::Sha256.hmac(&proof, &all));
            }
            None => {
                handle::NULL.marshal(&mut out);
                put_sized(&mut out, &[]);
            }
        }
        out
    }

    /// Does a received ticket match what this TPM would issue?
    pub(crate) fn ticket_valid(
        &self,
        tag: u16,
        hierarchy: u32,
        digest: &[u8],
        parts: &[&[u8]],
    ) -> bool {
        let expected = self.ticket(tag, hierarchy, parts);
        let mut mine = Vec::new();
        tag.marshal(&mut mine);
        hierarchy.marshal(&mut mine);
        put_sized(&mut mine, digest);
        self.proof(hierarchy).is_some() && expected == mine
    }

    /// H_alg of the selected PCR values, bank by bank in selection order (Part 1, 17.6).
    pub(crate) fn pcr_digest(
        &self,
        alg: HashAlg,
        selection: &TpmlPcrSelection,
    ) -> Result<Vec<u8>, Rc> {
        if selection.0.is_empty() {
            return Ok(Vec::new());
        }
        let mut h = crate::hash::Hasher::new(alg);
        for s in &selection.0 {
            let bank = HashAlg::from_id(s.hash).ok_or(Rc::HASH)?;
            for pcr in 0..PCR_COUNT {
                if s.mask() & (1 << pcr) != 0 {
                    if let Some(v) = self.vol.pcrs.get(bank, pcr) {
                        h.update(v);
                    }
                }
            }
        }
        Ok(h.finish())
    }

    /// Derive (or fetch from the cache) the primary object for a template in a hierarchy.
    pub(crate) fn primary(
        &mut self,
        hierarchy: u32,
        template: &TpmtPublic,
        create: &SensitiveCreate,
    ) -> Result<KeyObject, Rc> {
        self.hierarchy_enabled(hierarchy)
            .map_err(|rc| rc.handle(1))?;
        let seed = self.hierarchy_seed(hierarchy).map_err(|rc| rc.handle(1))?;
        let key = HashAlg::Sha256.digest(&[
            &seed,
            &hierarchy.to_be_bytes(),
            &template.to_bytes(),
            &create.data,
        ]);
        let cached = self.primary_cache.iter().position(|(k, _)| *k == key);
        let mut object = match cached {
            Some(i) => {
                let entry = self.primary_cache.remove(i);
                self.primary_cache.push(entry.clone());
                entry.1
            }
            None => {
                let (public, sensitive, material) =
                    keys::derive_primary(&seed, template, create).map_err(|rc| rc.param(2))?;
                let name = public.name();
                let qualified_name = keys::qualified_name(&hierarchy.to_be_bytes(), &public, &name);
                let object = KeyObject {
                    public,
                    sensitive: Some(sensitive),
                    name,
                    qualified_name,
                    hierarchy,
                    key: material,
                };
                if self.primary_cache.len() >= PRIMARY_CACHE {
                    self.primary_cache.remove(0);
                }
                self.primary_cache.push((key, object.clone()));
                object
            }
        };
        if let Some(s) = object.sensitive.as_mut() {
            s.auth_value = crate::engine::trim_zeros(&create.user_auth).to_vec();
        }
        Ok(object)
    }

    /// Place an object in a free transient slot.
    pub(crate) fn load_object(&mut self, o: KeyObject) -> Result<u32, Rc> {
        let h = (0..MAX_LOADED_OBJECTS as u32)
            .map(|i| handle::TRANSIENT_FIRST + i)
            .find(|h| !self.vol.objects.contains_key(h))
            .ok_or(Rc::OBJECT_MEMORY)?;
        self.vol.objects.insert(h, Object::Key(Box::new(o)));
        Ok(h)
    }

    /// The key object behind a transient or persistent handle (TPM_RC_HANDLE if none).
    pub(crate) fn key_object(&self, h: u32) -> Result<KeyObject, Rc> {
        match handle::ht(h) {
            handle::HT_TRANSIENT => match self.vol.objects.get(&h) {
                Some(Object::Key(o)) => Ok((**o).clone()),
                _ => Err(Rc::HANDLE),
            },
            handle::HT_PERSISTENT => {
                let blob = self.perm.persistent.get(&h).ok_or(Rc::HANDLE)?;
                keys::decode_object(blob).map_err(|_| Rc::FAILURE)
            }
            _ => Err(Rc::HANDLE),
        }
    }

    /// Borrow a transient key object without cloning, for hot paths.
    pub(crate) fn with_key<T>(
        &self,
        h: u32,
        f: impl FnOnce(&KeyObject) -> Result<T, Rc>,
    ) -> Result<T, Rc> {
        match (handle::ht(h), self.vol.objects.get(&h)) {
            (handle::HT_TRANSIENT, Some(Object::Key(o))) => f(o),
            (handle::HT_TRANSIENT, _) => Err(Rc::HANDLE),
            _ => f(&self.key_object(h)?),
        }
    }

    /// The firmware version attestation structures carry (FIRMWARE_VERSION_1 || _2).
    pub(crate) fn firmware_version(&self) -> u64 {
        let (a, b) = crate::commands::firmware_version();
        (u64::from(a) << 32) | u64::from(b)
    }

    pub(crate) fn next_context_sequence(&mut self) -> u64 {
        self.vol.context_sequence = self.vol.context_sequence.wrapping_add(1);
        self.vol.context_sequence
    }

    fn context_keys(&self, sequence: u64, saved_handle: u32, hierarchy: u32) -> (Vec<u8>, Vec<u8>) {
        let ctx_u = [
            sequence.to_be_bytes().as_slice(),
            &saved_handle.to_be_bytes(),
        ]
        .concat();
        let ctx_v = hierarchy.to_be_bytes();
        let key = kdfa(
            HashAlg::Sha256,
            &self.perm.null_proof,
            b"CONTEXT",
            &ctx_u,
            &ctx_v,
            256 + 128,
        );
        let mac = kdfa(
            HashAlg::Sha256,
            &self.perm.null_proof,
            b"CONTEXT INTEGRITY",
            &ctx_u,
            &ctx_v,
            256,
        );
        (key, mac)
    }

    /// TPM2B_CONTEXT_DATA contents: HMAC || AES-256-CFB(payload), keyed per sequence,
    /// handle and hierarchy with a secret that changes at every TPM Reset (Part 1, 30.3).
    pub(crate) fn seal_context(
        &self,
        sequence: u64,
        saved_handle: u32,
        hierarchy: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let (key, mac) = self.context_keys(sequence, saved_handle, hierarchy);
        let (k, iv) = key.split_at(32);
        let mut enc = payload.to_vec();
        aes_cfb(k, iv, &mut enc, true);
        let integrity = HashAlg::Sha256.hmac(&mac, &[&enc]);
        let mut out = Vec::with_capacity(34 + enc.len());
        put_sized(&mut out, &integrity);
        out.extend_from_slice(&enc);
        out
    }

    /// Check and open a saved context: TPM_RC_INTEGRITY for any change or a stale context.
    pub(crate) fn open_context(
        &self,
        sequence: u64,
        saved_handle: u32,
        hierarchy: u32,
        blob: &[u8],
    ) -> Result<Vec<u8>, Rc> {
        let (key, mac) = self.context_keys(sequence, saved_handle, hierarchy);
        let mut r = Reader::new(blob);
        let integrity = r.sized(32).map_err(|_| Rc::INTEGRITY)?;
        let mut enc = r.rest().to_vec();
        if HashAlg::Sha256.hmac(&mac, &[&enc]) != integrity {
            return Err(Rc::INTEGRITY);
        }
        let (k, iv) = key.split_at(32);
        aes_cfb(k, iv, &mut enc, false);
        Ok(enc)
    }
}
