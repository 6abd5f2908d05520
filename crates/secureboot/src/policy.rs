//! The Secure Boot decision: may this image run? One function, [`verify_image`], answers it
//! for the two loaders of the boot chain — UEFI firmware (EDK2's DxeImageVerificationLib) and
//! shim — in their own orders, and says which database entry allowed or denied the image.
//! It never loads or measures an image and holds no state between calls.

use crate::authenticode::{common_name, AuthenticodeSignature};
use crate::esl::{x509_hash_guid, Signature, SignatureList};
use crate::hash::HashAlgorithm;
use crate::pe::{DigestFlavor, PeImage, WIN_CERT_TYPE_PKCS_SIGNED_DATA};
use crate::sbat::{self, SbatLevel};
use crate::x509::Certificate;
use crate::{Error, Result};
use openssl::x509::X509;
use std::fmt;

/// The firmware's image security databases (UEFI 2.10, 32.6.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Databases {
    /// The allowed signatures database, `db`.
    pub db: Vec<SignatureList>,
    /// The forbidden signatures database, `dbx`.
    pub dbx: Vec<SignatureList>,
}

/// Which database an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseName {
    Db,
    Dbx,
    /// shim's built-in allow list (`.vendor_cert` built with VENDOR_DB_FILE).
    VendorDb,
    /// shim's built-in deny list (`.vendor_cert`'s deauthorized part).
    VendorDbx,
    /// shim's built-in vendor certificate (VENDOR_CERT_FILE).
    VendorCert,
    MokList,
    MokListX,
}

impl fmt::Display for DatabaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Db => "db",
            Self::Dbx => "dbx",
            Self::VendorDb => "shim vendor_db",
            Self::VendorDbx => "shim vendor_dbx",
            Self::VendorCert => "shim vendor certificate",
            Self::MokList => "MokList",
            Self::MokListX => "MokListX",
        })
    }
}

/// One entry of a database: its list and its position in that list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef {
    pub database: DatabaseName,
    pub list: usize,
    pub index: usize,
}

impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.database == DatabaseName::VendorCert {
            return write!(f, "{}", self.database);
        }
        write!(
            f,
            "{} list {} entry {}",
            self.database, self.list, self.index
        )
    }
}

/// What allowed an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// A signature chained to this certificate entry (its subject's commonName).
    Certificate { entry: EntryRef, subject: String },
    /// The image's digest is listed.
    ImageHash {
        entry: EntryRef,
        algorithm: HashAlgorithm,
    },
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificate { entry, subject } => write!(f, "{subject} ({entry})"),
            Self::ImageHash { entry, algorithm } => write!(f, "{algorithm} image hash ({entry})"),
        }
    }
}

/// Why an image was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// No signature, and the image's hash is not in an allow list.
    Unsigned,
    /// The image's digest is not the one its signature signed.
    DigestMismatch {
        algorithm: HashAlgorithm,
        signed: String,
        computed: String,
    },
    /// Signed, and the digest matches, but no allowed certificate vouches for the signer.
    SignerNotTrusted,
    /// A signature chains to a forbidden certificate.
    RevokedCertificate { entry: EntryRef, subject: String },
    /// A certificate of the signature (or the allowing db certificate) has its
    /// TBSCertificate hash in dbx; no timestamp database is consulted.
    RevokedCertificateHash { entry: EntryRef, subject: String },
    /// The image's digest is forbidden.
    RevokedImageHash {
        entry: EntryRef,
        algorithm: HashAlgorithm,
    },
    /// shim's SBAT: a component's generation is below the SbatLevel's.
    SbatRevoked {
        component: String,
        generation: u16,
        minimum: u16,
    },
    /// shim's SBAT: a level is set and the image (loaded by shim itself) has no `.sbat`.
    SbatMissing,
    /// The image (or a structure in it) does not parse.
    Malformed(Error),
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsigned => f.write_str("unsigned, and its hash is in no allow list"),
            Self::DigestMismatch { algorithm, signed, computed } => write!(f, "digest mismatch: the signature signed {algorithm} {signed}, the image hashes to {computed}"),
            Self::SignerNotTrusted => f.write_str("signer not trusted: no allowed certificate vouches for the signature"),
            Self::RevokedCertificate { entry, subject } => write!(f, "revoked: the signature chains to {subject} ({entry})"),
            Self::RevokedCertificateHash { entry, subject } => write!(f, "revoked: certificate {subject} has its TBS hash in {entry}"),
            Self::RevokedImageHash { entry, algorithm } => write!(f, "revoked: the image's {algorithm} hash is in {entry}"),
            Self::SbatRevoked { component, generation, minimum } => write!(f, "SBAT: component {component} generation {generation} is revoked (SbatLevel requires {minimum})"),
            Self::SbatMissing => f.write_str("SBAT: the image has no .sbat section"),
            Self::Malformed(e) => write!(f, "malformed: {e}"),
        }
    }
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed { authority: Authority },
    Denied { reason: DenyReason },
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }
}

