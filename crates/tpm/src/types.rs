//! TPM 2.0 constants and structures (Part 2, "Structures"), named as the specification names
//! them. Wire values are plain integers so unknown values survive parsing and reach the
//! command that decides whether they are an error.

use crate::codec::{tpm2b, tpm_struct, Marshal, Reader, Unmarshal};
use crate::hash::HashAlg;
use crate::rc::Rc;

/// TPM_ST (Part 2, 6.9).
pub mod st {
    pub const RSP_COMMAND: u16 = 0x00C4;
    pub const NULL: u16 = 0x8000;
    pub const NO_SESSIONS: u16 = 0x8001;
    pub const SESSIONS: u16 = 0x8002;
    pub const CREATION: u16 = 0x8021;
    pub const VERIFIED: u16 = 0x8022;
    pub const AUTH_SECRET: u16 = 0x8023;
    pub const HASHCHECK: u16 = 0x8024;
    pub const AUTH_SIGNED: u16 = 0x8025;
}

/// TPM_SU (Part 2, 6.10).
pub mod su {
    pub const CLEAR: u16 = 0x0000;
    pub const STATE: u16 = 0x0001;
}

/// TPM_ALG_ID (Part 2, 6.3; TCG Algorithm Registry).
pub mod alg {
    pub const RSA: u16 = 0x0001;
    pub const SHA1: u16 = 0x0004;
    pub const HMAC: u16 = 0x0005;
    pub const AES: u16 = 0x0006;
    pub const MGF1: u16 = 0x0007;
    pub const KEYEDHASH: u16 = 0x0008;
    pub const XOR: u16 = 0x000A;
    pub const SHA256: u16 = 0x000B;
    pub const SHA384: u16 = 0x000C;
    pub const SHA512: u16 = 0x000D;
    pub const NULL: u16 = 0x0010;
    pub const RSASSA: u16 = 0x0014;
    pub const RSAES: u16 = 0x0015;
    pub const RSAPSS: u16 = 0x0016;
    pub const OAEP: u16 = 0x0017;
    pub const ECDSA: u16 = 0x0018;
    pub const ECDH: u16 = 0x0019;
    pub const KDF1_SP800_56A: u16 = 0x0020;
    pub const KDF1_SP800_108: u16 = 0x0022;
    pub const ECC: u16 = 0x0023;
    pub const SYMCIPHER: u16 = 0x0025;
    pub const CTR: u16 = 0x0040;
    pub const OFB: u16 = 0x0041;
    pub const CBC: u16 = 0x0042;
    pub const CFB: u16 = 0x0043;
    pub const ECB: u16 = 0x0044;
}

/// TPM_ECC_CURVE (Part 2, 6.4).
pub mod curve {
    pub const NIST_P256: u16 = 0x0003;
    pub const NIST_P384: u16 = 0x0004;
}

/// TPM_HANDLE ranges and permanent handles (Part 2, 7).
pub mod handle {
    pub const HR_SHIFT: u32 = 24;
    pub const HT_PCR: u8 = 0x00;
    pub const HT_NV_INDEX: u8 = 0x01;
    pub const HT_HMAC_SESSION: u8 = 0x02;
    pub const HT_POLICY_SESSION: u8 = 0x03;
    pub const HT_PERMANENT: u8 = 0x40;
    pub const HT_TRANSIENT: u8 = 0x80;
    pub const HT_PERSISTENT: u8 = 0x81;

    pub const TRANSIENT_FIRST: u32 = 0x8000_0000;
    pub const OWNER: u32 = 0x4000_0001;
    pub const NULL: u32 = 0x4000_0007;
    pub const UNASSIGNED: u32 = 0x4000_0008;
    pub const RS_PW: u32 = 0x4000_0009;
    pub const LOCKOUT: u32 = 0x4000_000A;
    pub const ENDORSEMENT: u32 = 0x4000_000B;
    pub const PLATFORM: u32 = 0x4000_000C;
    pub const PLATFORM_NV: u32 = 0x4000_000D;

