//! Endorsement at manufacture, as a TPM vendor's provisioning station (or a cloud's vTPM
//! host) does it: derive the TPM's endorsement keys, certify them with the
//! manufacturer CA ([`crate::ca`]), and store the certificates in the TPM's NV where
//! `tpm2_getekcertificate` and `tpm2_nvread -C o` find them.
//!
//! Everything goes through TPM commands on [`Tpm::execute`] with password sessions and
//! the empty platform and endorsement authorizations of a new TPM:
//!
//! 1. _TPM_Init, TPM2_Startup(CLEAR), TPM2_GetCapability (manufacturer, vendor string,
//!    firmware version, TPM_PT_NV_BUFFER_MAX);
//! 2. for the RSA-2048 EK (template L-1) and the ECC NIST P-256 EK (template L-2) of the
//!    TCG EK Credential Profile 2.x: TPM2_CreatePrimary(TPM_RH_ENDORSEMENT) and
//!    TPM2_FlushContext; an X.509 EK certificate for its public key;
//!    TPM2_NV_DefineSpace(TPM_RH_PLATFORM) of the EK certificate index (0x01C00002 for
//!    RSA, 0x01C0000A for ECC) sized to the certificate, TPM2_NV_Write in chunks of at
//!    most TPM_PT_NV_BUFFER_MAX (and 1024) bytes, and TPM2_NV_WriteLock;
//! 3. TPM2_Shutdown(CLEAR).
//!
//! The EKs are not kept: a primary key is derived from the endorsement seed and the
//! template, so `tpm2_createek -G rsa|ecc` derives the same keys again later (and until
//! TPM2_ChangeEPS, which would make the certificates stale, as on any TPM).
//!
//! Certificates follow the TCG EK Credential Profile for TPM Family 2.0 (section 3): an
//! X.509 v3 certificate with a random 16-byte serial number, the CA's name as issuer,
//! an empty subject, validity from issuance to 9999-12-31T23:59:59Z, and the extensions
//! subjectAltName (critical; a directoryName of tcg-at-tpmManufacturer "id:544C4348",
//! tcg-at-tpmModel and tcg-at-tpmVersion "id:" + firmware version), basicConstraints
//! CA:FALSE (critical), keyUsage keyEncipherment (RSA) or keyAgreement (ECC) (critical),
//! extendedKeyUsage tcg-kp-EKCertificate, and authorityKeyIdentifier.

use crate::ca::{self, encoding, CaError, ManufacturerCa};
use p256::pkcs8::EncodePublicKey;
use std::collections::BTreeMap;
use tpm::codec::{Marshal, Reader, Unmarshal};
use tpm::object::{PublicParms, Tpm2bPublic, TpmtPublic};
use tpm::types::{alg, curve, handle, nv_attr, pt, Tpm2bDigest, Tpm2bNvPublic, TpmsNvPublic};
use tpm::Tpm;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::der::asn1::{BitString, OctetString, SetOfVec, Utf8StringRef};
use x509_cert::der::{Any, Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
};
use x509_cert::ext::{AsExtension, Extension};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};

pub use tpm::ek::{EkKind, ECC_EK_CERT_INDEX, EK_POLICY_A_SHA256, RSA_EK_CERT_INDEX};

/// The keyUsage an EK certificate states: RSA EKs decrypt (key transport), ECC EKs agree keys.
fn key_usage(kind: EkKind) -> KeyUsages {
    match kind {
        EkKind::Rsa2048 => KeyUsages::KeyEncipherment,
        EkKind::EccP256 => KeyUsages::KeyAgreement,
    }
}

/// The EK certificate indices' attributes, as real TPMs have them: defined and written by
/// the platform, readable with platform, owner or (empty) index authorization, no
/// dictionary-attack protection, write-locked until the index is undefined.
pub const EK_CERT_NV_ATTRIBUTES: u32 = nv_attr::PLATFORMCREATE
    | nv_attr::PPWRITE
    | nv_attr::PPREAD
    | nv_attr::OWNERREAD
    | nv_attr::AUTHREAD
    | nv_attr::NO_DA
    | nv_attr::WRITEDEFINE;

/// Largest NV_Write this code sends, whatever TPM_PT_NV_BUFFER_MAX says.
const MAX_WRITE_CHUNK: usize = 1024;

// X.509 object identifiers of the TCG (EK Credential Profile, A.1).
const TCG_AT_TPM_MANUFACTURER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.2.1");
const TCG_AT_TPM_MODEL: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.2.2");
const TCG_AT_TPM_VERSION: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.2.3");
const TCG_KP_EK_CERTIFICATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.8.1");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