/// What shim adds to the firmware's databases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShimPolicy {
    /// VENDOR_CERT_FILE: one DER certificate built into shim.
    pub vendor_cert: Option<Vec<u8>>,
    /// VENDOR_DB_FILE: an allow list built into shim.
    pub vendor_db: Vec<SignatureList>,
    /// VENDOR_DBX_FILE: a deny list built into shim.
    pub vendor_dbx: Vec<SignatureList>,
    /// The SbatLevel in force (None: SBAT not checked).
    pub sbat_level: Option<SbatLevel>,
    pub mok_list: Vec<SignatureList>,
    pub mok_list_x: Vec<SignatureList>,
    /// The image is verified through the shim lock protocol (grub asking about a kernel),
    /// where a missing `.sbat` is allowed; false when shim loads the image itself.
    pub via_protocol: bool,
}

impl ShimPolicy {
    /// shim's built-in policy, read from a shim binary: `.vendor_cert` (shim's `cert_table`:
    /// sizes and offsets of the authorized and deauthorized parts) and the "automatic" level
    /// of `.sbatlevel`, which shim applies when no newer SbatLevel is set.
    pub fn from_shim_image(shim: &[u8]) -> Result<Self> {
        let pe = PeImage::parse(shim)?;
        let mut policy = ShimPolicy::default();
        if let Some(table) = pe.section_data(b".vendor_cert")? {
            let what = ".vendor_cert section";
            let word = |at: usize| crate::bytes::u32_at(table, at, what).map(|v| v as usize);
            let (auth_size, deauth_size, auth_off, deauth_off) =
                (word(0)?, word(4)?, word(8)?, word(12)?);
            let authorized = crate::bytes::slice(table, auth_off, auth_size, what)?;
            let deauthorized = crate::bytes::slice(table, deauth_off, deauth_size, what)?;
            if !authorized.is_empty() {
                // VENDOR_CERT_FILE builds hold a DER certificate; VENDOR_DB_FILE builds an ESL.
                if X509::from_der(authorized).is_ok() {
                    policy.vendor_cert = Some(authorized.to_vec());
                } else {
                    policy.vendor_db = crate::esl::parse(authorized)?;
                }
            }
            policy.vendor_dbx = crate::esl::parse(deauthorized)?;
        }
        if let Some(levels) = pe.section_data(b".sbatlevel")? {
            policy.sbat_level = Some(SbatLevel::from_shim_section(levels)?.0);
        }
        Ok(policy)
    }
}

/// Who is loading the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loader {
    /// UEFI firmware's LoadImage (EDK2 DxeImageVerificationLib): shim, or any image the
    /// firmware loads directly.
    Firmware,
    /// shim, loading grub itself or answering grub's shim-lock request for a kernel.
    Shim(Box<ShimPolicy>),
}