    /// The permanent handles this TPM implements, in order (for GetCapability HANDLES).
    pub const PERMANENT: [u32; 7] = [
        OWNER,
        NULL,
        RS_PW,
        LOCKOUT,
        ENDORSEMENT,
        PLATFORM,
        PLATFORM_NV,
    ];

    /// The handle type: the most significant octet.
    pub const fn ht(h: u32) -> u8 {
        (h >> HR_SHIFT) as u8
    }
}

/// TPMA_NV bits (Part 2, 13.4).
pub mod nv_attr {
    pub const PPWRITE: u32 = 1 << 0;
    pub const OWNERWRITE: u32 = 1 << 1;
    pub const AUTHWRITE: u32 = 1 << 2;
    pub const POLICYWRITE: u32 = 1 << 3;
    pub const TPM_NT_SHIFT: u32 = 4;
    pub const TPM_NT_MASK: u32 = 0xF << 4;
    pub const POLICY_DELETE: u32 = 1 << 10;
    pub const WRITELOCKED: u32 = 1 << 11;
    pub const WRITEALL: u32 = 1 << 12;
    pub const WRITEDEFINE: u32 = 1 << 13;
    pub const WRITE_STCLEAR: u32 = 1 << 14;
    pub const GLOBALLOCK: u32 = 1 << 15;
    pub const PPREAD: u32 = 1 << 16;
    pub const OWNERREAD: u32 = 1 << 17;
    pub const AUTHREAD: u32 = 1 << 18;
    pub const POLICYREAD: u32 = 1 << 19;
    pub const NO_DA: u32 = 1 << 25;
    pub const ORDERLY: u32 = 1 << 26;
    pub const CLEAR_STCLEAR: u32 = 1 << 27;
    pub const READLOCKED: u32 = 1 << 28;
    pub const WRITTEN: u32 = 1 << 29;
    pub const PLATFORMCREATE: u32 = 1 << 30;
    pub const READ_STCLEAR: u32 = 1 << 31;
    /// Bits 8, 9 and 20-24 are reserved.
    pub const RESERVED: u32 = (0x3 << 8) | (0x1F << 20);
}

/// TPM_NT: the index type held in TPMA_NV bits 4-7 (Part 2, 13.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvType {
    Ordinary,
    Counter,
    Bits,
    Extend,
    PinFail,
    PinPass,
}

impl NvType {
    pub fn from_attributes(attributes: u32) -> Option<NvType> {
        match (attributes & nv_attr::TPM_NT_MASK) >> nv_attr::TPM_NT_SHIFT {
            0 => Some(NvType::Ordinary),
            1 => Some(NvType::Counter),
            2 => Some(NvType::Bits),
            4 => Some(NvType::Extend),
            8 => Some(NvType::PinFail),
            9 => Some(NvType::PinPass),
            _ => None,
        }
    }
}

/// TPMA_SESSION bits (Part 2, 8.4).
pub mod session_attr {
    pub const CONTINUE_SESSION: u8 = 1 << 0;
    pub const AUDIT_EXCLUSIVE: u8 = 1 << 1;
    pub const AUDIT_RESET: u8 = 1 << 2;
    pub const DECRYPT: u8 = 1 << 5;
    pub const ENCRYPT: u8 = 1 << 6;
    pub const AUDIT: u8 = 1 << 7;
}

/// TPM_CAP (Part 2, 6.12).
pub mod cap {
    pub const ALGS: u32 = 0;
    pub const HANDLES: u32 = 1;
    pub const COMMANDS: u32 = 2;
    pub const PP_COMMANDS: u32 = 3;
    pub const AUDIT_COMMANDS: u32 = 4;
    pub const PCRS: u32 = 5;
    pub const TPM_PROPERTIES: u32 = 6;
    pub const PCR_PROPERTIES: u32 = 7;
    pub const ECC_CURVES: u32 = 8;
    pub const AUTH_POLICIES: u32 = 9;
    pub const ACT: u32 = 10;
}