// Command codes (Part 2, 6.5.2).
const CC_NV_DEFINE_SPACE: u32 = 0x12A;
const CC_CREATE_PRIMARY: u32 = 0x131;
const CC_NV_WRITE: u32 = 0x137;
const CC_NV_WRITE_LOCK: u32 = 0x138;
const CC_STARTUP: u32 = 0x144;
const CC_SHUTDOWN: u32 = 0x145;
const CC_FLUSH_CONTEXT: u32 = 0x165;
const CC_GET_CAPABILITY: u32 = 0x17A;
const TPM_CAP_TPM_PROPERTIES: u32 = 6;

/// Errors of EK provisioning.
#[derive(Debug, thiserror::Error)]
pub enum EndorsementError {
    #[error("EK provisioning: TPM2_{command} failed with response code {rc:#x}")]
    Command { command: &'static str, rc: u32 },
    #[error("EK provisioning: TPM2_{command} returned a malformed response")]
    Response { command: &'static str },
    #[error("EK provisioning: the TPM returned an unusable {kind:?} EK: {reason}")]
    PublicKey { kind: EkKind, reason: String },
    #[error("EK provisioning: the {kind:?} EK certificate ({len} bytes) exceeds the TPM's NV index size")]
    TooLarge { kind: EkKind, len: usize },
    #[error("EK provisioning: {0}")]
    Ca(#[from] CaError),
}

/// What a TPM reports of itself, as its EK certificates name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmIdentity {
    /// TPM_PT_MANUFACTURER (e.g. 0x544C4348, "TLCH").
    pub manufacturer: u32,
    /// TPM_PT_VENDOR_STRING_1..4, NUL bytes dropped.
    pub model: String,
    /// TPM_PT_FIRMWARE_VERSION_1.
    pub firmware_version: u32,
}

impl TpmIdentity {
    /// The subjectAltName directoryName of the EK Credential Profile (3.2.9): one
    /// relative distinguished name per attribute, each a UTF8String.
    fn directory_name(&self) -> Result<Name, CaError> {
        let manufacturer = format!("id:{:08X}", self.manufacturer);
        let version = format!("id:{:08X}", self.firmware_version);
        let attrs = [
            (TCG_AT_TPM_MANUFACTURER, manufacturer.as_str()),
            (TCG_AT_TPM_MODEL, self.model.as_str()),
            (TCG_AT_TPM_VERSION, version.as_str()),
        ];
        let mut rdns = Vec::new();
        for (oid, value) in attrs {
            let value = Any::encode_from(&Utf8StringRef::new(value).map_err(encoding)?)
                .map_err(encoding)?;
            let atv = x509_cert::attr::AttributeTypeAndValue { oid, value };
            rdns.push(RelativeDistinguishedName(
                SetOfVec::try_from(vec![atv]).map_err(encoding)?,
            ));
        }
        Ok(RdnSequence(rdns))
    }
}

/// One provisioned EK.
#[derive(Debug, Clone)]
pub struct ProvisionedEk {
    pub kind: EkKind,
    /// The EK's public area, as TPM2_CreatePrimary returned it.
    pub public: TpmtPublic,
    /// The EK certificate (DER), as stored at `kind.nv_index()`.
    pub certificate: Vec<u8>,
}

/// The outcome of [`provision`].
#[derive(Debug, Clone)]
pub struct Endorsed {
    pub identity: TpmIdentity,
    pub eks: Vec<ProvisionedEk>,
}

/// Provision a newly manufactured TPM: both EKs with certificates from `ca` in NV.
/// The TPM is left after TPM2_Shutdown(CLEAR), ready for the next _TPM_Init.
pub fn provision(tpm: &mut Tpm, ca: &ManufacturerCa) -> Result<Endorsed, EndorsementError> {
    provision_kinds(tpm, ca, &EkKind::ALL)
}

/// [`provision`] of only these EKs (a node whose agent uses the ECC EK needs no RSA key
/// generation at manufacture).
pub fn provision_kinds(
    tpm: &mut Tpm,
    ca: &ManufacturerCa,
    kinds: &[EkKind],
) -> Result<Endorsed, EndorsementError> {
    let mut station = Station { tpm };
    tpm_init_and_startup(&mut station)?;
    let props = station.properties(&[
        pt::MANUFACTURER,
        pt::VENDOR_STRING_1,
        pt::VENDOR_STRING_2,
        pt::VENDOR_STRING_3,
        pt::VENDOR_STRING_4,
        pt::FIRMWARE_VERSION_1,
        pt::NV_BUFFER_MAX,
        pt::NV_INDEX_MAX,
    ])?;
    let prop = |p: u32| props.get(&p).copied();
    let model: String = [
        pt::VENDOR_STRING_1,
        pt::VENDOR_STRING_2,
        pt::VENDOR_STRING_3,
        pt::VENDOR_STRING_4,
    ]
    .iter()
    .flat_map(|p| prop(*p).unwrap_or(0).to_be_bytes())
    .filter(|b| *b != 0)
    .map(char::from)
    .collect();
    let identity = TpmIdentity {
        manufacturer: prop(pt::MANUFACTURER).unwrap_or(0),
        model: model.trim().to_string(),
        firmware_version: prop(pt::FIRMWARE_VERSION_1).unwrap_or(0),
    };
    let chunk = prop(pt::NV_BUFFER_MAX)
        .map_or(512, |v| v as usize)
        .clamp(1, MAX_WRITE_CHUNK);
    let index_max = prop(pt::NV_INDEX_MAX).map_or(usize::from(u16::MAX), |v| v as usize);

    let mut eks = Vec::new();
    for &kind in kinds {
        let public = station.create_primary_ek(kind)?;
        let certificate = ek_certificate(ca, kind, &public, &identity)?;
        if certificate.len() > index_max || certificate.len() > usize::from(u16::MAX) {
            return Err(EndorsementError::TooLarge {
                kind,
                len: certificate.len(),
            });
        }
        station.store_certificate(kind.nv_index(), &certificate, chunk)?;
        eks.push(ProvisionedEk {
            kind,
            public,
            certificate,
        });
    }
    station.run("Shutdown", CC_SHUTDOWN, &[], false, &[0, 0], 0)?;
    Ok(Endorsed { identity, eks })
}

pub(crate) fn tpm_init_and_startup(station: &mut Station<'_>) -> Result<(), EndorsementError> {
    station.tpm.init();
    station.run("Startup", CC_STARTUP, &[], false, &[0, 0], 0)?;
    Ok(())
}

/// The X.509 EK certificate for `ek` (a public area from TPM2_CreatePrimary), signed by
/// `ca`.
pub fn ek_certificate(
    ca: &ManufacturerCa,
    kind: EkKind,
    ek: &TpmtPublic,
    identity: &TpmIdentity,
) -> Result<Vec<u8>, EndorsementError> {
    let spki = subject_public_key_info(kind, ek)?;
    let subject = Name::default();
    let ext = |e: &dyn Fn() -> Result<Extension, x509_cert::der::Error>, critical: bool| {
        e().map(|mut x| {
            x.critical = critical;
            x
        })
        .map_err(encoding)
    };
    let san = SubjectAltName(vec![GeneralName::DirectoryName(identity.directory_name()?)]);
    let aki = AuthorityKeyIdentifier {
        key_identifier: Some(OctetString::new(ca.key_identifier()).map_err(encoding)?),
        ..Default::default()
    };
    let extensions = vec![
        ext(&|| san.to_extension(&subject, &[]), true)?,
        ext(
            &|| {
                BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                }
                .to_extension(&subject, &[])
            },
            true,
        )?,
        ext(
            &|| KeyUsage(key_usage(kind).into()).to_extension(&subject, &[]),
            true,
        )?,
        ext(
            &|| ExtendedKeyUsage(vec![TCG_KP_EK_CERTIFICATE]).to_extension(&subject, &[]),
            false,
        )?,
        ext(&|| aki.to_extension(&subject, &[]), false)?,
    ];
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: ca::random_serial()?,
        signature: ManufacturerCa::signature_algorithm(),
        issuer: ca.subject().clone(),
        validity: ca::validity_from_now()?,
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    Ok(ca.sign(tbs)?)
}

/// The SubjectPublicKeyInfo of a TPM public key: rsaEncryption with the modulus and
/// exponent (0 means 65537), or id-ecPublicKey on P-256 with the uncompressed point.
pub fn subject_public_key_info(
    kind: EkKind,
    public: &TpmtPublic,
) -> Result<SubjectPublicKeyInfoOwned, EndorsementError> {
    let bad = |reason: String| EndorsementError::PublicKey { kind, reason };
    match (&public.parms, kind) {
        (
            PublicParms::Rsa {
                exponent, modulus, ..
            },
            EkKind::Rsa2048,
        ) => {
            if modulus.len() != 256 {
                return Err(bad(format!("{}-byte modulus", modulus.len())));
            }
            let e = if *exponent == 0 { 65537 } else { *exponent };
            let e_bytes = e.to_be_bytes();
            let key = pkcs1::RsaPublicKey {
                modulus: pkcs1::UintRef::new(modulus).map_err(|e| bad(e.to_string()))?,
                public_exponent: pkcs1::UintRef::new(&e_bytes).map_err(|e| bad(e.to_string()))?,
            };
            let der = key.to_der().map_err(|e| bad(e.to_string()))?;
            Ok(SubjectPublicKeyInfoOwned {
                algorithm: AlgorithmIdentifierOwned {
                    oid: RSA_ENCRYPTION,
                    parameters: Some(Any::null()),
                },
                subject_public_key: BitString::from_bytes(&der).map_err(|e| bad(e.to_string()))?,
            })
        }
        (
            PublicParms::Ecc {
                curve: curve::NIST_P256,
                x,
                y,
                ..
            },
            EkKind::EccP256,
        ) => {
            if x.len() > 32 || y.len() > 32 {
                return Err(bad("coordinate longer than 32 bytes".into()));
            }
            let mut point = vec![0x04];
            for c in [x, y] {
                point.extend(std::iter::repeat_n(0, 32 - c.len()));
                point.extend_from_slice(c);
            }
            let key = p256::PublicKey::from_sec1_bytes(&point).map_err(|e| bad(e.to_string()))?;
            let der = key.to_public_key_der().map_err(|e| bad(e.to_string()))?;
            SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).map_err(|e| bad(e.to_string()))
        }
        _ => Err(bad(format!(
            "object type {:#06x} is not the template's",
            public.object_type()
        ))),
    }
}