/// Decides whether `image` may run when `loader` loads it with `dbs` in force.
pub fn verify_image(dbs: &Databases, image: &[u8], loader: &Loader) -> Verdict {
    verify_image_with(dbs, image, loader, &KnownDigests::default())
}

/// Authenticode digests of the image a caller has already computed (firmware that measures
/// an image hashes it in every PCR bank anyway): the verdict uses them instead of hashing the
/// image again. A digest is used only for its exact algorithm and flavour.
#[derive(Debug, Clone, Default)]
pub struct KnownDigests(Vec<(HashAlgorithm, DigestFlavor, Vec<u8>)>);

impl KnownDigests {
    pub fn insert(&mut self, alg: HashAlgorithm, flavor: DigestFlavor, digest: Vec<u8>) {
        self.0.push((alg, flavor, digest));
    }

    /// The known digest, or the image hashed now.
    fn digest(
        &self,
        pe: &PeImage<'_>,
        alg: HashAlgorithm,
        flavor: DigestFlavor,
    ) -> Result<Vec<u8>> {
        match self.0.iter().find(|(a, f, _)| *a == alg && *f == flavor) {
            Some((_, _, d)) => Ok(d.clone()),
            None => pe.authenticode_digest(alg, flavor),
        }
    }

    /// [`Self::digest`], remembering a digest it had to compute: an image signed twice with
    /// the same algorithm (shim carries Microsoft's 2011 and 2023 signatures) is hashed once.
    fn digest_once(
        &mut self,
        pe: &PeImage<'_>,
        alg: HashAlgorithm,
        flavor: DigestFlavor,
    ) -> Result<Vec<u8>> {
        let d = self.digest(pe, alg, flavor)?;
        if !self.0.iter().any(|(a, f, _)| *a == alg && *f == flavor) {
            self.insert(alg, flavor, d.clone());
        }
        Ok(d)
    }
}

/// [`verify_image`], reusing digests the caller computed for this very image.
pub fn verify_image_with(
    dbs: &Databases,
    image: &[u8],
    loader: &Loader,
    known: &KnownDigests,
) -> Verdict {
    let decided = match loader {
        Loader::Firmware => firmware(dbs, image, known),
        Loader::Shim(shim) => shim_verify(dbs, shim, image, known),
    };
    match decided {
        Ok(v) => v,
        Err(e) => Verdict::Denied {
            reason: DenyReason::Malformed(e),
        },
    }
}

fn denied(reason: DenyReason) -> Result<Verdict> {
    Ok(Verdict::Denied { reason })
}

/// The X.509 entries of a database that OpenSSL can parse (EDK2 skips the others too: its
/// verification with them fails).
fn certificates(db: &[SignatureList], database: DatabaseName) -> Vec<(EntryRef, X509)> {
    let mut out = Vec::new();
    for (list, l) in db.iter().enumerate() {
        for (index, _, s) in l.entries() {
            if let Signature::X509(der) = s {
                if let Ok(c) = X509::from_der(der) {
                    out.push((
                        EntryRef {
                            database,
                            list,
                            index,
                        },
                        c,
                    ));
                }
            }
        }
    }
    out
}

fn find_hash(
    db: &[SignatureList],
    database: DatabaseName,
    alg: HashAlgorithm,
    digest: &[u8],
) -> Option<EntryRef> {
    db.iter().enumerate().find_map(|(list, l)| {
        l.entries().find_map(|(index, _, s)| match s {
            Signature::Hash(a, h) if a == alg && h == digest => Some(EntryRef {
                database,
                list,
                index,
            }),
            _ => None,
        })
    })
}

/// EDK2's `IsCertHashFoundInDbx`: the TBSCertificate hash of `cert` in an X509_SHA* entry.
fn find_tbs_hash(db: &[SignatureList], database: DatabaseName, cert: &X509) -> Option<EntryRef> {
    find_tbs_hash_der(db, database, &cert.to_der().ok()?)
}