/// TPM_PT property tags (Part 2, 6.13).
pub mod pt {
    pub const FIXED: u32 = 0x100;
    pub const FAMILY_INDICATOR: u32 = FIXED;
    pub const LEVEL: u32 = FIXED + 1;
    pub const REVISION: u32 = FIXED + 2;
    pub const DAY_OF_YEAR: u32 = FIXED + 3;
    pub const YEAR: u32 = FIXED + 4;
    pub const MANUFACTURER: u32 = FIXED + 5;
    pub const VENDOR_STRING_1: u32 = FIXED + 6;
    pub const VENDOR_STRING_2: u32 = FIXED + 7;
    pub const VENDOR_STRING_3: u32 = FIXED + 8;
    pub const VENDOR_STRING_4: u32 = FIXED + 9;
    pub const VENDOR_TPM_TYPE: u32 = FIXED + 10;
    pub const FIRMWARE_VERSION_1: u32 = FIXED + 11;
    pub const FIRMWARE_VERSION_2: u32 = FIXED + 12;
    pub const INPUT_BUFFER: u32 = FIXED + 13;
    pub const HR_TRANSIENT_MIN: u32 = FIXED + 14;
    pub const HR_PERSISTENT_MIN: u32 = FIXED + 15;
    pub const HR_LOADED_MIN: u32 = FIXED + 16;
    pub const ACTIVE_SESSIONS_MAX: u32 = FIXED + 17;
    pub const PCR_COUNT: u32 = FIXED + 18;
    pub const PCR_SELECT_MIN: u32 = FIXED + 19;
    pub const CONTEXT_GAP_MAX: u32 = FIXED + 20;
    pub const NV_COUNTERS_MAX: u32 = FIXED + 22;
    pub const NV_INDEX_MAX: u32 = FIXED + 23;
    pub const MEMORY: u32 = FIXED + 24;
    pub const CLOCK_UPDATE: u32 = FIXED + 25;
    pub const CONTEXT_HASH: u32 = FIXED + 26;
    pub const CONTEXT_SYM: u32 = FIXED + 27;
    pub const CONTEXT_SYM_SIZE: u32 = FIXED + 28;
    pub const ORDERLY_COUNT: u32 = FIXED + 29;
    pub const MAX_COMMAND_SIZE: u32 = FIXED + 30;
    pub const MAX_RESPONSE_SIZE: u32 = FIXED + 31;
    pub const MAX_DIGEST: u32 = FIXED + 32;
    pub const MAX_OBJECT_CONTEXT: u32 = FIXED + 33;
    pub const MAX_SESSION_CONTEXT: u32 = FIXED + 34;
    pub const PS_FAMILY_INDICATOR: u32 = FIXED + 35;
    pub const PS_LEVEL: u32 = FIXED + 36;
    pub const PS_REVISION: u32 = FIXED + 37;
    pub const PS_DAY_OF_YEAR: u32 = FIXED + 38;
    pub const PS_YEAR: u32 = FIXED + 39;
    pub const SPLIT_MAX: u32 = FIXED + 40;
    pub const TOTAL_COMMANDS: u32 = FIXED + 41;
    pub const LIBRARY_COMMANDS: u32 = FIXED + 42;
    pub const VENDOR_COMMANDS: u32 = FIXED + 43;
    pub const NV_BUFFER_MAX: u32 = FIXED + 44;
    pub const MODES: u32 = FIXED + 45;
    pub const MAX_CAP_BUFFER: u32 = FIXED + 46;

    pub const VAR: u32 = 0x200;
    pub const PERMANENT: u32 = VAR;
    pub const STARTUP_CLEAR: u32 = VAR + 1;
    pub const HR_NV_INDEX: u32 = VAR + 2;
    pub const HR_LOADED: u32 = VAR + 3;
    pub const HR_LOADED_AVAIL: u32 = VAR + 4;
    pub const HR_ACTIVE: u32 = VAR + 5;
    pub const HR_ACTIVE_AVAIL: u32 = VAR + 6;
    pub const HR_TRANSIENT_AVAIL: u32 = VAR + 7;
    pub const HR_PERSISTENT: u32 = VAR + 8;
    pub const HR_PERSISTENT_AVAIL: u32 = VAR + 9;
    pub const NV_COUNTERS: u32 = VAR + 10;
    pub const NV_COUNTERS_AVAIL: u32 = VAR + 11;
    pub const ALGORITHM_SET: u32 = VAR + 12;
    pub const LOADED_CURVES: u32 = VAR + 13;
    pub const LOCKOUT_COUNTER: u32 = VAR + 14;
    pub const MAX_AUTH_FAIL: u32 = VAR + 15;
    pub const LOCKOUT_INTERVAL: u32 = VAR + 16;
    pub const LOCKOUT_RECOVERY: u32 = VAR + 17;
    pub const NV_WRITE_RECOVERY: u32 = VAR + 18;
    pub const AUDIT_COUNTER_0: u32 = VAR + 19;
    pub const AUDIT_COUNTER_1: u32 = VAR + 20;
}

