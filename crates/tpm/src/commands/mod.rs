//! The command table: every implemented command declared once (code, handle types, how many
//! handles need authorization, response handle), dispatched by binary search and reported by
//! GetCapability(TPM_CAP_COMMANDS) from the same entries.

mod attest;
mod capability;
mod hashing;
mod hierarchy;
pub(crate) mod nv;
mod object;
pub(crate) use capability::firmware_version;
pub(crate) use nv::nv_name;
mod pcr;
mod policy;
mod session;
mod startup;

use crate::codec::{Marshal, Reader, Unmarshal};
use crate::engine::Tpm;
use crate::rc::Rc;
use crate::types::{handle, PCR_COUNT};

/// What a handle in the handle area may be (the TPMI_ type of Part 2 that unmarshals it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum HandleKind {
    /// TPMI_DH_PCR: PCR 0-23.
    Pcr,
    /// TPMI_DH_PCR+: a PCR or TPM_RH_NULL.
    PcrOrNull,
    /// TPMI_RH_PLATFORM.
    Platform,
    /// TPMI_RH_PROVISION: owner or platform.
    Provision,
    /// TPMI_RH_NV_AUTH: owner, platform or an NV index.
    NvAuth,
    /// TPMI_RH_NV_INDEX.
    NvIndex,
    /// TPMI_DH_OBJECT: a transient or persistent object.
    Object,
    /// TPMI_DH_OBJECT+: an object or TPM_RH_NULL.
    ObjectOrNull,
    /// TPMI_DH_ENTITY+: anything with an authorization value, or TPM_RH_NULL.
    Entity,
    /// TPMI_SH_POLICY: a policy session.
    PolicySession,
    /// TPMI_SH_HMAC: an HMAC session.
    HmacSession,
    /// TPMI_RH_HIERARCHY+: owner, endorsement, platform or null.
    Hierarchy,
    /// TPMI_RH_ENDORSEMENT.
    Endorsement,
    /// TPMI_RH_CLEAR: lockout or platform.
    Clear,
    /// TPMI_RH_HIERARCHY_AUTH: lockout, endorsement, owner or platform.
    HierarchyAuth,
    /// TPMI_RH_HIERARCHY without NULL: owner, endorsement or platform.
    BaseHierarchy,
    /// TPMI_RH_LOCKOUT.
    Lockout,
    /// TPMI_DH_PARENT+: an object or a hierarchy.
    Parent,
    /// TPMI_DH_CONTEXT: a session or a transient object.
    Context,
}

impl HandleKind {
    fn accepts(self, h: u32) -> bool {
        let ht = handle::ht(h);
        match self {
            HandleKind::Pcr => (h as usize) < PCR_COUNT,
            HandleKind::PcrOrNull => (h as usize) < PCR_COUNT || h == handle::NULL,
            HandleKind::Platform => h == handle::PLATFORM,
            HandleKind::Provision => h == handle::OWNER || h == handle::PLATFORM,
            HandleKind::NvAuth => {
                h == handle::OWNER || h == handle::PLATFORM || ht == handle::HT_NV_INDEX
            }
            HandleKind::NvIndex => ht == handle::HT_NV_INDEX,
            HandleKind::Object => ht == handle::HT_TRANSIENT || ht == handle::HT_PERSISTENT,
            HandleKind::PolicySession => ht == handle::HT_POLICY_SESSION,
            HandleKind::HmacSession => ht == handle::HT_HMAC_SESSION,
            HandleKind::Hierarchy => is_hierarchy(h),
            HandleKind::Endorsement => h == handle::ENDORSEMENT,
            HandleKind::Clear => h == handle::LOCKOUT || h == handle::PLATFORM,
            HandleKind::HierarchyAuth => {
                matches!(
                    h,
                    handle::LOCKOUT | handle::ENDORSEMENT | handle::OWNER | handle::PLATFORM
                )
            }
            HandleKind::BaseHierarchy => {
                matches!(h, handle::OWNER | handle::ENDORSEMENT | handle::PLATFORM)
            }
            HandleKind::Lockout => h == handle::LOCKOUT,
            HandleKind::Parent => {
                ht == handle::HT_TRANSIENT || ht == handle::HT_PERSISTENT || is_hierarchy(h)
            }
            HandleKind::Context => matches!(
                ht,
                handle::HT_HMAC_SESSION | handle::HT_POLICY_SESSION | handle::HT_TRANSIENT
            ),
            HandleKind::ObjectOrNull => {
                ht == handle::HT_TRANSIENT || ht == handle::HT_PERSISTENT || h == handle::NULL
            }
            HandleKind::Entity => matches!(
                ht,
                handle::HT_PCR
                    | handle::HT_NV_INDEX
                    | handle::HT_PERMANENT
                    | handle::HT_TRANSIENT
                    | handle::HT_PERSISTENT
            ),
        }
    }
}

