//! The TPM's volatile state as a versioned blob, for suspend-to-disk, VM snapshots and live
//! migration (what swtpm calls the volatile and savestate blobs): PCRs, the PCR update
//! counter, loaded key objects and sessions, saved-session bookkeeping, hierarchy enables,
//! platform authorization, time, and whether TPM2_Startup has run. Hash and event sequences
//! are not carried (their running hash state is not exportable); they are dropped, as if
//! flushed. Decoding is strict and never panics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::codec::{put_sized, Marshal, Reader};
use crate::engine::{Object, Tpm, Volatile};
use crate::hash::HashAlg;
use crate::keys;
use crate::pcr::{PcrAllocation, PcrBanks};
use crate::state::StateError;
use crate::types::PCR_COUNT;

const MAGIC: &[u8; 8] = b"TLTPM2VS";
const VERSION: u32 = 1;

impl Tpm {
    /// Everything TPM2_Startup(STATE) would not bring back, so a VM resumed from a snapshot
    /// finds its TPM exactly as it left it.
    pub fn volatile_state(&self) -> Vec<u8> {
        let v = &self.vol;
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(MAGIC);
        VERSION.marshal(&mut out);
        u8::from(self.started).marshal(&mut out);
        u8::from(self.established()).marshal(&mut out);
        let time = u64::try_from(v.init_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        time.marshal(&mut out);
        for m in v.pcrs.allocation.0 {
            m.marshal(&mut out);
        }
        for alg in HashAlg::ALL {
            for pcr in 0..PCR_COUNT {
                if let Some(value) = v.pcrs.get(alg, pcr) {
                    out.extend_from_slice(value);
                }
            }
        }
        v.pcr_update_counter.marshal(&mut out);
        let flags = u8::from(v.ph_enable)
            | (u8::from(v.sh_enable) << 1)
            | (u8::from(v.eh_enable) << 2)
            | (u8::from(v.ph_enable_nv) << 3);
        flags.marshal(&mut out);
        put_sized(&mut out, &v.platform_auth);
        v.context_sequence.marshal(&mut out);
        let keys: Vec<(&u32, Vec<u8>)> = v
            .objects
            .iter()
            .filter_map(|(h, o)| match o {
                Object::Key(k) => Some((h, keys::encode_object(k))),
                _ => None,
            })
            .collect();
        (keys.len() as u32).marshal(&mut out);
        for (h, blob) in keys {
            h.marshal(&mut out);
            put_sized(&mut out, &blob);
        }
        (v.sessions.len() as u32).marshal(&mut out);
        for (h, s) in &v.sessions {
            h.marshal(&mut out);
            put_sized(&mut out, &crate::session::encode(s));
        }
        (v.saved_sessions.len() as u32).marshal(&mut out);
        for (h, seq) in &v.saved_sessions {
            h.marshal(&mut out);
            seq.marshal(&mut out);
        }
        out
    }

    /// Replace the volatile state with one from [`Tpm::volatile_state`] (of this TPM's
    /// permanent state). On error nothing changes.
    pub fn restore_volatile(&mut self, blob: &[u8]) -> Result<(), StateError> {
        let mut r = Reader::new(blob);
        let bad = |r: &Reader<'_>, what: &'static str| StateError::Malformed {
            offset: r.position(),
            what,
        };
        if r.take(8).map_err(|_| bad(&r, "too short for the header"))? != MAGIC {
            return Err(StateError::Malformed {
                offset: 0,
                what: "not a trustlaunch volatile TPM state",
            });
        }
        let version = r.u32().map_err(|_| bad(&r, "truncated version"))?;
        if version != VERSION {
            return Err(StateError::Version(version));
        }
        let flag = |r: &mut Reader<'_>| -> Result<bool, StateError> {
            match r.u8() {
                Ok(0) => Ok(false),
                Ok(1) => Ok(true),
                _ => Err(StateError::Malformed {
                    offset: r.position(),
                    what: "bad flag",
                }),
            }
        };
        let started = flag(&mut r)?;
        let established = flag(&mut r)?;
        let time = r.u64().map_err(|_| bad(&r, "truncated time"))?;
        let mut allocation = [0u32; 4];
        for m in &mut allocation {
            *m = r.u32().map_err(|_| bad(&r, "truncated PCR allocation"))?;
            if *m >> PCR_COUNT != 0 {
                return Err(bad(&r, "PCR allocation names PCRs this TPM lacks"));
            }
        }
        let mut pcrs = PcrBanks::new(PcrAllocation(allocation));
        for alg in HashAlg::ALL {
            for pcr in 0..PCR_COUNT {
                if pcrs.get(alg, pcr).is_some() {
                    let value = r
                        .take(alg.size())
                        .map_err(|_| bad(&r, "truncated PCR value"))?;
                    pcrs.set(alg, pcr, value);
                }
            }
        }
        let pcr_update_counter = r.u32().map_err(|_| bad(&r, "truncated PCR counter"))?;
        let flags = r.u8().map_err(|_| bad(&r, "truncated hierarchy flags"))?;
        if flags & !0x0F != 0 {
            return Err(bad(&r, "bad hierarchy flags"));
        }
        let platform_auth = r
            .sized(64)
            .map_err(|_| bad(&r, "bad platform authorization"))?
            .to_vec();
        let context_sequence = r.u64().map_err(|_| bad(&r, "truncated context sequence"))?;
        let mut objects = BTreeMap::new();
        let n = r.u32().map_err(|_| bad(&r, "truncated object count"))?;
        if n as usize > crate::engine::MAX_LOADED_OBJECTS {
            return Err(bad(&r, "too many objects"));
        }
        for _ in 0..n {
            let h = r.u32().map_err(|_| bad(&r, "truncated object handle"))?;
            let blob = r
                .sized(u16::MAX as usize)
                .map_err(|_| bad(&r, "bad object"))?;
            let o = keys::decode_object(blob).map_err(|_| bad(&r, "object does not decode"))?;
            if h >> 24 != 0x80 || objects.insert(h, Object::Key(Box::new(o))).is_some() {
                return Err(bad(&r, "bad or repeated object handle"));
            }
        }
        let mut sessions = BTreeMap::new();
        let n = r.u32().map_err(|_| bad(&r, "truncated session count"))?;
        if n as usize > crate::engine::MAX_SESSIONS_LOADED {
            return Err(bad(&r, "too many sessions"));
        }
        for _ in 0..n {
            let h = r.u32().map_err(|_| bad(&r, "truncated session handle"))?;
            let blob = r
                .sized(u16::MAX as usize)
                .map_err(|_| bad(&r, "bad session"))?;
            let s = crate::session::decode(blob).map_err(|_| bad(&r, "session does not decode"))?;
            if !matches!(h >> 24, 0x02 | 0x03) || sessions.insert(h, s).is_some() {
                return Err(bad(&r, "bad or repeated session handle"));
            }
        }
        let mut saved_sessions = BTreeMap::new();
        let n = r
            .u32()
            .map_err(|_| bad(&r, "truncated saved-session count"))?;
        if n as usize > crate::engine::MAX_SESSIONS_LOADED {
            return Err(bad(&r, "too many saved sessions"));
        }
        for _ in 0..n {
            let h = r
                .u32()
                .map_err(|_| bad(&r, "truncated saved-session handle"))?;
            let seq = r
                .u64()
                .map_err(|_| bad(&r, "truncated saved-session sequence"))?;
            saved_sessions.insert(h, seq);
        }
        if !r.is_empty() {
            return Err(bad(&r, "trailing bytes"));
        }
        let init_at = Instant::now()
            .checked_sub(Duration::from_millis(time))
            .unwrap_or_else(Instant::now);
        self.vol = Volatile {
            pcrs,
            pcr_update_counter,
            objects,
            sessions,
            saved_sessions,
            exclusive_audit: None,
            context_sequence,
            ph_enable: flags & 1 != 0,
            sh_enable: flags & 2 != 0,
            eh_enable: flags & 4 != 0,
            ph_enable_nv: flags & 8 != 0,
            platform_auth,
            init_at,
        };
        self.started = started;
        self.set_established(established);
        Ok(())
    }
}
