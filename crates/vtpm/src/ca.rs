//! The host's vTPM manufacturer CA: the root that issues the EK certificates of the
//! instances it manufactures, as a TPM vendor's CA does for hardware TPMs. Verifiers
//! trust its certificate (`trustlaunch vtpm ca export`).
//!
//! An ECDSA P-384 key and a self-signed certificate kept in a directory:
//!
//! - `ca-key.pem`: the private key (PKCS#8 PEM), mode 0600, written atomically;
//! - `ca-cert.pem`: the certificate (PEM), mode 0644, written atomically.
//!
//! [`ManufacturerCa::load_or_create`] creates both on first use under an exclusive lock
//! (`.lock`), so processes starting at once agree on one CA. The certificate's subject
//! names the key (`CN=trustlaunch vTPM Manufacturer CA <key id>`), so a lost certificate
//! is re-issued from the key with the same name and key identifier, and EK certificates
//! issued before still chain to it. A certificate without its key is an error: the CA is
//! never silently replaced.

use p384::ecdsa::{signature::Signer, DerSignature, SigningKey};
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sha1::{Digest, Sha1};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::der::asn1::{BitString, OctetString, UtcTime};
use x509_cert::der::{DateTime, Decode, DecodePem, Encode, EncodePem};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier};
use x509_cert::ext::{AsExtension, Extension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

/// The private key file in a CA directory.
pub const KEY_FILE: &str = "ca-key.pem";
/// The certificate file in a CA directory.
pub const CERT_FILE: &str = "ca-cert.pem";
const LOCK_FILE: &str = ".lock";

/// ecdsa-with-SHA384 (RFC 5758, 3.2): the signature algorithm of everything the CA signs.
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// Errors of the manufacturer CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("no entropy from the operating system: {0}")]
    Entropy(String),
    #[error("encoding a certificate: {0}")]
    Encoding(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |error| CaError::Io {
        path: path.to_path_buf(),
        error,
    }
}

pub(crate) fn encoding<E: std::fmt::Display>(e: E) -> CaError {
    CaError::Encoding(e.to_string())
}

/// The manufacturer CA: its signing key and certificate.
pub struct ManufacturerCa {
    key: SigningKey,
    cert: Certificate,
    cert_der: Vec<u8>,
    cert_pem: String,
    key_id: Vec<u8>,
}

impl std::fmt::Debug for ManufacturerCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManufacturerCa")
            .field("subject", &self.cert.tbs_certificate.subject.to_string())
            .finish_non_exhaustive()
    }
}

/// `count` bytes from the operating system's generator.
pub(crate) fn random_bytes(count: usize) -> Result<Vec<u8>, CaError> {
    let mut b = vec![0u8; count];
    getrandom::getrandom(&mut b).map_err(|e| CaError::Entropy(e.to_string()))?;
    Ok(b)
}

/// A random positive 16-byte certificate serial number (RFC 5280, 4.1.2.2).
pub(crate) fn random_serial() -> Result<SerialNumber, CaError> {
    let mut b = random_bytes(16)?;
    // Positive, and a full 16 bytes long once encoded.
    if let Some(first) = b.first_mut() {
        *first = (*first & 0x7F) | 0x40;
    }
    SerialNumber::new(&b).map_err(encoding)
}

/// From now (UTCTime, to the second) until 9999-12-31T23:59:59Z (GeneralizedTime): the
/// certificate has no well-defined expiration date (RFC 5280, 4.1.2.5), as EK
/// certificates of TPMs, which outlive any date a manufacturer could pick.
pub(crate) fn validity_from_now() -> Result<Validity, CaError> {
    let now = DateTime::from_system_time(SystemTime::now()).map_err(encoding)?;
    Ok(Validity {
        not_before: Time::UtcTime(UtcTime::from_date_time(now).map_err(encoding)?),
        not_after: Time::INFINITY,
    })
}

/// The RFC 5280 (4.2.1.2, method 1) key identifier: SHA-1 of the subjectPublicKey bits.
pub(crate) fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    Sha1::digest(spki.subject_public_key.raw_bytes()).to_vec()
}