fn is_hierarchy(h: u32) -> bool {
    matches!(
        h,
        handle::OWNER | handle::ENDORSEMENT | handle::PLATFORM | handle::NULL
    )
}

pub(crate) type Handler = fn(&mut Tpm, &mut Ctx<'_>) -> Result<(), Rc>;

/// One implemented command.
pub(crate) struct CommandDef {
    pub code: u32,
    pub name: &'static str,
    pub handles: u8,
    pub handle_kinds: [Option<HandleKind>; 3],
    /// The first `auth` handles need an authorization session.
    pub auth: u8,
    /// The authorized NV index handle has the ADMIN role (policy sessions only).
    pub admin: bool,
    pub r_handle: bool,
    /// The command may write NV (TPMA_CC.nv).
    pub nv: bool,
    /// Its first command parameter is a TPM2B that a session may encrypt.
    pub decrypt: bool,
    /// Its first response parameter is a TPM2B that a session may encrypt.
    pub encrypt: bool,
    pub handler: Handler,
}

impl CommandDef {
    /// TPMA_CC for GetCapability (Part 2, 8.9).
    pub fn attributes(&self) -> u32 {
        // TPMA_CC.extensive: commands that may flush many objects (as the reference marks them).
        let extensive = matches!(self.code, 0x124 | 0x125);
        (self.code & 0xFFFF)
            | (u32::from(extensive) << 23)
            | (u32::from(self.nv) << 22)
            | (u32::from(self.handles) << 25)
            | (u32::from(self.r_handle) << 28)
    }
}

pub(crate) const CC_STARTUP: u32 = 0x144;

macro_rules! commands {
    ($($code:literal $name:ident [$($kind:ident)*] auth $auth:literal $(admin $admin:literal)? rh $rh:literal nv $nv:literal dec $dec:literal enc $enc:literal => $handler:path;)*) => {
        pub(crate) static COMMANDS: &[CommandDef] = &[
            $(CommandDef {
                code: $code,
                name: stringify!($name),
                handles: commands!(@count $($kind)*),
                handle_kinds: commands!(@kinds $($kind)*),
                auth: $auth,
                admin: commands!(@admin $($admin)?),
                r_handle: $rh,
                nv: $nv,
                decrypt: $dec,
                encrypt: $enc,
                handler: $handler,
            },)*
        ];
    };
    (@count) => { 0 };
    (@count $a:ident) => { 1 };
    (@count $a:ident $b:ident) => { 2 };
    (@count $a:ident $b:ident $c:ident) => { 3 };
    (@kinds) => { [None, None, None] };
    (@kinds $a:ident) => { [Some(HandleKind::$a), None, None] };
    (@kinds $a:ident $b:ident) => { [Some(HandleKind::$a), Some(HandleKind::$b), None] };
    (@kinds $a:ident $b:ident $c:ident) => { [Some(HandleKind::$a), Some(HandleKind::$b), Some(HandleKind::$c)] };
    (@admin) => { false };
    (@admin $x:literal) => { $x };
}

// Sorted by command code (a test checks it). Codes: Part 2, 6.5.2.
commands! {
    0x120 EvictControl [Provision Object] auth 1 rh false nv true dec false enc false => object::evict_control;
    0x121 HierarchyControl [BaseHierarchy] auth 1 rh false nv true dec false enc false => hierarchy::hierarchy_control;
    0x122 NV_UndefineSpace [Provision NvIndex] auth 1 rh false nv true dec false enc false => nv::undefine_space;
    0x124 ChangeEPS [Platform] auth 1 rh false nv true dec false enc false => hierarchy::change_eps;
    0x125 ChangePPS [Platform] auth 1 rh false nv true dec false enc false => hierarchy::change_pps;
    0x126 Clear [Clear] auth 1 rh false nv true dec false enc false => hierarchy::clear;
    0x127 ClearControl [Clear] auth 1 rh false nv true dec false enc false => hierarchy::clear_control;
    0x129 HierarchyChangeAuth [HierarchyAuth] auth 1 rh false nv true dec true enc false => hierarchy::hierarchy_change_auth;
    0x12A NV_DefineSpace [Provision] auth 1 rh false nv true dec true enc false => nv::define_space;
    0x12B PCR_Allocate [Platform] auth 1 rh false nv true dec false enc false => pcr::allocate;
    0x131 CreatePrimary [Hierarchy] auth 1 rh true nv false dec true enc true => object::create_primary;
    0x132 NV_GlobalWriteLock [Provision] auth 1 rh false nv true dec false enc false => nv::global_write_lock;
    0x134 NV_Increment [NvAuth NvIndex] auth 1 rh false nv true dec false enc false => nv::increment;
    0x135 NV_SetBits [NvAuth NvIndex] auth 1 rh false nv true dec false enc false => nv::set_bits;
    0x136 NV_Extend [NvAuth NvIndex] auth 1 rh false nv true dec true enc false => nv::extend;
    0x137 NV_Write [NvAuth NvIndex] auth 1 rh false nv true dec true enc false => nv::write;
    0x138 NV_WriteLock [NvAuth NvIndex] auth 1 rh false nv true dec false enc false => nv::write_lock;
    0x139 DictionaryAttackLockReset [Lockout] auth 1 rh false nv true dec false enc false => hierarchy::dictionary_attack_lock_reset;
    0x13A DictionaryAttackParameters [Lockout] auth 1 rh false nv true dec false enc false => hierarchy::dictionary_attack_parameters;
    0x13B NV_ChangeAuth [NvIndex] auth 1 admin true rh false nv true dec true enc false => nv::change_auth;
    0x13C PCR_Event [PcrOrNull] auth 1 rh false nv false dec true enc false => pcr::event;
    0x13D PCR_Reset [Pcr] auth 1 rh false nv false dec false enc false => pcr::reset;
    0x13E SequenceComplete [Object] auth 1 rh false nv false dec true enc true => hashing::sequence_complete;
    0x142 IncrementalSelfTest [] auth 0 rh false nv false dec false enc false => startup::incremental_self_test;
    0x143 SelfTest [] auth 0 rh false nv false dec false enc false => startup::self_test;
    0x144 Startup [] auth 0 rh false nv true dec false enc false => startup::startup;
    0x145 Shutdown [] auth 0 rh false nv true dec false enc false => startup::shutdown;
    0x146 StirRandom [] auth 0 rh false nv false dec true enc false => startup::stir_random;
    0x147 ActivateCredential [Object Object] auth 2 admin true rh false nv false dec true enc true => attest::activate_credential;
    0x148 Certify [Object ObjectOrNull] auth 2 admin true rh false nv false dec true enc true => attest::certify;
    0x149 PolicyNV [NvAuth NvIndex PolicySession] auth 1 rh false nv false dec true enc false => policy::policy_nv;
    0x14A CertifyCreation [ObjectOrNull Object] auth 1 rh false nv false dec true enc true => attest::certify_creation;
    0x14C GetTime [Endorsement ObjectOrNull] auth 2 rh false nv false dec true enc true => attest::get_time;
    0x14D GetSessionAuditDigest [Endorsement ObjectOrNull HmacSession] auth 2 rh false nv false dec true enc true => attest::get_session_audit_digest;
    0x14E NV_Read [NvAuth NvIndex] auth 1 rh false nv false dec false enc true => nv::read;
    0x14F NV_ReadLock [NvAuth NvIndex] auth 1 rh false nv true dec false enc false => nv::read_lock;
    0x150 ObjectChangeAuth [Object Object] auth 1 admin true rh false nv false dec true enc true => object::object_change_auth;
    0x151 PolicySecret [Entity PolicySession] auth 1 rh false nv false dec true enc true => policy::policy_secret;
    0x153 Create [Object] auth 1 rh false nv false dec true enc true => object::create;
    0x154 ECDH_ZGen [Object] auth 1 rh false nv false dec true enc true => attest::ecdh_zgen;
    0x155 HMAC [Object] auth 1 rh false nv false dec true enc true => attest::hmac;
    0x157 Load [Object] auth 1 rh true nv false dec true enc true => object::load;
    0x158 Quote [ObjectOrNull] auth 1 rh false nv false dec true enc true => attest::quote;
    0x159 RSA_Decrypt [Object] auth 1 rh false nv false dec true enc true => attest::rsa_decrypt;
    0x15C SequenceUpdate [Object] auth 1 rh false nv false dec true enc false => hashing::sequence_update;
    0x15D Sign [Object] auth 1 rh false nv false dec true enc false => attest::sign;
    0x15E Unseal [Object] auth 1 rh false nv false dec false enc true => object::unseal;
    0x160 PolicySigned [Object PolicySession] auth 0 rh false nv false dec true enc true => policy::policy_signed;
    0x161 ContextLoad [] auth 0 rh true nv false dec false enc false => object::context_load;
    0x162 ContextSave [Context] auth 0 rh false nv false dec false enc false => object::context_save;
    0x163 ECDH_KeyGen [Object] auth 0 rh false nv false dec false enc true => attest::ecdh_keygen;
    0x165 FlushContext [] auth 0 rh false nv false dec false enc false => hashing::flush_context;
    0x167 LoadExternal [] auth 0 rh true nv false dec true enc true => object::load_external;
    0x168 MakeCredential [Object] auth 0 rh false nv false dec true enc true => attest::make_credential;
    0x169 NV_ReadPublic [NvIndex] auth 0 rh false nv false dec false enc true => nv::read_public;
    0x16A PolicyAuthorize [PolicySession] auth 0 rh false nv false dec true enc false => policy::policy_authorize;
    0x16B PolicyAuthValue [PolicySession] auth 0 rh false nv false dec false enc false => policy::policy_auth_value;
    0x16C PolicyCommandCode [PolicySession] auth 0 rh false nv false dec false enc false => policy::policy_command_code;
    0x16E PolicyCpHash [PolicySession] auth 0 rh false nv false dec true enc false => policy::policy_cp_hash;
    0x170 PolicyNameHash [PolicySession] auth 0 rh false nv false dec true enc false => policy::policy_name_hash;
    0x171 PolicyOR [PolicySession] auth 0 rh false nv false dec false enc false => policy::policy_or;
    0x173 ReadPublic [Object] auth 0 rh false nv false dec false enc true => object::read_public;
    0x174 RSA_Encrypt [Object] auth 0 rh false nv false dec true enc true => attest::rsa_encrypt;
    0x176 StartAuthSession [ObjectOrNull Entity] auth 0 rh true nv false dec true enc true => session::start_auth_session;
    0x177 VerifySignature [Object] auth 0 rh false nv false dec true enc false => attest::verify_signature;
    0x17A GetCapability [] auth 0 rh false nv false dec false enc false => capability::get_capability;
    0x17B GetRandom [] auth 0 rh false nv false dec false enc true => startup::get_random;
    0x17C GetTestResult [] auth 0 rh false nv false dec false enc true => startup::get_test_result;
    0x17D Hash [] auth 0 rh false nv false dec true enc true => hashing::hash;
    0x17E PCR_Read [] auth 0 rh false nv false dec false enc false => pcr::read;
    0x17F PolicyPCR [PolicySession] auth 0 rh false nv false dec true enc false => policy::policy_pcr;
    0x180 PolicyRestart [PolicySession] auth 0 rh false nv false dec false enc false => policy::policy_restart;
    0x181 ReadClock [] auth 0 rh false nv false dec false enc false => startup::read_clock;
    0x182 PCR_Extend [PcrOrNull] auth 1 rh false nv false dec false enc false => pcr::extend;
    0x184 NV_Certify [ObjectOrNull NvAuth NvIndex] auth 2 rh false nv false dec true enc true => attest::nv_certify;
    0x185 EventSequenceComplete [PcrOrNull Object] auth 2 rh false nv false dec true enc false => hashing::event_sequence_complete;
    0x186 HashSequenceStart [] auth 0 rh true nv false dec true enc false => hashing::hash_sequence_start;
    0x189 PolicyGetDigest [PolicySession] auth 0 rh false nv false dec false enc true => policy::policy_get_digest;
    0x18A TestParms [] auth 0 rh false nv false dec false enc false => startup::test_parms;
    0x18C PolicyPassword [PolicySession] auth 0 rh false nv false dec false enc false => policy::policy_password;
    0x191 CreateLoaded [Parent] auth 1 rh true nv false dec true enc true => object::create_loaded;
    0x193 EncryptDecrypt2 [Object] auth 1 rh false nv false dec true enc true => attest::encrypt_decrypt2;
}

/// The command with this code, if implemented.
pub(crate) fn lookup(code: u32) -> Option<&'static CommandDef> {
    COMMANDS
        .binary_search_by_key(&code, |c| c.code)
        .ok()
        .and_then(|i| COMMANDS.get(i))
}