/// The provisioning station's side of the TPM: typed commands over `Tpm::execute`.
pub(crate) struct Station<'a> {
    pub(crate) tpm: &'a mut Tpm,
}

impl Station<'_> {
    /// Send one command at locality 0, with one empty-password session if `sessions`
    /// (every command here authorizes one handle), and return the response handles
    /// and parameter area.
    pub(crate) fn run(
        &mut self,
        name: &'static str,
        code: u32,
        handles: &[u32],
        sessions: bool,
        params: &[u8],
        response_handles: usize,
    ) -> Result<(Vec<u32>, Vec<u8>), EndorsementError> {
        let mut body = Vec::new();
        for h in handles {
            h.marshal(&mut body);
        }
        if sessions {
            // TPMS_AUTH_COMMAND: TPM_RS_PW, empty nonce, continueSession, empty password.
            let mut area = Vec::new();
            handle::RS_PW.marshal(&mut area);
            0u16.marshal(&mut area);
            1u8.marshal(&mut area);
            0u16.marshal(&mut area);
            (area.len() as u32).marshal(&mut body);
            body.extend_from_slice(&area);
        }
        body.extend_from_slice(params);
        let mut command = Vec::with_capacity(10 + body.len());
        let tag = if sessions { 0x8002u16 } else { 0x8001u16 };
        tag.marshal(&mut command);
        ((10 + body.len()) as u32).marshal(&mut command);
        code.marshal(&mut command);
        command.extend_from_slice(&body);

        let response = self.tpm.execute(0, &command);
        let malformed = || EndorsementError::Response { command: name };
        let mut r = Reader::new(&response);
        let tag = r.u16().map_err(|_| malformed())?;
        let size = r.u32().map_err(|_| malformed())?;
        let rc = r.u32().map_err(|_| malformed())?;
        if rc != 0 {
            return Err(EndorsementError::Command { command: name, rc });
        }
        if size as usize != response.len() {
            return Err(malformed());
        }
        let mut out_handles = Vec::new();
        for _ in 0..response_handles {
            out_handles.push(r.u32().map_err(|_| malformed())?);
        }
        let params = if tag == 0x8002 {
            let n = r.u32().map_err(|_| malformed())? as usize;
            r.take(n).map_err(|_| malformed())?.to_vec()
        } else {
            r.rest().to_vec()
        };
        Ok((out_handles, params))
    }

    /// TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES) for each of `props`.
    fn properties(&mut self, props: &[u32]) -> Result<BTreeMap<u32, u32>, EndorsementError> {
        let mut values = BTreeMap::new();
        for &p in props {
            let mut params = Vec::new();
            TPM_CAP_TPM_PROPERTIES.marshal(&mut params);
            p.marshal(&mut params);
            1u32.marshal(&mut params);
            let (_, out) = self.run("GetCapability", CC_GET_CAPABILITY, &[], false, &params, 0)?;
            let malformed = || EndorsementError::Response {
                command: "GetCapability",
            };
            let mut r = Reader::new(&out);
            let _more = r.u8().map_err(|_| malformed())?;
            let _cap = r.u32().map_err(|_| malformed())?;
            let count = r.u32().map_err(|_| malformed())?;
            for _ in 0..count {
                let property = r.u32().map_err(|_| malformed())?;
                let value = r.u32().map_err(|_| malformed())?;
                if property == p {
                    values.insert(property, value);
                }
            }
        }
        Ok(values)
    }

    /// TPM2_CreatePrimary(TPM_RH_ENDORSEMENT, the EK template), then TPM2_FlushContext.
    fn create_primary_ek(&mut self, kind: EkKind) -> Result<TpmtPublic, EndorsementError> {
        let (object, public) = self.load_primary_ek(kind)?;
        self.flush(object)?;
        Ok(public)
    }

    /// TPM2_FlushContext.
    pub(crate) fn flush(&mut self, object: u32) -> Result<(), EndorsementError> {
        self.run(
            "FlushContext",
            CC_FLUSH_CONTEXT,
            &[],
            false,
            &object.to_be_bytes(),
            0,
        )?;
        Ok(())
    }

    /// TPM2_CreatePrimary(TPM_RH_ENDORSEMENT, the EK template): the loaded EK's handle
    /// and public area.
    pub(crate) fn load_primary_ek(
        &mut self,
        kind: EkKind,
    ) -> Result<(u32, TpmtPublic), EndorsementError> {
        let mut params = Vec::new();
        // inSensitive: empty userAuth and data.
        4u16.marshal(&mut params);
        0u16.marshal(&mut params);
        0u16.marshal(&mut params);
        Tpm2bPublic(kind.template()).marshal(&mut params);
        0u16.marshal(&mut params); // outsideInfo
        0u32.marshal(&mut params); // creationPCR
        let (handles, out) = self.run(
            "CreatePrimary",
            CC_CREATE_PRIMARY,
            &[handle::ENDORSEMENT],
            true,
            &params,
            1,
        )?;
        let object = handles.first().copied().unwrap_or(0);
        match Tpm2bPublic::unmarshal(&mut Reader::new(&out)) {
            Ok(public) => Ok((object, public.0)),
            Err(_) => {
                let _ = self.flush(object);
                Err(EndorsementError::Response {
                    command: "CreatePrimary",
                })
            }
        }
    }

    /// Define the platform's EK certificate index, write `certificate` and lock it.
    fn store_certificate(
        &mut self,
        index: u32,
        certificate: &[u8],
        chunk: usize,
    ) -> Result<(), EndorsementError> {
        let mut params = Vec::new();
        0u16.marshal(&mut params); // auth: empty
        Tpm2bNvPublic(TpmsNvPublic {
            nv_index: index,
            name_alg: alg::SHA256,
            attributes: EK_CERT_NV_ATTRIBUTES,
            auth_policy: Tpm2bDigest::default(),
            data_size: certificate.len() as u16,
        })
        .marshal(&mut params);
        self.run(
            "NV_DefineSpace",
            CC_NV_DEFINE_SPACE,
            &[handle::PLATFORM],
            true,
            &params,
            0,
        )?;
        for (i, part) in certificate.chunks(chunk).enumerate() {
            let mut params = Vec::new();
            tpm::codec::put_sized(&mut params, part);
            ((i * chunk) as u16).marshal(&mut params);
            self.run(
                "NV_Write",
                CC_NV_WRITE,
                &[handle::PLATFORM, index],
                true,
                &params,
                0,
            )?;
        }
        self.run(
            "NV_WriteLock",
            CC_NV_WRITE_LOCK,
            &[handle::PLATFORM, index],
            true,
            &[],
            0,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_tpm2_createek_defaults() {
        // TPMT_PUBLIC of `tpm2_createek -G rsa` / `-G ecc` (tpm2-tools 5.x), as sent:
        // type, nameAlg sha256, attributes 0x000300b2, Policy A, AES-128-CFB, no scheme,
        // then 2048 bits, exponent 0, 256 zero bytes / curve P-256, no KDF, 2 x 32 zeros.
        let policy = hex(&EK_POLICY_A_SHA256);
        let rsa = format!(
            "0001000b000300b20020{policy}0006008000430010080000000000{}{}",
            "0100",
            "00".repeat(256)
        );
        assert_eq!(hex(&EkKind::Rsa2048.template().to_bytes()), rsa);
        let coordinate = format!("0020{}", "00".repeat(32));
        let ecc =
            format!("0023000b000300b20020{policy}000600800043001000030010{coordinate}{coordinate}");
        assert_eq!(hex(&EkKind::EccP256.template().to_bytes()), ecc);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