fn find_tbs_hash_der(db: &[SignatureList], database: DatabaseName, der: &[u8]) -> Option<EntryRef> {
    let tbs = crate::der::tbs_certificate(der).ok()?;
    db.iter().enumerate().find_map(|(list, l)| {
        l.entries().find_map(|(index, _, s)| match s {
            Signature::X509Hash(a, h, _) if x509_hash_guid(a).is_some() && a.digest(tbs) == h => {
                Some(EntryRef {
                    database,
                    list,
                    index,
                })
            }
            _ => None,
        })
    })
}

thread_local! {
    static FAST_PATH: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Runs `f` with every chain question answered by OpenSSL, as EDK2 answers it: the
/// reference the verification without OpenSSL is tested against.
pub fn without_fast_path<R>(f: impl FnOnce() -> R) -> R {
    let before = FAST_PATH.with(|c| c.replace(false));
    let r = f();
    FAST_PATH.with(|c| c.set(before));
    r
}

/// An X.509 entry of a database: read strictly when [`Certificate::parse`] vouches for it,
/// by OpenSSL only when a question needs it.
struct DbCert<'a> {
    entry: EntryRef,
    der: &'a [u8],
    strict: Option<Certificate<'a>>,
    openssl: std::cell::OnceCell<Option<X509>>,
}

