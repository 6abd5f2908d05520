//! TPM2_GetCapability (Part 3, 30.2): algorithms, handles, commands, PCR banks and
//! properties, fixed and variable TPM properties, ECC curves; paged with moreData.

use super::{Ctx, COMMANDS};
use crate::engine::{Tpm, MAX_LOADED_OBJECTS};
use crate::hash::HashAlg;
use crate::pcr::ATTRIBUTES;
use crate::rc::Rc;
use crate::types::{
    alg, cap, curve, handle, pt, pt_pcr, NvType, TpmlPcrSelection, TpmsPcrSelection,
    MAX_CAP_BUFFER, MAX_CAP_DATA, MAX_DIGEST_BUFFER, MAX_DIGEST_SIZE, MAX_NV_BUFFER_SIZE,
    MAX_NV_INDEX_SIZE, PCR_COUNT, PCR_SELECT_MAX,
};

/// Vendor identity reported in the fixed properties.
pub const MANUFACTURER: &[u8; 4] = b"TLCH";
pub const VENDOR_STRING: &[u8; 16] = b"trustlaunch vTPM";
/// Spec version implemented: Library 1.59 (revision 159), published 2019-11-08 (day 312).
const SPEC_REVISION: u32 = 159;
const SPEC_DAY_OF_YEAR: u32 = 312;
const SPEC_YEAR: u32 = 2019;
/// PC Client Platform TPM Profile, level 0 revision 1.05.
const PS_REVISION: u32 = 0x105;

/// TPMA_ALGORITHM bits.
const ASYMMETRIC: u32 = 1 << 0;
const SYMMETRIC: u32 = 1 << 1;
const HASH: u32 = 1 << 2;
const OBJECT: u32 = 1 << 3;
const SIGNING: u32 = 1 << 8;
const ENCRYPTING: u32 = 1 << 9;
const METHOD: u32 = 1 << 10;

/// Algorithms this TPM reports, sorted by id, with their TPMA_ALGORITHM.
const ALGORITHMS: &[(u16, u32)] = &[
    (alg::RSA, ASYMMETRIC | OBJECT),
    (alg::SHA1, HASH),
    (alg::HMAC, HASH | SIGNING),
    (alg::AES, SYMMETRIC),
    (alg::MGF1, HASH | METHOD),
    (alg::KEYEDHASH, HASH | OBJECT | SIGNING | ENCRYPTING),
    (alg::XOR, HASH | SYMMETRIC),
    (alg::SHA256, HASH),
    (alg::SHA384, HASH),
    (alg::SHA512, HASH),
    (alg::NULL, 0),
    (alg::RSASSA, ASYMMETRIC | SIGNING),
    (alg::RSAES, ASYMMETRIC | ENCRYPTING),
    (alg::RSAPSS, ASYMMETRIC | SIGNING),
    (alg::OAEP, ASYMMETRIC | ENCRYPTING),
    (alg::ECDSA, ASYMMETRIC | SIGNING),
    (alg::ECDH, ASYMMETRIC | METHOD),
    (alg::KDF1_SP800_56A, HASH | METHOD),
    (alg::KDF1_SP800_108, HASH | METHOD),
    (alg::ECC, ASYMMETRIC | OBJECT),
    (alg::SYMCIPHER, OBJECT),
    (alg::CFB, SYMMETRIC),
];

const CURVES: &[u16] = &[curve::NIST_P256, curve::NIST_P384];

fn str4(b: &[u8]) -> u32 {
    let mut v = [0u8; 4];
    for (d, s) in v.iter_mut().zip(b) {
        *d = *s;
    }
    u32::from_be_bytes(v)
}

/// TPM_PT_FIRMWARE_VERSION_1 and _2: major.minor and patch of this build.
pub(crate) fn firmware_version() -> (u32, u32) {
    let version: Vec<u32> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0))
        .collect();
    let v = |i: usize| version.get(i).copied().unwrap_or(0);
    ((v(0) << 16) | v(1), v(2) << 16)
}

