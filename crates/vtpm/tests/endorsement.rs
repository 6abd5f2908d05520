//! EK provisioning at manufacture, through the instance API and TPM commands only: the EK
//! certificates in NV are what TPM2_NV_Read returns, they certify exactly the keys that
//! TPM2_CreatePrimary derives from the EK templates, they are signed by the CA, locked,
//! and carry the TCG EK Credential Profile's fields.

use p384::ecdsa::signature::Verifier;
use p384::ecdsa::{DerSignature, VerifyingKey};
use p384::pkcs8::DecodePublicKey;
use std::sync::Arc;
use tpm::codec::{Marshal, Reader, Unmarshal};
use tpm::object::{Tpm2bPublic, TpmtPublic};
use tpm::types::{nv_attr, Tpm2bNvPublic};
use vtpm::endorsement::{self, EkKind, EK_CERT_NV_ATTRIBUTES};
use vtpm::{Endorsement, Error, Instance, Log, ManufacturerCa, StateDir};
use x509_cert::der::asn1::Utf8StringRef;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
};
use x509_cert::spki::ObjectIdentifier;
use x509_cert::time::Time;
use x509_cert::Certificate;

const RS_PW: u32 = 0x4000_0009;
const OWNER: u32 = 0x4000_0001;
const ENDORSEMENT: u32 = 0x4000_000B;
const PLATFORM: u32 = 0x4000_000C;
const TPM_RC_FAILURE: u32 = 0x101;
const TPM_RC_NV_LOCKED: u32 = 0x148;
const TPM_RC_NV_AUTHORIZATION: u32 = 0x149;
/// TPM_RC_HANDLE for handle 1 (format one).
const TPM_RC_HANDLE_1: u32 = 0x18B;