impl<'a> DbCert<'a> {
    fn all(db: &'a [SignatureList], database: DatabaseName) -> Vec<DbCert<'a>> {
        let fast = FAST_PATH.with(std::cell::Cell::get);
        let mut out = Vec::new();
        for (list, l) in db.iter().enumerate() {
            for (index, _, s) in l.entries() {
                if let Signature::X509(der) = s {
                    out.push(DbCert {
                        entry: EntryRef {
                            database,
                            list,
                            index,
                        },
                        der,
                        strict: if fast { Certificate::parse(der) } else { None },
                        openssl: std::cell::OnceCell::new(),
                    });
                }
            }
        }
        out
    }

    /// Whether `sig` chains to this certificate (EDK2's `Pkcs7Verify` with it alone
    /// trusted), and its commonName; `None` for an entry OpenSSL cannot read, which EDK2
    /// skips.
    fn chains(&self, sig: &AuthenticodeSignature<'_>) -> Option<(bool, String)> {
        if let Some(c) = &self.strict {
            if let Some(answer) = sig.verify_chain_fast(c) {
                return Some((answer, c.subject.cn.to_string()));
            }
        }
        let x = self
            .openssl
            .get_or_init(|| X509::from_der(self.der).ok())
            .as_ref()?;
        Some((sig.verify_chain(x), common_name(x)))
    }
}

/// EDK2's `IsForbiddenByDbx`: a dbx certificate the signature chains to, then any certificate
/// of the signature whose TBS hash is in dbx (without a dbt, the timestamp override never
/// applies).
fn forbidden_by_dbx(
    sig: &AuthenticodeSignature<'_>,
    covers: bool,
    dbx: &[SignatureList],
) -> Result<Option<DenyReason>> {
    if covers {
        for cert in DbCert::all(dbx, DatabaseName::Dbx) {
            if let Some((true, subject)) = cert.chains(sig) {
                return Ok(Some(DenyReason::RevokedCertificate {
                    entry: cert.entry,
                    subject,
                }));
            }
        }
    }
    let tbs_hashes = dbx.iter().any(|l| {
        l.entries().any(
            |(_, _, s)| matches!(s, Signature::X509Hash(a, _, _) if x509_hash_guid(a).is_some()),
        )
    });
    // Without TBS hashes in dbx the signature's certificates are not needed: OpenSSL reads
    // them only to report a signature it cannot read as malformed, and the strict reading
    // vouches that it can.
    if !tbs_hashes && sig.read_strictly() {
        return Ok(None);
    }
    for cert in sig.certificates()? {
        if let Some(entry) = find_tbs_hash(dbx, DatabaseName::Dbx, &cert) {
            return Ok(Some(DenyReason::RevokedCertificateHash {
                entry,
                subject: common_name(&cert),
            }));
        }
    }
    Ok(None)
}

/// EDK2 `DxeImageVerificationHandler`, in its order.
fn firmware(dbs: &Databases, image: &[u8], known: &KnownDigests) -> Result<Verdict> {
    let pe = PeImage::parse(image)?;
    if !pe.is_signed() {
        // Unsigned: only a SHA-256 hash in db (and not in dbx) lets it run.
        let d = known.digest(&pe, HashAlgorithm::Sha256, DigestFlavor::Firmware)?;
        if let Some(entry) = find_hash(&dbs.dbx, DatabaseName::Dbx, HashAlgorithm::Sha256, &d) {
            return denied(DenyReason::RevokedImageHash {
                entry,
                algorithm: HashAlgorithm::Sha256,
            });
        }
        if let Some(entry) = find_hash(&dbs.db, DatabaseName::Db, HashAlgorithm::Sha256, &d) {
            return Ok(Verdict::Allowed {
                authority: Authority::ImageHash {
                    entry,
                    algorithm: HashAlgorithm::Sha256,
                },
            });
        }
        return denied(DenyReason::Unsigned);
    }
    let mut allowed: Option<Authority> = None;
    let mut failure: Option<DenyReason> = None;
    let mut digests = known.clone();
    for wc in pe.certificates()?.iter().filter(|c| c.is_pkcs7()) {
        let sig = match AuthenticodeSignature::parse(wc.data, wc.offset.saturating_add(8)) {
            Ok(s) if HashAlgorithm::AUTHENTICODE.contains(&s.image_hash_algorithm()) => s,
            // EDK2 skips a signature it cannot hash for (HashPeImageByType fails).
            Ok(_) => continue,
            Err(e) => {
                failure.get_or_insert(DenyReason::Malformed(e));
                continue;
            }
        };
        let alg = sig.image_hash_algorithm();
        let digest = digests.digest_once(&pe, alg, DigestFlavor::Firmware)?;
        let covers = sig.covers(alg, &digest);
        if let Some(reason) = forbidden_by_dbx(&sig, covers, &dbs.dbx)? {
            return denied(reason);
        }
        if allowed.is_none() {
            match allowed_by_db(&sig, covers, dbs) {
                Ok(a) => allowed = Some(a),
                Err(reason) => {
                    let reason = if covers {
                        reason
                    } else {
                        mismatch(&sig, alg, &digest)
                    };
                    failure.get_or_insert(reason);
                }
            }
        }
        if let Some(entry) = find_hash(&dbs.dbx, DatabaseName::Dbx, alg, &digest) {
            return denied(DenyReason::RevokedImageHash {
                entry,
                algorithm: alg,
            });
        }
        if allowed.is_none() {
            if let Some(entry) = find_hash(&dbs.db, DatabaseName::Db, alg, &digest) {
                allowed = Some(Authority::ImageHash {
                    entry,
                    algorithm: alg,
                });
            }
        }
    }
    match allowed {
        Some(authority) => Ok(Verdict::Allowed { authority }),
        None => denied(failure.unwrap_or(DenyReason::Unsigned)),
    }
}

fn mismatch(sig: &AuthenticodeSignature<'_>, alg: HashAlgorithm, digest: &[u8]) -> DenyReason {
    DenyReason::DigestMismatch {
        algorithm: alg,
        signed: hex::encode(sig.digest()),
        computed: hex::encode(digest),
    }
}

/// EDK2's `IsAllowedByDb`: the first db certificate the signature chains to, unless that
/// certificate's own TBS hash is in dbx.
fn allowed_by_db(
    sig: &AuthenticodeSignature<'_>,
    covers: bool,
    dbs: &Databases,
) -> std::result::Result<Authority, DenyReason> {
    if !covers {
        return Err(DenyReason::SignerNotTrusted);
    }
    for cert in DbCert::all(&dbs.db, DatabaseName::Db) {
        if let Some((true, subject)) = cert.chains(sig) {
            if let Some(e) = find_tbs_hash_der(&dbs.dbx, DatabaseName::Dbx, cert.der) {
                return Err(DenyReason::RevokedCertificateHash { entry: e, subject });
            }
            return Ok(Authority::Certificate {
                entry: cert.entry,
                subject,
            });
        }
    }
    Err(DenyReason::SignerNotTrusted)
}

/// The first of shim's hash look-ups (database, digest) that finds the image.
type HashLookup<'a> = (
    &'a Vec<SignatureList>,
    DatabaseName,
    HashAlgorithm,
    &'a Vec<u8>,
);

