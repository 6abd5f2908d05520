//! The endorsement keys of the TCG EK Credential Profile (2.5): the default low-range
//! templates that `tpm2_createek` and every verifier use, and where their certificates live
//! in NV. Spec data, shared by the vTPM's provisioning and the node agent.

use crate::hash::HashAlg;
use crate::object::{attr, PublicParms, Scheme, SymDefObject, TpmtPublic};
use crate::types::curve;

/// NV index of the RSA-2048 EK certificate (TCG EK Credential Profile, 2.2.1.4).
pub const RSA_EK_CERT_INDEX: u32 = 0x01C0_0002;
/// NV index of the ECC NIST P-256 EK certificate.
pub const ECC_EK_CERT_INDEX: u32 = 0x01C0_000A;

/// PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256: the authPolicy of the low-range EK
/// templates (EK Credential Profile, B.3.2 "Policy A").
pub const EK_POLICY_A_SHA256: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xB3, 0xF8, 0x1A, 0x90, 0xCC, 0x8D, 0x46, 0xA5, 0xD7, 0x24,
    0xFD, 0x52, 0xD7, 0x6E, 0x06, 0x52, 0x0B, 0x64, 0xF2, 0xA1, 0xDA, 0x1B, 0x33, 0x14, 0x69, 0xAA,
];

/// The endorsement keys provisioned: those of the EK Credential Profile's default
/// low-range templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EkKind {
    /// Template L-1: RSA 2048, AES-128-CFB, SHA-256 (`tpm2_createek -G rsa`).
    Rsa2048,
    /// Template L-2: ECC NIST P-256, AES-128-CFB, SHA-256 (`tpm2_createek -G ecc`).
    EccP256,
}

impl EkKind {
    /// Both, in provisioning order.
    pub const ALL: [EkKind; 2] = [EkKind::Rsa2048, EkKind::EccP256];

    /// The NV index holding this EK's certificate.
    pub fn nv_index(self) -> u32 {
        match self {
            EkKind::Rsa2048 => RSA_EK_CERT_INDEX,
            EkKind::EccP256 => ECC_EK_CERT_INDEX,
        }
    }

    /// The EK template (EK Credential Profile, B.3.3 and B.3.4), byte for byte what
    /// tpm2-tools' `tpm2_createek` sends: restricted decryption key, fixedTPM,
    /// fixedParent, sensitiveDataOrigin, adminWithPolicy (no userWithAuth), Policy A,
    /// AES-128-CFB, no scheme, and a zero unique field of the key's size.
    pub fn template(self) -> TpmtPublic {
        let attributes = attr::FIXED_TPM
            | attr::FIXED_PARENT
            | attr::SENSITIVE_DATA_ORIGIN
            | attr::ADMIN_WITH_POLICY
            | attr::RESTRICTED
            | attr::DECRYPT;
        let parms = match self {
            EkKind::Rsa2048 => PublicParms::Rsa {
                symmetric: SymDefObject::Aes(128),
                scheme: Scheme::NULL,
                key_bits: 2048,
                exponent: 0,
                modulus: vec![0; 256],
            },
            EkKind::EccP256 => PublicParms::Ecc {
                symmetric: SymDefObject::Aes(128),
                scheme: Scheme::NULL,
                curve: curve::NIST_P256,
                kdf: None,
                x: vec![0; 32],
                y: vec![0; 32],
            },
        };
        TpmtPublic {
            name_alg: HashAlg::Sha256,
            attributes,
            auth_policy: EK_POLICY_A_SHA256.to_vec(),
            parms,
        }
    }
}