/// Every TPM property in tag order, computed from the current state.
fn properties(tpm: &Tpm) -> Vec<(u32, u32)> {
    let version = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0))
        .collect::<Vec<_>>();
    let v = |i: usize| version.get(i).copied().unwrap_or(0);
    let nv_indices = tpm.perm.nv.len() as u32;
    let counters = tpm
        .perm
        .nv
        .values()
        .filter(|i| NvType::from_attributes(i.public.attributes) == Some(NvType::Counter))
        .count() as u32;
    let loaded = tpm.vol.objects.len() as u32;
    let sessions = tpm.vol.sessions.len() as u32;
    let max_sessions = crate::engine::MAX_SESSIONS_LOADED as u32;
    let permanent = u32::from(!tpm.perm.owner_auth.is_empty())
        | (u32::from(!tpm.perm.endorsement_auth.is_empty()) << 1)
        | (u32::from(!tpm.perm.lockout_auth.is_empty()) << 2)
        | (u32::from(tpm.perm.disable_clear) << 8)
        | (u32::from(tpm.perm.da.failed_tries >= tpm.perm.da.max_tries) << 9)
        | (1 << 10); // tpmGeneratedEPS
    let startup_clear = u32::from(tpm.vol.ph_enable)
        | (u32::from(tpm.vol.sh_enable) << 1)
        | (u32::from(tpm.vol.eh_enable) << 2)
        | (u32::from(tpm.vol.ph_enable_nv) << 3)
        | (u32::from(tpm.perm.shutdown.is_some()) << 31);
    let vendor = |i: usize| str4(VENDOR_STRING.get(i * 4..i * 4 + 4).unwrap_or(&[]));
    let nv_free =
        super::nv::MAX_NV_INDICES as u32 - nv_indices.min(super::nv::MAX_NV_INDICES as u32);
    vec![
        (pt::FAMILY_INDICATOR, str4(b"2.0\0")),
        (pt::LEVEL, 0),
        (pt::REVISION, SPEC_REVISION),
        (pt::DAY_OF_YEAR, SPEC_DAY_OF_YEAR),
        (pt::YEAR, SPEC_YEAR),
        (pt::MANUFACTURER, str4(MANUFACTURER)),
        (pt::VENDOR_STRING_1, vendor(0)),
        (pt::VENDOR_STRING_2, vendor(1)),
        (pt::VENDOR_STRING_3, vendor(2)),
        (pt::VENDOR_STRING_4, vendor(3)),
        (pt::VENDOR_TPM_TYPE, 1),
        (pt::FIRMWARE_VERSION_1, (v(0) << 16) | v(1)),
        (pt::FIRMWARE_VERSION_2, v(2) << 16),
        (pt::INPUT_BUFFER, MAX_DIGEST_BUFFER as u32),
        (pt::HR_TRANSIENT_MIN, MAX_LOADED_OBJECTS as u32),
        (pt::HR_PERSISTENT_MIN, 7),
        (pt::HR_LOADED_MIN, max_sessions),
        (pt::ACTIVE_SESSIONS_MAX, max_sessions),
        (pt::PCR_COUNT, PCR_COUNT as u32),
        (pt::PCR_SELECT_MIN, PCR_SELECT_MAX as u32),
        (pt::CONTEXT_GAP_MAX, 0xFFFF),
        (pt::NV_COUNTERS_MAX, 0),
        (pt::NV_INDEX_MAX, MAX_NV_INDEX_SIZE as u32),
        (pt::MEMORY, 0x6),
        (pt::CLOCK_UPDATE, 1 << 12),
        (pt::CONTEXT_HASH, u32::from(alg::SHA256)),
        (pt::CONTEXT_SYM, u32::from(alg::AES)),
        (pt::CONTEXT_SYM_SIZE, 256),
        (pt::ORDERLY_COUNT, 255),
        (pt::MAX_COMMAND_SIZE, tpm.io_buffer as u32),
        (pt::MAX_RESPONSE_SIZE, tpm.io_buffer as u32),
        (pt::MAX_DIGEST, MAX_DIGEST_SIZE as u32),
        (pt::MAX_OBJECT_CONTEXT, 2048),
        (pt::MAX_SESSION_CONTEXT, 256),
        (pt::PS_FAMILY_INDICATOR, 1),
        (pt::PS_LEVEL, 0),
        (pt::PS_REVISION, PS_REVISION),
        (pt::PS_DAY_OF_YEAR, 0),
        (pt::PS_YEAR, 0),
        (pt::SPLIT_MAX, 128),
        (pt::TOTAL_COMMANDS, COMMANDS.len() as u32),
        (pt::LIBRARY_COMMANDS, COMMANDS.len() as u32),
        (pt::VENDOR_COMMANDS, 0),
        (pt::NV_BUFFER_MAX, MAX_NV_BUFFER_SIZE as u32),
        (pt::MODES, 0),
        (pt::MAX_CAP_BUFFER, MAX_CAP_BUFFER as u32),
        (pt::PERMANENT, permanent),
        (pt::STARTUP_CLEAR, startup_clear),
        (pt::HR_NV_INDEX, nv_indices),
        (pt::HR_LOADED, loaded),
        (
            pt::HR_LOADED_AVAIL,
            MAX_LOADED_OBJECTS as u32 - loaded.min(MAX_LOADED_OBJECTS as u32),
        ),
        (pt::HR_ACTIVE, sessions),
        (
            pt::HR_ACTIVE_AVAIL,
            max_sessions - sessions.min(max_sessions),
        ),
        (
            pt::HR_TRANSIENT_AVAIL,
            MAX_LOADED_OBJECTS as u32 - loaded.min(MAX_LOADED_OBJECTS as u32),
        ),
        (pt::HR_PERSISTENT, tpm.perm.persistent.len() as u32),
        (
            pt::HR_PERSISTENT_AVAIL,
            (super::object::MAX_PERSISTENT
                - tpm.perm.persistent.len().min(super::object::MAX_PERSISTENT)) as u32,
        ),
        (pt::NV_COUNTERS, counters),
        (pt::NV_COUNTERS_AVAIL, nv_free),
        (pt::ALGORITHM_SET, 0),
        (pt::LOADED_CURVES, CURVES.len() as u32),
        (pt::LOCKOUT_COUNTER, tpm.perm.da.failed_tries),
        (pt::MAX_AUTH_FAIL, tpm.perm.da.max_tries),
        (pt::LOCKOUT_INTERVAL, tpm.perm.da.recovery_time),
        (pt::LOCKOUT_RECOVERY, tpm.perm.da.lockout_recovery),
        (pt::NV_WRITE_RECOVERY, 0),
        (pt::AUDIT_COUNTER_0, 0),
        (pt::AUDIT_COUNTER_1, 0),
    ]
}