/// TPM_PT_PCR property tags (Part 2, 6.14).
pub mod pt_pcr {
    pub const SAVE: u32 = 0x00;
    pub const EXTEND_L0: u32 = 0x01;
    pub const RESET_L0: u32 = 0x02;
    pub const EXTEND_L4: u32 = 0x09;
    pub const RESET_L4: u32 = 0x0A;
    pub const NO_INCREMENT: u32 = 0x11;
    pub const DRTM_RESET: u32 = 0x12;
    pub const POLICY: u32 = 0x13;
    pub const AUTH: u32 = 0x14;
}

/// The value every TPM-generated structure starts with (TPM_GENERATED_VALUE, Part 2, 6.2).
pub const TPM_GENERATED_VALUE: u32 = 0xFF54_4347;

/// Number of PCRs per bank (PC Client profile).
pub const PCR_COUNT: usize = 24;
/// Octets in a PCR select bitmap for PCR_COUNT PCRs.
pub const PCR_SELECT_MAX: usize = PCR_COUNT / 8;
/// Hash algorithms (and so PCR banks) this TPM implements.
pub const HASH_COUNT: usize = 4;
/// Largest digest (SHA-512).
pub const MAX_DIGEST_SIZE: usize = 64;
/// TPM2B_MAX_BUFFER / TPM2B_MAX_NV_BUFFER / TPM2B_EVENT sizes.
pub const MAX_DIGEST_BUFFER: usize = 1024;
pub const MAX_NV_BUFFER_SIZE: usize = 1024;
pub const MAX_EVENT_SIZE: usize = 1024;
/// Largest ordinary NV index (TPM_PT_NV_INDEX_MAX).
pub const MAX_NV_INDEX_SIZE: usize = 2048;
/// Bytes available for GetCapability data (MAX_CAP_BUFFER less the capability and moreData).
pub const MAX_CAP_BUFFER: usize = 1024;
pub const MAX_CAP_DATA: usize = MAX_CAP_BUFFER - 4 - 4;

tpm2b!(
    /// TPM2B_DIGEST (Part 2, 10.4.2); also TPM2B_AUTH and TPM2B_NONCE.
    Tpm2bDigest,
    MAX_DIGEST_SIZE
);
tpm2b!(
    /// TPM2B_MAX_BUFFER (Part 2, 10.4.8).
    Tpm2bMaxBuffer,
    MAX_DIGEST_BUFFER
);
tpm2b!(
    /// TPM2B_MAX_NV_BUFFER (Part 2, 10.4.9).
    Tpm2bMaxNvBuffer,
    MAX_NV_BUFFER_SIZE
);
tpm2b!(
    /// TPM2B_EVENT (Part 2, 10.4.7).
    Tpm2bEvent,
    MAX_EVENT_SIZE
);
tpm2b!(
    /// TPM2B_SENSITIVE_DATA (Part 2, 11.1.14).
    Tpm2bSensitiveData,
    128
);
tpm2b!(
    /// TPM2B_NAME (Part 2, 10.5.3).
    Tpm2bName,
    2 + MAX_DIGEST_SIZE
);

/// TPMS_PCR_SELECTION (Part 2, 10.6.2).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TpmsPcrSelection {
    pub hash: u16,
    /// `sizeofSelect` octets, PCR n at bit n%8 of octet n/8.
    pub select: Vec<u8>,
}