/// Check the handle area against the command's declared handle types (TPM_RC_VALUE + handle).
pub(crate) fn check_handle_kinds(def: &CommandDef, handles: &[u32; 3]) -> Result<(), Rc> {
    for (i, (kind, h)) in def.handle_kinds.iter().zip(handles.iter()).enumerate() {
        if let Some(kind) = kind {
            if !kind.accepts(*h) {
                return Err(Rc::VALUE.handle(i as u32 + 1));
            }
        }
    }
    Ok(())
}

/// One command's execution context: its handles, a parameter reader that numbers the
/// parameters for format-one errors, and the response being built.
pub(crate) struct Ctx<'a> {
    pub locality: u8,
    pub handles: [u32; 3],
    params: Reader<'a>,
    pnum: u32,
    pub out_handle: Option<u32>,
    pub out: Vec<u8>,
    /// Whether each authorized handle was authorized by a policy session (NV indices then
    /// need POLICYREAD/POLICYWRITE instead of AUTHREAD/AUTHWRITE).
    pub policy_auth: [bool; 3],
}

impl<'a> Ctx<'a> {
    pub fn new(locality: u8, handles: [u32; 3], params: Reader<'a>) -> Self {
        Ctx {
            locality,
            handles,
            params,
            pnum: 0,
            out_handle: None,
            out: Vec::new(),
            policy_auth: [false; 3],
        }
    }