/// The handles of one type at or above `from`, in order.
fn handles(tpm: &Tpm, from: u32) -> Result<Vec<u32>, Rc> {
    let list: Vec<u32> = match handle::ht(from) {
        handle::HT_PCR => (0..PCR_COUNT as u32).collect(),
        handle::HT_NV_INDEX => tpm
            .perm
            .nv
            .iter()
            .filter(|(_, i)| tpm.nv_hierarchy_enabled(i.public.attributes).is_ok())
            .map(|(h, _)| *h)
            .collect(),
        handle::HT_TRANSIENT => tpm.vol.objects.keys().copied().collect(),
        handle::HT_PERMANENT => handle::PERMANENT.to_vec(),
        // TPM_HT_LOADED_SESSION (0x02) lists loaded sessions of both kinds, TPM_HT_SAVED_SESSION
        // (0x03) the saved ones (Part 2, 7.2).
        handle::HT_HMAC_SESSION => {
            let mut v: Vec<u32> = tpm
                .vol
                .sessions
                .keys()
                .map(|h| (h & 0x00FF_FFFF) | 0x0200_0000)
                .collect();
            v.sort_unstable();
            return Ok(v.into_iter().filter(|h| *h >= from).collect());
        }
        handle::HT_POLICY_SESSION => {
            let mut v: Vec<u32> = tpm
                .vol
                .saved_sessions
                .keys()
                .map(|h| (h & 0x00FF_FFFF) | 0x0200_0000)
                .collect();
            v.sort_unstable();
            let from = (from & 0x00FF_FFFF) | 0x0200_0000;
            return Ok(v.into_iter().filter(|h| *h >= from).collect());
        }
        handle::HT_PERSISTENT => tpm.perm.persistent.keys().copied().collect(),
        _ => return Err(Rc::VALUE.param(2)),
    };
    let ht = handle::ht(from);
    Ok(list
        .into_iter()
        .filter(|h| *h >= from && handle::ht(*h) == ht)
        .collect())
}

/// The TPML_TAGGED_PCR_PROPERTY entries: which PCRs have each PC Client attribute.
fn pcr_properties() -> Vec<(u32, u32)> {
    let mask = |f: &dyn Fn(usize) -> bool| {
        (0..PCR_COUNT)
            .filter(|p| f(*p))
            .fold(0u32, |m, p| m | (1 << p))
    };
    let mut v = vec![(
        pt_pcr::SAVE,
        mask(&|p| ATTRIBUTES.get(p).is_some_and(|a| a.state_save)),
    )];
    for loc in 0..=4u32 {
        v.push((
            pt_pcr::EXTEND_L0 + 2 * loc,
            mask(&|p| {
                ATTRIBUTES
                    .get(p)
                    .is_some_and(|a| a.extend_localities & (1 << loc) != 0)
            }),
        ));
        v.push((
            pt_pcr::RESET_L0 + 2 * loc,
            mask(&|p| {
                ATTRIBUTES
                    .get(p)
                    .is_some_and(|a| a.reset_localities & (1 << loc) != 0)
            }),
        ));
    }
    v.push((pt_pcr::NO_INCREMENT, crate::pcr::NO_INCREMENT));
    v.push((
        pt_pcr::DRTM_RESET,
        mask(&|p| {
            ATTRIBUTES
                .get(p)
                .is_some_and(|a| a.reset_localities & 0x10 != 0)
        }),
    ));
    v.push((pt_pcr::POLICY, 0));
    v.push((pt_pcr::AUTH, 0));
    v
}