impl TpmsPcrSelection {
    /// The selection as a bitmask of PCR numbers below PCR_COUNT.
    pub fn mask(&self) -> u32 {
        self.select
            .iter()
            .take(PCR_SELECT_MAX)
            .enumerate()
            .fold(0u32, |m, (i, b)| m | (u32::from(*b) << (8 * i)))
    }

    pub fn from_mask(hash: u16, mask: u32) -> Self {
        TpmsPcrSelection {
            hash,
            select: mask.to_le_bytes()[..PCR_SELECT_MAX].to_vec(),
        }
    }
}

impl Marshal for TpmsPcrSelection {
    fn marshal(&self, out: &mut Vec<u8>) {
        self.hash.marshal(out);
        let n = self.select.len().min(255);
        out.push(n as u8);
        out.extend_from_slice(self.select.get(..n).unwrap_or(&[]));
    }
}

impl Unmarshal for TpmsPcrSelection {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        let hash = r.u16()?;
        let size = usize::from(r.u8()?);
        // sizeofSelect below PCR_SELECT_MIN or above PCR_SELECT_MAX is TPM_RC_VALUE; both are 3 here.
        if size != PCR_SELECT_MAX {
            return Err(Rc::VALUE);
        }
        Ok(TpmsPcrSelection {
            hash,
            select: r.take(size)?.to_vec(),
        })
    }
}

/// A TPML list: a u32 count, at most `$max`, then that many items.
macro_rules! tpml {
    ($(#[$doc:meta])* $name:ident, $item:ty, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Debug, Default)]
        pub struct $name(pub Vec<$item>);

        impl Marshal for $name {
            fn marshal(&self, out: &mut Vec<u8>) {
                (self.0.len() as u32).marshal(out);
                for item in &self.0 {
                    item.marshal(out);
                }
            }
        }

        impl Unmarshal for $name {
            fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
                let count = r.u32()? as usize;
                if count > $max {
                    return Err(Rc::SIZE);
                }
                let mut v = Vec::with_capacity(count);
                for _ in 0..count {
                    v.push(<$item>::unmarshal(r)?);
                }
                Ok($name(v))
            }
        }
    };
}

tpml!(
    /// TPML_PCR_SELECTION (Part 2, 10.9.7): at most HASH_COUNT selections.
    TpmlPcrSelection, TpmsPcrSelection, HASH_COUNT
);

/// TPMT_HA (Part 2, 10.3.2): a hash algorithm and a digest of exactly its size.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TpmtHa {
    pub alg: HashAlg,
    pub digest: Vec<u8>,
}

impl Marshal for TpmtHa {
    fn marshal(&self, out: &mut Vec<u8>) {
        self.alg.id().marshal(out);
        out.extend_from_slice(&self.digest);
    }
}

impl Unmarshal for TpmtHa {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        let alg = HashAlg::from_id(r.u16()?).ok_or(Rc::HASH)?;
        Ok(TpmtHa {
            alg,
            digest: r.take(alg.size())?.to_vec(),
        })
    }
}

tpml!(
    /// TPML_DIGEST_VALUES (Part 2, 10.9.8): at most HASH_COUNT digests.
    TpmlDigestValues, TpmtHa, HASH_COUNT
);

tpml!(
    /// TPML_DIGEST (Part 2, 10.9.3): at most 8 digests.
    TpmlDigest, Tpm2bDigest, 8
);

tpml!(
    /// TPML_ALG (Part 2, 10.9.2): at most MAX_ALG_LIST_SIZE (64) algorithm ids.
    TpmlAlg, u16, 64
);

tpm_struct!(
    /// TPMS_NV_PUBLIC (Part 2, 13.5).
    TpmsNvPublic {
        nv_index: u32,
        name_alg: u16,
        attributes: u32,
        auth_policy: Tpm2bDigest,
        data_size: u16,
    }
);

/// TPM2B_NV_PUBLIC (Part 2, 13.6): TPMS_NV_PUBLIC behind a u16 size.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Tpm2bNvPublic(pub TpmsNvPublic);