fn extension<E: AsExtension>(ext: &E, critical: bool) -> Result<Extension, CaError> {
    let mut e = ext.to_extension(&Name::default(), &[]).map_err(encoding)?;
    e.critical = critical;
    Ok(e)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

impl ManufacturerCa {
    /// A new CA with a fresh key, kept in memory only (tests; see [`Self::load_or_create`]).
    pub fn generate() -> Result<ManufacturerCa, CaError> {
        Self::from_key(generate_key()?)
    }

    /// The CA of `key`, with a newly issued self-signed certificate.
    fn from_key(key: SigningKey) -> Result<ManufacturerCa, CaError> {
        let cert = self_signed(&key)?;
        Self::assemble(key, cert)
    }

    fn assemble(key: SigningKey, cert: Certificate) -> Result<ManufacturerCa, CaError> {
        let cert_der = cert.to_der().map_err(encoding)?;
        let cert_pem = cert.to_pem(LineEnding::LF).map_err(encoding)?;
        let key_id = key_identifier(&cert.tbs_certificate.subject_public_key_info);
        Ok(ManufacturerCa {
            key,
            cert,
            cert_der,
            cert_pem,
            key_id,
        })
    }

    /// Load the CA kept in `dir`, creating the directory (0700) and the CA on first use.
    pub fn load_or_create(dir: &Path) -> Result<ManufacturerCa, CaError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err(&lock_path)(e.into()))?;
        let result = Self::load_or_create_locked(dir);
        drop(lock);
        result
    }

    fn load_or_create_locked(dir: &Path) -> Result<ManufacturerCa, CaError> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        let key_pem = match fs::read_to_string(&key_path) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&key_path)(e)),
        };
        let cert_pem = match fs::read(&cert_path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&cert_path)(e)),
        };
        match (key_pem, cert_pem) {
            (None, None) => {
                let ca = Self::generate()?;
                let key_pem = ca
                    .key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| CaError::Encoding(e.to_string()))?;
                write_atomic(&key_path, key_pem.as_bytes(), 0o600)?;
                write_atomic(&cert_path, ca.certificate_pem().as_bytes(), 0o644)?;
                Ok(ca)
            }
            (None, Some(_)) => Err(CaError::Invalid {
                path: key_path,
                reason: format!(
                    "missing, but {CERT_FILE} is there: refusing to replace the CA (move \
                     {CERT_FILE} away to create a new CA, whose EK certificates verifiers \
                     would have to trust anew)"
                ),
            }),
            (Some(key_pem), cert_pem) => {
                let key = SigningKey::from_pkcs8_pem(&key_pem).map_err(|e| CaError::Invalid {
                    path: key_path.clone(),
                    reason: format!("not a PKCS#8 ECDSA P-384 private key: {e}"),
                })?;
                let Some(cert_pem) = cert_pem else {
                    // The key is the CA; its certificate is re-issued with the same name.
                    let ca = Self::from_key(key)?;
                    write_atomic(&cert_path, ca.certificate_pem().as_bytes(), 0o644)?;
                    return Ok(ca);
                };
                let cert = Certificate::from_pem(&cert_pem).map_err(|e| CaError::Invalid {
                    path: cert_path.clone(),
                    reason: format!("not a PEM certificate: {e}"),
                })?;
                let spki = public_key_info(&key)?;
                if cert.tbs_certificate.subject_public_key_info != spki {
                    return Err(CaError::Invalid {
                        path: cert_path,
                        reason: format!("does not certify the key in {KEY_FILE}"),
                    });
                }
                Self::assemble(key, cert)
            }
        }
    }

    /// The CA certificate (DER).
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate (PEM), for verifiers to trust.
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The CA's name: the issuer of the certificates it signs.
    pub fn subject(&self) -> &Name {
        &self.cert.tbs_certificate.subject
    }

    /// The CA's key identifier (its certificate's subjectKeyIdentifier).
    pub fn key_identifier(&self) -> &[u8] {
        &self.key_id
    }

    /// The signature algorithm of the certificates this CA signs.
    pub(crate) fn signature_algorithm() -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA384,
            parameters: None,
        }
    }

    /// Sign `tbs` (whose signature field must be [`Self::signature_algorithm`]).
    pub(crate) fn sign(&self, tbs: TbsCertificate) -> Result<Vec<u8>, CaError> {
        sign_with(&self.key, tbs)?.to_der().map_err(encoding)
    }
}

fn generate_key() -> Result<SigningKey, CaError> {
    // A uniformly random scalar: draw 48 bytes until they are a valid key (all but a
    // negligible fraction are).
    for _ in 0..16 {
        let bytes = random_bytes(48)?;
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            return Ok(key);
        }
    }
    Err(CaError::Entropy(
        "no valid P-384 key in 16 draws: the entropy source is broken".into(),
    ))
}

fn public_key_info(key: &SigningKey) -> Result<SubjectPublicKeyInfoOwned, CaError> {
    let der = key
        .verifying_key()
        .to_public_key_der()
        .map_err(|e| CaError::Encoding(e.to_string()))?;
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).map_err(encoding)
}

fn sign_with(key: &SigningKey, tbs: TbsCertificate) -> Result<Certificate, CaError> {
    let tbs_der = tbs.to_der().map_err(encoding)?;
    let signature: DerSignature = key.sign(&tbs_der);
    Ok(Certificate {
        tbs_certificate: tbs,
        signature_algorithm: ManufacturerCa::signature_algorithm(),
        signature: BitString::from_bytes(signature.as_bytes()).map_err(encoding)?,
    })
}