    /// The next parameter, read by `f`; failures carry its number.
    pub fn param_with<T>(
        &mut self,
        f: impl FnOnce(&mut Reader<'a>) -> Result<T, Rc>,
    ) -> Result<T, Rc> {
        self.pnum += 1;
        f(&mut self.params).map_err(|rc| rc.param(self.pnum))
    }

    /// The next parameter; unmarshal failures carry its number.
    pub fn param<T: Unmarshal>(&mut self) -> Result<T, Rc> {
        self.pnum += 1;
        T::unmarshal(&mut self.params).map_err(|rc| rc.param(self.pnum))
    }

    /// All parameters are read: anything left over is TPM_RC_SIZE. Call before acting.
    pub fn end_params(&self) -> Result<(), Rc> {
        if self.params.is_empty() {
            Ok(())
        } else {
            Err(Rc::SIZE)
        }
    }

    pub(crate) fn params_done(&self) -> bool {
        self.params.is_empty()
    }

    pub fn put<T: Marshal + ?Sized>(&mut self, v: &T) {
        v.marshal(&mut self.out);
    }

    pub fn handle(&self, i: usize) -> u32 {
        self.handles.get(i).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(COMMANDS.windows(2).all(|w| w[0].code < w[1].code));
        assert_eq!(lookup(CC_STARTUP).map(|c| c.name), Some("Startup"));
        assert!(lookup(0x1FF).is_none());
    }

    #[test]
    fn tpma_cc_known_answer() {
        // NV_Write: index 0x137, nv, two handles.
        let def = lookup(0x137).expect("NV_Write");
        assert_eq!(def.attributes(), 0x0440_0137);
        // HashSequenceStart: rHandle.
        assert_eq!(
            lookup(0x186).expect("HashSequenceStart").attributes(),
            0x1000_0186
        );
    }
}