impl Marshal for Tpm2bNvPublic {
    fn marshal(&self, out: &mut Vec<u8>) {
        let inner = self.0.to_bytes();
        crate::codec::put_sized(out, &inner);
    }
}

impl Unmarshal for Tpm2bNvPublic {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        let size = usize::from(r.u16()?);
        if size == 0 {
            return Err(Rc::SIZE);
        }
        let inner = r.take(size)?;
        Ok(Tpm2bNvPublic(TpmsNvPublic::from_bytes(inner)?))
    }
}

tpm_struct!(
    /// TPMT_TK_HASHCHECK (Part 2, 10.7.6).
    TpmtTkHashcheck {
        tag: u16,
        hierarchy: u32,
        digest: Tpm2bDigest,
    }
);

tpm_struct!(
    /// TPMS_CLOCK_INFO (Part 2, 10.11.1).
    TpmsClockInfo {
        clock: u64,
        reset_count: u32,
        restart_count: u32,
        safe: u8,
    }
);

tpm_struct!(
    /// TPMS_TIME_INFO (Part 2, 10.11.6).
    TpmsTimeInfo {
        time: u64,
        clock_info: TpmsClockInfo,
    }
);

tpm_struct!(
    /// TPMS_AUTH_COMMAND (Part 2, 10.13.2).
    TpmsAuthCommand {
        session_handle: u32,
        nonce: Tpm2bDigest,
        session_attributes: u8,
        hmac: Tpm2bDigest,
    }
);