fn first_hash(lookups: &[HashLookup<'_>]) -> Option<(EntryRef, HashAlgorithm)> {
    lookups
        .iter()
        .find_map(|&(db, name, alg, d)| find_hash(db, name, alg, d).map(|e| (e, alg)))
}

/// shim's modsign EKU (1.3.6.1.4.1.2312.16.1.2) as DER: shim's `verify_eku` refuses to use a
/// certificate carrying it for images (it is meant for kernel modules only).
const OID_EKU_MODSIGN: &[u8] = &[
    0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x92, 0x08, 0x10, 0x01, 0x02,
];

fn usable_by_shim(cert: &X509) -> bool {
    let der = cert.to_der().unwrap_or_default();
    !der.windows(OID_EKU_MODSIGN.len())
        .any(|w| w == OID_EKU_MODSIGN)
}

/// shim's `check_db_cert_in_ram` reads only the first entry of each X.509 list (it never
/// steps to the next EFI_SIGNATURE_DATA), and skips certificates `verify_eku` refuses.
fn shim_certificates(db: &[SignatureList], database: DatabaseName) -> Vec<(EntryRef, X509)> {
    certificates(db, database)
        .into_iter()
        .filter(|(e, c)| e.index == 0 && usable_by_shim(c))
        .collect()
}

/// shim 16 `verify_buffer`: `verify_buffer_authenticode` (hashes in vendor dbx, dbx and
/// MokListX deny; hashes in db, vendor db and MokList allow; then each PKCS#7 signature is
/// checked against the deny lists and the allow lists by certificate and the vendor
/// certificate, always with the SHA-256 digest, and any one allowed signature suffices),
/// then SBAT.
fn shim_verify(
    dbs: &Databases,
    shim: &ShimPolicy,
    image: &[u8],
    known: &KnownDigests,
) -> Result<Verdict> {
    let pe = PeImage::parse(image)?;
    let sha256 = known.digest(&pe, HashAlgorithm::Sha256, DigestFlavor::Shim)?;
    let sha1 = known.digest(&pe, HashAlgorithm::Sha1, DigestFlavor::Shim)?;
    let deny_hashes = [
        (
            &shim.vendor_dbx,
            DatabaseName::VendorDbx,
            HashAlgorithm::Sha256,
            &sha256,
        ),
        (
            &shim.vendor_dbx,
            DatabaseName::VendorDbx,
            HashAlgorithm::Sha1,
            &sha1,
        ),
        (&dbs.dbx, DatabaseName::Dbx, HashAlgorithm::Sha256, &sha256),
        (&dbs.dbx, DatabaseName::Dbx, HashAlgorithm::Sha1, &sha1),
        (
            &shim.mok_list_x,
            DatabaseName::MokListX,
            HashAlgorithm::Sha256,
            &sha256,
        ),
    ];
    if let Some((entry, algorithm)) = first_hash(&deny_hashes) {
        return denied(DenyReason::RevokedImageHash { entry, algorithm });
    }
    let allow_hashes = [
        (&dbs.db, DatabaseName::Db, HashAlgorithm::Sha256, &sha256),
        (&dbs.db, DatabaseName::Db, HashAlgorithm::Sha1, &sha1),
        (
            &shim.vendor_db,
            DatabaseName::VendorDb,
            HashAlgorithm::Sha256,
            &sha256,
        ),
        (
            &shim.mok_list,
            DatabaseName::MokList,
            HashAlgorithm::Sha256,
            &sha256,
        ),
    ];
    let authority = match first_hash(&allow_hashes) {
        Some((entry, algorithm)) => Authority::ImageHash { entry, algorithm },
        None => match shim_signatures(dbs, shim, &pe, &sha256)? {
            Ok(authority) => authority,
            Err(reason) => return denied(reason),
        },
    };
    // SBAT comes after the signature checks in shim 16.
    if let Some(level) = shim.sbat_level.as_ref().filter(|l| !l.entries.is_empty()) {
        match pe.sbat_section()? {
            Some(section) => {
                let entries = sbat::parse_section(section)?;
                if let Some((e, l)) = level.revoked(&entries) {
                    return denied(DenyReason::SbatRevoked {
                        component: e.component.clone(),
                        generation: e.generation,
                        minimum: l.generation,
                    });
                }
            }
            None if !shim.via_protocol => return denied(DenyReason::SbatMissing),
            None => {}
        }
    }
    Ok(Verdict::Allowed { authority })
}

/// shim's per-signature loop: the first signature that an allow list or the vendor
/// certificate vouches for (and no deny list forbids) allows the image; a signature denied
/// by certificate only fails itself.
fn shim_signatures(
    dbs: &Databases,
    shim: &ShimPolicy,
    pe: &PeImage<'_>,
    sha256: &[u8],
) -> Result<std::result::Result<Authority, DenyReason>> {
    if !pe.is_signed() {
        return Ok(Err(DenyReason::Unsigned));
    }
    let vendor_cert = shim
        .vendor_cert
        .as_deref()
        .and_then(|d| X509::from_der(d).ok());
    let deny = [
        (&shim.vendor_dbx, DatabaseName::VendorDbx),
        (&dbs.dbx, DatabaseName::Dbx),
        (&shim.mok_list_x, DatabaseName::MokListX),
    ];
    let mut allow = shim_certificates(&dbs.db, DatabaseName::Db);
    allow.extend(shim_certificates(&shim.vendor_db, DatabaseName::VendorDb));
    allow.extend(shim_certificates(&shim.mok_list, DatabaseName::MokList));
    if let Some(c) = vendor_cert {
        allow.push((
            EntryRef {
                database: DatabaseName::VendorCert,
                list: 0,
                index: 0,
            },
            c,
        ));
    }
    let mut failure: Option<DenyReason> = None;
    let certs = pe.certificates_as(DigestFlavor::Shim)?;
    for wc in certs
        .iter()
        .filter(|c| c.certificate_type == WIN_CERT_TYPE_PKCS_SIGNED_DATA)
    {
        let sig = match AuthenticodeSignature::parse(wc.data, wc.offset.saturating_add(8)) {
            Ok(s) => s,
            Err(e) => {
                failure.get_or_insert(DenyReason::Malformed(e));
                continue;
            }
        };
        if !sig.covers(HashAlgorithm::Sha256, sha256) {
            failure.get_or_insert(mismatch(&sig, HashAlgorithm::Sha256, sha256));
            continue;
        }
        let revoked = deny.iter().find_map(|(db, name)| {
            shim_certificates(db, *name)
                .into_iter()
                .find(|(_, cert)| sig.verify_chain(cert))
        });
        if let Some((entry, cert)) = revoked {
            failure.get_or_insert(DenyReason::RevokedCertificate {
                entry,
                subject: common_name(&cert),
            });
            continue;
        }
        if let Some((entry, cert)) = allow.iter().find(|(_, cert)| sig.verify_chain(cert)) {
            return Ok(Ok(Authority::Certificate {
                entry: *entry,
                subject: common_name(cert),
            }));
        }
        failure.get_or_insert(DenyReason::SignerNotTrusted);
    }
    Ok(Err(failure.unwrap_or(DenyReason::SignerNotTrusted)))
}