/// A command with one empty-password session per entry of `auth_handles`' first handles.
fn cmd(code: u32, handles: &[u32], sessions: usize, params: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for h in handles {
        body.extend_from_slice(&h.to_be_bytes());
    }
    if sessions > 0 {
        let mut area = Vec::new();
        for _ in 0..sessions {
            area.extend_from_slice(&RS_PW.to_be_bytes());
            area.extend_from_slice(&[0, 0, 1, 0, 0]);
        }
        body.extend_from_slice(&(area.len() as u32).to_be_bytes());
        body.extend_from_slice(&area);
    }
    body.extend_from_slice(params);
    let tag: u16 = if sessions > 0 { 0x8002 } else { 0x8001 };
    let mut out = tag.to_be_bytes().to_vec();
    out.extend_from_slice(&((10 + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn rc(resp: &[u8]) -> u32 {
    u32::from_be_bytes(resp[6..10].try_into().expect("header"))
}

/// The parameter area of a successful response.
fn params(resp: &[u8], handles: usize) -> Vec<u8> {
    assert_eq!(rc(resp), 0, "command failed: {:#x}", rc(resp));
    let start = 10 + 4 * handles;
    if resp[..2] == [0x80, 0x02] {
        let n = u32::from_be_bytes(resp[start..start + 4].try_into().expect("size")) as usize;
        resp[start + 4..start + 4 + n].to_vec()
    } else {
        resp[start..].to_vec()
    }
}

fn ca() -> Arc<ManufacturerCa> {
    Arc::new(ManufacturerCa::generate().expect("CA"))
}

fn open(dir: &std::path::Path, endorsement: &Endorsement) -> Result<Instance, Error> {
    Instance::open_with(
        StateDir::open(dir).expect("statedir"),
        Log::none(),
        endorsement,
    )
}

/// Power on and TPM2_Startup(CLEAR).
fn started(inst: &Instance) {
    inst.init().expect("init");
    assert_eq!(inst.startup(vtpm::StartupType::Clear), 0);
}

fn nv_public(inst: &Instance, index: u32) -> Result<tpm::types::TpmsNvPublic, u32> {
    let r = inst.execute(None, &cmd(0x169, &[index], 0, &[]));
    if rc(&r) != 0 {
        return Err(rc(&r));
    }
    let p = params(&r, 0);
    Ok(Tpm2bNvPublic::unmarshal(&mut Reader::new(&p))
        .expect("TPM2B_NV_PUBLIC")
        .0)
}

/// The whole index, read with owner authorization as `tpm2_nvread -C o` does.
fn nv_read_as_owner(inst: &Instance, index: u32) -> Vec<u8> {
    let size = usize::from(nv_public(inst, index).expect("defined").data_size);
    let mut data = Vec::new();
    while data.len() < size {
        let n = (size - data.len()).min(1024) as u16;
        let mut p = n.to_be_bytes().to_vec();
        p.extend_from_slice(&(data.len() as u16).to_be_bytes());
        let out = params(&inst.execute(None, &cmd(0x14E, &[OWNER, index], 1, &p)), 0);
        let len = usize::from(u16::from_be_bytes([out[0], out[1]]));
        assert_eq!(len, usize::from(n));
        data.extend_from_slice(&out[2..2 + len]);
    }
    data
}

/// TPM2_CreatePrimary(endorsement, template) as `tpm2_createek` sends it: the EK's public
/// area. The object is flushed again.
fn create_ek(inst: &Instance, kind: EkKind) -> TpmtPublic {
    let mut p = vec![0, 4, 0, 0, 0, 0];
    Tpm2bPublic(kind.template()).marshal(&mut p);
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let r = inst.execute(None, &cmd(0x131, &[ENDORSEMENT], 1, &p));
    let out = params(&r, 1);
    let handle = u32::from_be_bytes(r[10..14].try_into().expect("handle"));
    let flush = inst.execute(None, &cmd(0x165, &[], 0, &handle.to_be_bytes()));
    assert_eq!(rc(&flush), 0);
    Tpm2bPublic::unmarshal(&mut Reader::new(&out))
        .expect("TPM2B_PUBLIC")
        .0
}

fn extension(cert: &Certificate, oid: ObjectIdentifier) -> &x509_cert::ext::Extension {
    cert.tbs_certificate
        .extensions
        .as_ref()
        .and_then(|exts| exts.iter().find(|e| e.extn_id == oid))
        .unwrap_or_else(|| panic!("no extension {oid}"))
}

/// Everything the EK Credential Profile asks of the certificate, and its signature.
fn check_certificate(der: &[u8], ca: &ManufacturerCa, kind: EkKind, ek: &TpmtPublic) {
    let cert = Certificate::from_der(der).expect("DER certificate");
    let tbs = &cert.tbs_certificate;
    assert_eq!(tbs.version, x509_cert::certificate::Version::V3);
    assert_eq!(tbs.serial_number.as_bytes().len(), 16, "16-byte serial");
    assert_eq!(&tbs.issuer, ca.subject());
    assert!(tbs.subject.0.is_empty(), "empty subject");
    assert_eq!(tbs.validity.not_after, Time::INFINITY, "valid until 9999");
    assert_eq!(
        tbs.subject_public_key_info,
        endorsement::subject_public_key_info(kind, ek).expect("SPKI"),
        "the certificate names the key CreatePrimary derives"
    );

    // Signed by the CA.
    let ca_cert = ca.certificate();
    let ca_key = VerifyingKey::from_public_key_der(
        &ca_cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .expect("CA SPKI"),
    )
    .expect("CA key");
    let sig = DerSignature::from_bytes(cert.signature.raw_bytes()).expect("DER signature");
    ca_key
        .verify(&tbs.to_der().expect("TBS"), &sig)
        .expect("signature by the CA");

    let san = extension(&cert, ObjectIdentifier::new_unwrap("2.5.29.17"));
    assert!(san.critical, "SAN is critical with an empty subject");
    let san = SubjectAltName::from_der(san.extn_value.as_bytes()).expect("SAN");
    let [GeneralName::DirectoryName(dn)] = san.0.as_slice() else {
        panic!("one directoryName: {san:?}");
    };
    let attrs: Vec<(String, String)> =
        dn.0.iter()
            .flat_map(|rdn| rdn.0.iter())
            .map(|atv| {
                let v: Utf8StringRef<'_> = atv.value.decode_as().expect("UTF8String");
                (atv.oid.to_string(), v.as_str().to_string())
            })
            .collect();
    assert_eq!(attrs[0], ("2.23.133.2.1".into(), "id:544C4348".into()));
    assert_eq!(attrs[1].0, "2.23.133.2.2");
    assert!(!attrs[1].1.is_empty(), "tpmModel");
    assert_eq!(attrs[2].0, "2.23.133.2.3");
    assert!(
        attrs[2].1.starts_with("id:") && attrs[2].1.len() == 11,
        "{attrs:?}"
    );

    let bc = extension(&cert, ObjectIdentifier::new_unwrap("2.5.29.19"));
    assert!(bc.critical);
    assert!(
        !BasicConstraints::from_der(bc.extn_value.as_bytes())
            .expect("BC")
            .ca
    );
    let ku = extension(&cert, ObjectIdentifier::new_unwrap("2.5.29.15"));
    assert!(ku.critical);
    let want = match kind {
        EkKind::Rsa2048 => KeyUsages::KeyEncipherment,
        EkKind::EccP256 => KeyUsages::KeyAgreement,
    };
    assert_eq!(
        KeyUsage::from_der(ku.extn_value.as_bytes()).expect("KU"),
        KeyUsage(want.into())
    );
    let eku = extension(&cert, ObjectIdentifier::new_unwrap("2.5.29.37"));
    assert_eq!(
        ExtendedKeyUsage::from_der(eku.extn_value.as_bytes())
            .expect("EKU")
            .0,
        vec![ObjectIdentifier::new_unwrap("2.23.133.8.1")]
    );
    let aki = extension(&cert, ObjectIdentifier::new_unwrap("2.5.29.35"));
    let aki = AuthorityKeyIdentifier::from_der(aki.extn_value.as_bytes()).expect("AKI");
    assert_eq!(
        aki.key_identifier.as_ref().map(|k| k.as_bytes()),
        Some(ca.key_identifier())
    );
}

#[test]
fn new_instance_is_endorsed_and_powered_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca();
    let inst = open(dir.path(), &Endorsement::Ca(ca.clone())).expect("open");
    assert!(!inst.is_running(), "a new instance starts powered off");
    assert_eq!(
        rc(&inst.execute(None, &vtpm::StartupType::Clear.command())),
        TPM_RC_FAILURE
    );
    started(&inst);
    for kind in EkKind::ALL {
        let public = nv_public(&inst, kind.nv_index()).expect("EK certificate index");
        assert_eq!(
            public.attributes,
            EK_CERT_NV_ATTRIBUTES | nv_attr::WRITTEN | nv_attr::WRITELOCKED,
            "{kind:?}: {:#x}",
            public.attributes
        );
        assert!(public.auth_policy.is_empty());
        let der = nv_read_as_owner(&inst, kind.nv_index());
        assert_eq!(
            der.len(),
            usize::from(public.data_size),
            "sized to the cert"
        );
        let ek = create_ek(&inst, kind);
        check_certificate(&der, &ca, kind, &ek);
        // Derived again: the same key.
        assert_eq!(create_ek(&inst, kind), ek);
    }
}

#[test]
fn certificates_are_write_locked_and_platform_owned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inst = open(dir.path(), &Endorsement::Ca(ca())).expect("open");
    started(&inst);
    let index = EkKind::Rsa2048.nv_index();
    let mut p = vec![0, 1, 0xAA];
    p.extend_from_slice(&[0, 0]);
    let r = inst.execute(None, &cmd(0x137, &[PLATFORM, index], 1, &p));
    assert_eq!(rc(&r), TPM_RC_NV_LOCKED);
    let r = inst.execute(None, &cmd(0x122, &[OWNER, index], 1, &[]));
    assert_eq!(rc(&r), TPM_RC_NV_AUTHORIZATION, "owner cannot undefine it");
    // A password session on the index itself reads it too (AUTHREAD, empty auth).
    let r = inst.execute(None, &cmd(0x14E, &[index, index], 1, &[0, 16, 0, 0]));
    assert_eq!(rc(&r), 0);
}

#[test]
fn restored_instance_is_not_endorsed_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inst = open(dir.path(), &Endorsement::Ca(ca())).expect("open");
    started(&inst);
    let before = nv_read_as_owner(&inst, EkKind::EccP256.nv_index());
    inst.power_off().expect("off");
    drop(inst);
    // Another CA, and then none: the state on disk decides.
    for endorsement in [Endorsement::Ca(ca()), Endorsement::None] {
        let inst = open(dir.path(), &endorsement).expect("restore");
        started(&inst);
        assert_eq!(nv_read_as_owner(&inst, EkKind::EccP256.nv_index()), before);
        inst.power_off().expect("off");
    }
}

#[test]
fn instances_get_their_own_eks_from_one_ca() {
    let ca = ca();
    let (a, b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let ia = open(a.path(), &Endorsement::Ca(ca.clone())).expect("open a");
    let ib = open(b.path(), &Endorsement::Ca(ca.clone())).expect("open b");
    started(&ia);
    started(&ib);
    for kind in EkKind::ALL {
        let (ka, kb) = (create_ek(&ia, kind), create_ek(&ib, kind));
        assert_ne!(ka, kb, "{kind:?}: each TPM has its own endorsement seed");
        check_certificate(&nv_read_as_owner(&ia, kind.nv_index()), &ca, kind, &ka);
        check_certificate(&nv_read_as_owner(&ib, kind.nv_index()), &ca, kind, &kb);
    }
}

#[test]
fn unendorsed_instance_has_no_ek_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inst = open(dir.path(), &Endorsement::None).expect("open");
    started(&inst);
    for kind in EkKind::ALL {
        assert_eq!(nv_public(&inst, kind.nv_index()), Err(TPM_RC_HANDLE_1));
    }
}

#[test]
fn ca_dir_is_used_only_when_manufacturing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let ca_dir = dir.path().join("ca");
    std::fs::create_dir(&state).expect("mkdir");
    let inst = open(&state, &Endorsement::CaDir(ca_dir.clone())).expect("open");
    started(&inst);
    let der = nv_read_as_owner(&inst, EkKind::Rsa2048.nv_index());
    let ca = ManufacturerCa::load_or_create(&ca_dir).expect("the CA was created");
    check_certificate(
        &der,
        &ca,
        EkKind::Rsa2048,
        &create_ek(&inst, EkKind::Rsa2048),
    );
    inst.power_off().expect("off");
    drop(inst);
    std::fs::remove_dir_all(&ca_dir).expect("rm CA");
    drop(open(&state, &Endorsement::CaDir(ca_dir.clone())).expect("restore"));
    assert!(!ca_dir.exists(), "restoring does not touch the CA");
}

#[test]
fn failed_endorsement_leaves_no_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    // A CA directory that cannot be created: a regular file is in its way.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").expect("write");
    let err = open(&state, &Endorsement::CaDir(blocker.join("ca"))).expect_err("no CA");
    assert!(matches!(err, Error::Ca(_)), "{err}");
    assert_eq!(
        std::fs::read_dir(&state)
            .expect("ls")
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count(),
        0,
        "no state file: the next start manufactures afresh"
    );
    // Once the CA is available, the same directory manufactures an endorsed TPM.
    let inst = open(&state, &Endorsement::CaDir(dir.path().join("ca"))).expect("open");
    started(&inst);
    assert!(nv_public(&inst, EkKind::EccP256.nv_index()).is_ok());
}