/// The CA's self-signed certificate: a root that may sign end-entity certificates only.
fn self_signed(key: &SigningKey) -> Result<Certificate, CaError> {
    let spki = public_key_info(key)?;
    let key_id = key_identifier(&spki);
    let name = Name::from_str(&format!(
        "CN=trustlaunch vTPM Manufacturer CA {},O=trustlaunch",
        hex(key_id.get(..4).unwrap_or(&key_id))
    ))
    .map_err(encoding)?;
    let extensions = vec![
        extension(
            &BasicConstraints {
                ca: true,
                path_len_constraint: Some(0),
            },
            true,
        )?,
        extension(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign), true)?,
        extension(
            &SubjectKeyIdentifier(OctetString::new(key_id).map_err(encoding)?),
            false,
        )?,
    ];
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: random_serial()?,
        signature: ManufacturerCa::signature_algorithm(),
        issuer: name.clone(),
        validity: validity_from_now()?,
        subject: name,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    sign_with(key, tbs)
}

/// Write `bytes` to `path` through a temporary file created with `mode` and renamed
/// over it, then sync the directory: readers see the old file or the whole new one.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// The default CA directory, resolved from what the caller read of its environment:
/// `/var/lib/trustlaunch/vtpm-ca` for root, else `$XDG_DATA_HOME/trustlaunch/vtpm-ca`
/// (an absolute XDG_DATA_HOME only, as the XDG base directory specification says), else
/// `$HOME/.local/share/trustlaunch/vtpm-ca`. None if there is no such directory.
pub fn default_dir(
    is_root: bool,
    xdg_data_home: Option<&Path>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    if is_root {
        return Some(PathBuf::from("/var/lib/trustlaunch/vtpm-ca"));
    }
    let data = match xdg_data_home.filter(|p| p.is_absolute()) {
        Some(d) => d.to_path_buf(),
        None => home.filter(|p| p.is_absolute())?.join(".local/share"),
    };
    Some(data.join("trustlaunch").join("vtpm-ca"))
}

/// Whether this process runs with effective user id 0.
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_then_loaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_dir = dir.path().join("a/b/ca");
        let ca = ManufacturerCa::load_or_create(&ca_dir).expect("create");
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&ca_dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&ca_dir), 0o700);
        let again = ManufacturerCa::load_or_create(&ca_dir).expect("load");
        assert_eq!(ca.certificate_der(), again.certificate_der());
        assert_eq!(ca.key_identifier(), again.key_identifier());
        assert!(ca
            .subject()
            .to_string()
            .contains("trustlaunch vTPM Manufacturer CA"));
        assert!(ca
            .certificate_pem()
            .starts_with("-----BEGIN CERTIFICATE-----\n"));
    }

    #[test]
    fn lost_certificate_is_reissued_from_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ManufacturerCa::load_or_create(dir.path()).expect("create");
        fs::remove_file(dir.path().join(CERT_FILE)).expect("rm");
        let again = ManufacturerCa::load_or_create(dir.path()).expect("reissue");
        assert_eq!(ca.subject(), again.subject());
        assert_eq!(ca.key_identifier(), again.key_identifier());
        assert!(dir.path().join(CERT_FILE).exists());
    }

    #[test]
    fn certificate_without_key_or_of_another_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        ManufacturerCa::load_or_create(dir.path()).expect("create");
        let other = ManufacturerCa::generate().expect("other");
        fs::write(dir.path().join(CERT_FILE), other.certificate_pem()).expect("write");
        let err = ManufacturerCa::load_or_create(dir.path()).expect_err("mismatch");
        assert!(err.to_string().contains("does not certify"), "{err}");
        fs::remove_file(dir.path().join(KEY_FILE)).expect("rm");
        let err = ManufacturerCa::load_or_create(dir.path()).expect_err("no key");
        assert!(err.to_string().contains("refusing to replace"), "{err}");
    }

    #[test]
    fn default_dirs() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            default_dir(true, Some(&p("/x")), Some(&p("/home/u"))),
            Some(p("/var/lib/trustlaunch/vtpm-ca"))
        );
        assert_eq!(
            default_dir(false, Some(&p("/x")), Some(&p("/home/u"))),
            Some(p("/x/trustlaunch/vtpm-ca"))
        );
        assert_eq!(
            default_dir(false, Some(&p("rel")), Some(&p("/home/u"))),
            Some(p("/home/u/.local/share/trustlaunch/vtpm-ca"))
        );
        assert_eq!(default_dir(false, None, None), None);
    }
}