/// Emit up to `count` (capped at `max`) items at or after `from`, and whether more remain.
fn page<T: Copy>(
    items: &[T],
    key: impl Fn(&T) -> u32,
    from: u32,
    count: u32,
    max: usize,
) -> (Vec<T>, bool) {
    let mut rest = items.iter().filter(|i| key(i) >= from);
    let n = (count as usize).min(max);
    let page: Vec<T> = rest.by_ref().take(n).copied().collect();
    (page, rest.next().is_some())
}

pub(crate) fn get_capability(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let capability: u32 = c.param()?;
    let property: u32 = c.param()?;
    let count: u32 = c.param()?;
    c.end_params()?;
    let mut body = Vec::new();
    let more = match capability {
        cap::ALGS => {
            let (items, more) = page(
                ALGORITHMS,
                |a| u32::from(a.0),
                property,
                count,
                MAX_CAP_DATA / 6,
            );
            (items.len() as u32)
                .to_be_bytes()
                .iter()
                .for_each(|b| body.push(*b));
            for (id, attrs) in items {
                body.extend_from_slice(&id.to_be_bytes());
                body.extend_from_slice(&attrs.to_be_bytes());
            }
            more
        }
        cap::HANDLES => {
            let list = handles(tpm, property)?;
            // Already at or above `property` (saved sessions are listed as 0x02xxxxxx handles).
            let (items, more) = page(&list, |h| *h, 0, count, MAX_CAP_DATA / 4);
            body.extend_from_slice(&(items.len() as u32).to_be_bytes());
            items
                .iter()
                .for_each(|h| body.extend_from_slice(&h.to_be_bytes()));
            more
        }
        cap::COMMANDS => {
            let attrs: Vec<u32> = COMMANDS.iter().map(|d| d.attributes()).collect();
            let (items, more) = page(
                &attrs,
                |a| a & 0xFFFF,
                property & 0xFFFF,
                count,
                MAX_CAP_DATA / 4,
            );
            body.extend_from_slice(&(items.len() as u32).to_be_bytes());
            items
                .iter()
                .for_each(|a| body.extend_from_slice(&a.to_be_bytes()));
            more
        }
        cap::PP_COMMANDS | cap::AUDIT_COMMANDS => {
            body.extend_from_slice(&0u32.to_be_bytes());
            false
        }
        cap::PCRS => {
            let sel = TpmlPcrSelection(
                HashAlg::ALL
                    .iter()
                    .map(|a| TpmsPcrSelection::from_mask(a.id(), tpm.vol.pcrs.allocation.mask(*a)))
                    .collect(),
            );
            crate::codec::Marshal::marshal(&sel, &mut body);
            false
        }
        cap::TPM_PROPERTIES => {
            let props = properties(tpm);
            let (items, more) = page(&props, |p| p.0, property, count, MAX_CAP_DATA / 8);
            body.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for (tag, value) in items {
                body.extend_from_slice(&tag.to_be_bytes());
                body.extend_from_slice(&value.to_be_bytes());
            }
            more
        }
        cap::PCR_PROPERTIES => {
            let props = pcr_properties();
            let (items, more) = page(&props, |p| p.0, property, count, MAX_CAP_DATA / 8);
            body.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for (tag, mask) in items {
                body.extend_from_slice(&tag.to_be_bytes());
                body.push(PCR_SELECT_MAX as u8);
                body.extend_from_slice(&mask.to_le_bytes()[..PCR_SELECT_MAX]);
            }
            more
        }
        cap::ECC_CURVES => {
            let (items, more) = page(CURVES, |c| u32::from(*c), property, count, MAX_CAP_DATA / 2);
            body.extend_from_slice(&(items.len() as u32).to_be_bytes());
            items
                .iter()
                .for_each(|c| body.extend_from_slice(&c.to_be_bytes()));
            more
        }
        cap::AUTH_POLICIES | cap::ACT => {
            body.extend_from_slice(&0u32.to_be_bytes());
            false
        }
        _ => return Err(Rc::VALUE.param(1)),
    };
    c.put(&u8::from(more));
    c.put(&capability);
    c.out.extend_from_slice(&body);
    Ok(())
}