tpm_struct!(
    /// TPMS_AUTH_RESPONSE (Part 2, 10.13.3).
    TpmsAuthResponse {
        nonce: Tpm2bDigest,
        session_attributes: u8,
        hmac: Tpm2bDigest,
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip<T: Marshal + Unmarshal + PartialEq + std::fmt::Debug>(v: &T) {
        let bytes = v.to_bytes();
        assert_eq!(&T::from_bytes(&bytes).expect("unmarshal"), v);
        // Every proper prefix is rejected without panicking.
        for cut in 0..bytes.len() {
            assert!(
                T::from_bytes(&bytes[..cut]).is_err(),
                "prefix {cut} accepted"
            );
        }
    }

    #[test]
    fn nv_public_known_answer() {
        // TPMS_NV_PUBLIC for index 0x01500000, SHA-256, OWNERWRITE|OWNERREAD, no policy, 32 bytes.
        let v = TpmsNvPublic {
            nv_index: 0x0150_0000,
            name_alg: alg::SHA256,
            attributes: nv_attr::OWNERWRITE | nv_attr::OWNERREAD,
            auth_policy: Tpm2bDigest::default(),
            data_size: 32,
        };
        assert_eq!(hex::encode(v.to_bytes()), "01500000000b0002000200000020");
        assert_eq!(
            hex::encode(Tpm2bNvPublic(v.clone()).to_bytes()),
            "000e01500000000b0002000200000020"
        );
        round_trip(&v);
    }

    #[test]
    fn pcr_selection_known_answer() {
        // sha256: PCRs 0, 1, 7 and 16.
        let sel = TpmlPcrSelection(vec![TpmsPcrSelection::from_mask(alg::SHA256, 0x0001_0083)]);
        assert_eq!(hex::encode(sel.to_bytes()), "00000001000b03830001");
        assert_eq!(sel.0[0].mask(), 0x0001_0083);
        round_trip(&sel);
    }

    #[test]
    fn pcr_selection_rejects_bad_sizes() {
        assert_eq!(
            TpmsPcrSelection::from_bytes(&hex::decode("000b0201ff").expect("hex")),
            Err(Rc::VALUE)
        );
        assert_eq!(
            TpmsPcrSelection::from_bytes(&hex::decode("000b04000000ff").expect("hex")),
            Err(Rc::VALUE)
        );
        assert_eq!(
            TpmlPcrSelection::from_bytes(&hex::decode("00000005").expect("hex")),
            Err(Rc::SIZE)
        );
    }

    #[test]
    fn digest_values_known_answer() {
        let d = TpmlDigestValues(vec![TpmtHa {
            alg: HashAlg::Sha1,
            digest: vec![0xAB; 20],
        }]);
        assert_eq!(
            hex::encode(d.to_bytes()),
            format!("000000010004{}", "ab".repeat(20))
        );
        round_trip(&d);
    }

    #[test]
    fn time_info_known_answer() {
        let t = TpmsTimeInfo {
            time: 0x0102,
            clock_info: TpmsClockInfo {
                clock: 0x0304,
                reset_count: 5,
                restart_count: 6,
                safe: 1,
            },
        };
        assert_eq!(
            hex::encode(t.to_bytes()),
            "00000000000001020000000000000304000000050000000601"
        );
        round_trip(&t);
    }

    #[test]
    fn auth_command_known_answer() {
        let a = TpmsAuthCommand {
            session_handle: handle::RS_PW,
            nonce: Tpm2bDigest::default(),
            session_attributes: 1,
            hmac: Tpm2bDigest(b"pw".to_vec()),
        };
        assert_eq!(
            hex::encode(a.to_bytes()),
            "40000009000001000270 77".replace(' ', "")
        );
        round_trip(&a);
    }

    fn hash_alg() -> impl Strategy<Value = HashAlg> {
        prop_oneof![
            Just(HashAlg::Sha1),
            Just(HashAlg::Sha256),
            Just(HashAlg::Sha384),
            Just(HashAlg::Sha512)
        ]
    }

    proptest! {
        #[test]
        fn prop_pcr_selection(hash in any::<u16>(), mask in 0u32..(1 << 24)) {
            round_trip(&TpmlPcrSelection(vec![TpmsPcrSelection::from_mask(hash, mask)]));
        }

        #[test]
        fn prop_digest_values(algs in proptest::collection::vec(hash_alg(), 0..=HASH_COUNT), fill in any::<u8>()) {
            let v = TpmlDigestValues(algs.into_iter().map(|alg| TpmtHa { alg, digest: vec![fill; alg.size()] }).collect());
            round_trip(&v);
        }

        #[test]
        fn prop_nv_public(nv_index in any::<u32>(), name_alg in any::<u16>(), attributes in any::<u32>(),
                          policy in proptest::collection::vec(any::<u8>(), 0..=64), data_size in any::<u16>()) {
            let v = TpmsNvPublic { nv_index, name_alg, attributes, auth_policy: Tpm2bDigest(policy), data_size };
            round_trip(&v);
            round_trip(&Tpm2bNvPublic(v));
        }

        #[test]
        fn prop_tickets_and_clock(tag in any::<u16>(), hierarchy in any::<u32>(), d in proptest::collection::vec(any::<u8>(), 0..=64),
                                  clock in any::<u64>(), rc in any::<u32>(), rs in any::<u32>(), safe in any::<u8>()) {
            round_trip(&TpmtTkHashcheck { tag, hierarchy, digest: Tpm2bDigest(d) });
            round_trip(&TpmsTimeInfo { time: clock / 2, clock_info: TpmsClockInfo { clock, reset_count: rc, restart_count: rs, safe } });
        }

        #[test]
        fn prop_auth(h in any::<u32>(), n in proptest::collection::vec(any::<u8>(), 0..=64), a in any::<u8>(), m in proptest::collection::vec(any::<u8>(), 0..=64)) {
            round_trip(&TpmsAuthCommand { session_handle: h, nonce: Tpm2bDigest(n.clone()), session_attributes: a, hmac: Tpm2bDigest(m.clone()) });
            round_trip(&TpmsAuthResponse { nonce: Tpm2bDigest(n), session_attributes: a, hmac: Tpm2bDigest(m) });
        }

        #[test]
        fn prop_buffers(b in proptest::collection::vec(any::<u8>(), 0..=1024), algs in proptest::collection::vec(any::<u16>(), 0..=64)) {
            round_trip(&Tpm2bMaxBuffer(b.clone()));
            round_trip(&Tpm2bMaxNvBuffer(b.clone()));
            round_trip(&Tpm2bEvent(b));
            round_trip(&TpmlAlg(algs));
        }
    }
}
