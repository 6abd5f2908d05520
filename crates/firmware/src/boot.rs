//! One boot of a node image, in the order OVMF, shim and Debian's grub run it:
//!
//! 1. firmware (PCR 0 platform, PCR 7 Secure Boot variables and separator, PCR 1 boot
//!    options, PCR 4 boot-manager actions, separators 0-6, then the boot option that loads
//!    shim: its Secure Boot verdict against db/dbx, its authority in PCR 7, its Authenticode
//!    digest in PCR 4);
//! 2. shim (MokList, MokListX and MokListTrusted into PCR 14, the SbatLevel it applies into
//!    PCR 7; grub verified with its vendor certificate, SBAT and MokList, its authority into
//!    PCR 7 once, grub into PCR 4);
//! 3. grub (its embedded configuration, then the configuration on disk: commands into PCR 8,
//!    files into PCR 9; the kernel verified through shim, measured into PCR 4; the command
//!    line into PCR 8);
//! 4. ExitBootServices (PCR 5), and the kernel's module signature checks (not measured).
//!
//! A denial stops the boot where the real chain stops, naming the component, its path and
//! the reason. No file or device I/O: the caller hands in the ESP's files and the TPM.

use crate::grub::image::GrubModules;
use crate::grub::script::{GrubHost, Interpreter, ScriptError};
use crate::grub::BOOT_DEVICE;
use crate::measure::{Measurer, Pcrs, TpmFailure};
use crate::platform::{self, variable_data, GLOBAL};
use eventlog::EventType;
use secureboot::esl::{self, SignatureList};
use secureboot::guid::{self, Guid};
use secureboot::module_sig::{self, ModuleVerdict};
use secureboot::pe::{DigestFlavor, PeImage};
use secureboot::policy::{Authority, DatabaseName, EntryRef};
use secureboot::varstore::VariableStore;
use secureboot::{verify_image_with, Databases, KnownDigests, Loader, ShimPolicy, Verdict};
use std::collections::BTreeMap;

/// Where the default removable-media boot path puts shim.
pub const SHIM_PATH: &str = "/EFI/BOOT/BOOTX64.EFI";
/// Where shim looks for grub, beside itself.
pub const GRUB_PATH: &str = "/EFI/BOOT/grubx64.efi";
/// Kernel modules the node loads after boot (the image's drivers).
pub const MODULES_DIR: &str = "/modules";

/// EDK2's `SecureBootEnable` variable (SecureBootConfigDxe): 0 turns Secure Boot off even
/// with a PK enrolled.
const SECURE_BOOT_ENABLE: Guid = Guid::parse("f0a30bc7-af08-4556-99c4-001009c93a44");

/// The files of a node image's ESP, by path. FAT is case-insensitive, so lookups are too.
#[derive(Debug, Clone, Default)]
pub struct NodeImage {
    files: BTreeMap<String, (String, Vec<u8>)>,
    /// Content identities the caller vouches for (same id, same bytes).
    ids: BTreeMap<String, u64>,
}

fn key(path: &str) -> String {
    path.trim_start_matches('/')
        .replace('\\', "/")
        .to_ascii_lowercase()
}

impl NodeImage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a file (`EFI/BOOT/BOOTX64.EFI`, `/vmlinuz`...).
    pub fn insert(&mut self, path: &str, bytes: Vec<u8>) {
        let shown = format!("/{}", path.trim_start_matches('/').replace('\\', "/"));
        self.files.insert(key(path), (shown, bytes));
    }

    /// Add a file with a content identity: the caller guarantees that two files with one id
    /// have the same bytes (a hard-linked file's device, inode, size and modification time),
    /// so a [`BootCache`] may reuse its measurements.
    pub fn insert_identified(&mut self, path: &str, bytes: Vec<u8>, id: u64) {
        self.ids.insert(key(path), id);
        self.insert(path, bytes);
    }

    fn content_id(&self, path: &str) -> Option<u64> {
        self.ids.get(&key(path)).copied()
    }

    /// A file's bytes.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(&key(path)).map(|(_, b)| b.as_slice())
    }

    /// A file or a directory (a prefix of some file's path).
    pub fn exists(&self, path: &str) -> bool {
        let k = key(path);
        let k = k.trim_end_matches('/');
        k.is_empty()
            || self.files.contains_key(k)
            || self.files.keys().any(|f| f.starts_with(&format!("{k}/")))
    }

    /// The kernel modules under [`MODULES_DIR`], in path order.
    pub fn modules(&self) -> Vec<(&str, &[u8])> {
        let dir = format!("{}/", key(MODULES_DIR));
        self.files
            .iter()
            .filter(|(k, _)| k.starts_with(&dir) && k.ends_with(".ko"))
            .map(|(_, (shown, b))| (shown.as_str(), b.as_slice()))
            .collect()
    }
}

/// A component that ran (or was loaded), with what vouched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// `shim`, `grub`, `kernel`, `initrd`, `grub.cfg`, `module NAME`.
    pub name: String,
    pub path: String,
    /// SHA-256 of what was measured (the Authenticode digest for PE images, the file's
    /// digest otherwise).
    pub sha256: String,
    /// The Secure Boot authority that allowed it (None when Secure Boot is off or the
    /// component is not verified, as for grub.cfg and the initrd).
    pub authority: Option<String>,
}

/// Why the boot stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub component: String,
    pub path: String,
    pub reason: String,
    /// True for a Secure Boot denial, false for a missing or broken component.
    pub security_violation: bool,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.security_violation {
            "Secure Boot denied"
        } else {
            "boot failed at"
        };
        write!(
            f,
            "{what} {} ({}): {}",
            self.component, self.path, self.reason
        )
    }
}

/// The result of one boot.
#[derive(Debug, Clone)]
pub struct BootReport {
    /// The SecureBoot variable the firmware measured.
    pub secure_boot: bool,
    /// What ran, in order.
    pub components: Vec<Component>,
    /// None when the kernel started and every module verified.
    pub stopped: Option<Stop>,
    /// The TCG event log, in OVMF's binary format (crypto-agile, the TPM's banks).
    pub event_log: Vec<u8>,
}

impl BootReport {
    pub fn booted(&self) -> bool {
        self.stopped.is_none()
    }
}

/// What makes a boot impossible before any component runs.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("variable store: {0}")]
    Variables(String),
    #[error(transparent)]
    Tpm(#[from] TpmFailure),
}

fn sha256_hex(bytes: &[u8]) -> String {
    eventlog::AlgorithmId::SHA256
        .hash(bytes)
        .map(hex)
        .unwrap_or_default()
}

fn hex(bytes: Vec<u8>) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The variable name, vendor and EFI_SIGNATURE_DATA an authority is measured as: the
/// database entry that allowed the image (EDK2 `MeasureVariable` of db; shim's
/// `MokListRT`, which mirrors the MokList and its vendor certificate).
fn authority_variable(
    authority: &Authority,
    dbs: &Databases,
    shim: Option<&ShimPolicy>,
) -> Option<(&'static str, Guid, Vec<u8>)> {
    let entry: &EntryRef = match authority {
        Authority::Certificate { entry, .. } | Authority::ImageHash { entry, .. } => entry,
    };
    let from = |lists: &[SignatureList]| -> Option<Vec<u8>> {
        let sd = lists.get(entry.list)?.signatures.get(entry.index)?;
        Some([sd.owner.0.as_slice(), &sd.data].concat())
    };
    match entry.database {
        DatabaseName::Db => Some(("db", guid::EFI_IMAGE_SECURITY_DATABASE_GUID, from(&dbs.db)?)),
        DatabaseName::MokList => Some(("MokListRT", guid::SHIM_LOCK_GUID, from(&shim?.mok_list)?)),
        DatabaseName::VendorDb => {
            Some(("MokListRT", guid::SHIM_LOCK_GUID, from(&shim?.vendor_db)?))
        }
        DatabaseName::VendorCert => {
            let cert = shim?.vendor_cert.as_ref()?;
            Some((
                "MokListRT",
                guid::SHIM_LOCK_GUID,
                [guid::SHIM_LOCK_GUID.0.as_slice(), cert].concat(),
            ))
        }
        DatabaseName::Dbx | DatabaseName::VendorDbx | DatabaseName::MokListX => None,
    }
}

/// shim's runtime mirrors: MokListRT is the MokList followed by the vendor certificate as an
/// EFI_CERT_X509 list owned by shim; MokListXRT is MokListX followed by the vendor dbx.
fn mok_mirrors(
    shim_image: &[u8],
    policy: &ShimPolicy,
    vars: &VariableStore<'_>,
) -> (Vec<u8>, Vec<u8>) {
    let var = |name: &str| {
        vars.get(name, guid::SHIM_LOCK_GUID)
            .map(|v| v.data.to_vec())
            .unwrap_or_default()
    };
    let mut mok = var("MokList");
    if let Some(cert) = &policy.vendor_cert {
        if let Ok(list) = SignatureList::new(
            guid::EFI_CERT_X509_GUID,
            guid::SHIM_LOCK_GUID,
            vec![cert.clone()],
        ) {
            list.encode(&mut mok);
        }
    }
    let mut mokx = var("MokListX");
    mokx.extend_from_slice(&vendor_dbx_bytes(shim_image));
    (mok, mokx)
}

/// The deauthorized part of shim's `.vendor_cert`, as bytes (shim measures it raw).
fn vendor_dbx_bytes(shim_image: &[u8]) -> Vec<u8> {
    let Ok(pe) = PeImage::parse(shim_image) else {
        return Vec::new();
    };
    let Ok(Some(table)) = pe.section_data(b".vendor_cert") else {
        return Vec::new();
    };
    let word = |at: usize| -> Option<usize> {
        let b = table.get(at..at + 4)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    };
    match (word(4), word(12)) {
        (Some(size), Some(off)) => table
            .get(off..off.saturating_add(size))
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The SbatLevel text shim applies (the "previous" policy of its `.sbatlevel`, unless a
/// newer SbatLevel variable is set).
fn sbat_level_text(shim_image: &[u8], vars: &VariableStore<'_>) -> Option<Vec<u8>> {
    let builtin = (|| {
        let pe = PeImage::parse(shim_image).ok()?;
        let section = pe.section_data(b".sbatlevel").ok()??;
        let word = |at: usize| -> Option<usize> {
            let b = section.get(at..at + 4)?;
            usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
        };
        let previous = word(4)?.checked_add(4)?;
        let text = section.get(previous..)?;
        let end = text.iter().position(|b| *b == 0).unwrap_or(text.len());
        Some(text.get(..end)?.to_vec())
    })();
    let stored = vars
        .get("SbatLevel", guid::SHIM_LOCK_GUID)
        .map(|v| v.data.to_vec());
    // shim keeps the stored level unless its own is newer (by the `sbat,1,DATE` line).
    let date = |t: &[u8]| -> String {
        String::from_utf8_lossy(t)
            .lines()
            .next()
            .and_then(|l| l.split(',').nth(2))
            .unwrap_or("")
            .to_string()
    };
    match (builtin, stored) {
        (Some(b), Some(s)) => Some(if date(&b) > date(&s) { b } else { s }),
        (b, s) => b.or(s),
    }
}

/// What a host that boots many nodes from one image computes only once: the built-in
/// module-signing certificates of each kernel (by the kernel's SHA-256: inflating a kernel
/// costs far more than a boot), and the measurements of files the caller identifies by
/// content ([`NodeImage::insert_identified`]: hard-linked node disks share one identity).
#[derive(Default)]
pub struct BootCache {
    by_kernel: BTreeMap<String, Vec<Vec<u8>>>,
    /// (content id, what was measured) → digests in the log's banks.
    measurements: BTreeMap<(u64, &'static str), Vec<crate::measure::Digest>>,
}

impl BootCache {
    fn measured(&self, id: Option<u64>, kind: &'static str) -> Option<&[crate::measure::Digest]> {
        id.and_then(|id| self.measurements.get(&(id, kind)))
            .map(Vec::as_slice)
    }

    fn remember(
        &mut self,
        id: Option<u64>,
        kind: &'static str,
        digests: Vec<crate::measure::Digest>,
    ) {
        if let Some(id) = id {
            self.measurements.insert((id, kind), digests);
        }
    }

    /// The kernel's built-in certificates; `digest` identifies the kernel (its Authenticode
    /// SHA-256, which covers every section, as measured), or its file's SHA-256 is used.
    fn get(
        &mut self,
        kernel: &[u8],
        digest: Option<&str>,
    ) -> Result<Vec<openssl::x509::X509>, String> {
        let id = digest.map_or_else(|| sha256_hex(kernel), |d| format!("authenticode:{d}"));
        if !self.by_kernel.contains_key(&id) {
            let vmlinux = crate::kernel::inflate(kernel)?;
            let ders = module_sig::embedded_certificates(&vmlinux)
                .iter()
                .filter_map(|c| c.to_der().ok())
                .collect();
            self.by_kernel.insert(id.clone(), ders);
        }
        Ok(self
            .by_kernel
            .get(&id)
            .map(|ders| {
                ders.iter()
                    .filter_map(|d| openssl::x509::X509::from_der(d).ok())
                    .collect()
            })
            .unwrap_or_default())
    }
}

fn flavor_kind(flavor: DigestFlavor) -> &'static str {
    match flavor {
        DigestFlavor::Firmware => "authenticode-firmware",
        DigestFlavor::Shim => "authenticode-shim",
    }
}

/// Boot `image` with the firmware variables `vars_fd` (an OVMF_VARS image) into `tpm`.
pub fn boot(
    image: &NodeImage,
    vars_fd: &[u8],
    tpm: &mut dyn Pcrs,
) -> Result<BootReport, FirmwareError> {
    boot_with(image, vars_fd, tpm, &mut BootCache::default())
}

/// [`boot`], reusing the kernels' keys found by earlier boots.
pub fn boot_with(
    image: &NodeImage,
    vars_fd: &[u8],
    tpm: &mut dyn Pcrs,
    cache: &mut BootCache,
) -> Result<BootReport, FirmwareError> {
    let vars =
        VariableStore::parse(vars_fd).map_err(|e| FirmwareError::Variables(e.to_string()))?;
    let [pk, kek, db, dbx] = vars.secure_boot_variables();
    let enable = vars
        .get("SecureBootEnable", SECURE_BOOT_ENABLE)
        .map(|v| v.data.first().copied().unwrap_or(1) != 0)
        .unwrap_or(true);
    let secure_boot = !pk.1.is_empty() && enable;
    let parse_db = |name: &str, bytes: &[u8]| {
        esl::parse(bytes).map_err(|e| FirmwareError::Variables(format!("{name}: {e}")))
    };
    let dbs = Databases {
        db: parse_db("db", db.1)?,
        dbx: parse_db("dbx", dbx.1)?,
    };

    let mut m = Measurer::new(tpm)?;
    // PCR 0: the platform's firmware.
    m.data(0, EventType::EV_S_CRTM_VERSION, &[0, 0])?;
    for (contents, [base, len]) in platform::firmware_volumes() {
        let blob = [base.to_le_bytes(), len.to_le_bytes()].concat();
        m.other(
            0,
            EventType::EV_EFI_PLATFORM_FIRMWARE_BLOB,
            &contents,
            &blob,
        )?;
    }
    // PCR 7: the Secure Boot configuration, then its separator.
    m.data(
        7,
        EventType::EV_EFI_VARIABLE_DRIVER_CONFIG,
        &variable_data(GLOBAL, "SecureBoot", &[u8::from(secure_boot)]),
    )?;
    for (name, data) in [pk, kek, db, dbx] {
        let vendor = if name == "db" || name == "dbx" {
            guid::EFI_IMAGE_SECURITY_DATABASE_GUID
        } else {
            GLOBAL
        };
        m.data(
            7,
            EventType::EV_EFI_VARIABLE_DRIVER_CONFIG,
            &variable_data(vendor, name, data),
        )?;
    }
    m.data(7, EventType::EV_SEPARATOR, &[0; 4])?;
    // PCR 1: the boot options.
    let options = platform::boot_options();
    // EDK2 hashes only a boot variable's data (the log still holds UEFI_VARIABLE_DATA).
    let order = platform::boot_order();
    m.other(
        1,
        EventType::EV_EFI_VARIABLE_BOOT,
        &order,
        &variable_data(GLOBAL, "BootOrder", &order),
    )?;
    for o in &options {
        m.other(
            1,
            EventType::EV_EFI_VARIABLE_BOOT,
            &o.data,
            &variable_data(GLOBAL, o.variable, &o.data),
        )?;
    }
    // The boot manager: the first visible option is the empty optical drive; the separators
    // go in at the first ReadyToBoot.
    let mut separators_done = false;
    for o in options.iter().filter(|o| !o.hidden) {
        m.data(
            4,
            EventType::EV_EFI_ACTION,
            b"Calling EFI Application from Boot Option",
        )?;
        if !separators_done {
            for pcr in 0..=6 {
                m.data(pcr, EventType::EV_SEPARATOR, &[0; 4])?;
            }
            separators_done = true;
        }
        if o.empty {
            m.data(
                4,
                EventType::EV_EFI_ACTION,
                b"Returning from EFI Application from Boot Option",
            )?;
            continue;
        }
        break;
    }

    let mut run = Run {
        image,
        vars: &vars,
        dbs,
        secure_boot,
        m,
        components: Vec::new(),
        pe_digests: Vec::new(),
        stop: None,
        firmware_authorities: Vec::new(),
        shim_authorities: Vec::new(),
        shim: None,
        kernel: None,
        cache,
    };
    run.chain()?;
    Ok(BootReport {
        secure_boot,
        components: run.components,
        stopped: run.stop,
        event_log: run.m.log_bytes(),
    })
}

/// The state of one boot while it runs.
struct Run<'a, 't> {
    image: &'a NodeImage,
    vars: &'a VariableStore<'a>,
    dbs: Databases,
    secure_boot: bool,
    m: Measurer<'t>,
    components: Vec<Component>,
    stop: Option<Stop>,
    /// Authorities already measured by the firmware and by shim (each measures one once).
    firmware_authorities: Vec<Vec<u8>>,
    shim_authorities: Vec<Vec<u8>>,
    shim: Option<ShimPolicy>,
    /// The kernel grub loaded (its built-in keys verify modules).
    kernel: Option<Vec<u8>>,
    cache: &'a mut BootCache,
    /// Authenticode digests computed during this boot: (path, flavour, one per bank). The
    /// Secure Boot check and the PCR 4 measurement of an image share them.
    pe_digests: Vec<(String, &'static str, Vec<crate::measure::Digest>)>,
}

impl Run<'_, '_> {
    fn stop(&mut self, component: &str, path: &str, reason: String, security_violation: bool) {
        if self.stop.is_none() {
            self.stop = Some(Stop {
                component: component.to_string(),
                path: path.to_string(),
                reason,
                security_violation,
            });
        }
    }

    /// Verify an image for `loader`; on success measure its authority (once per loader).
    /// Returns the authority text, or None after recording the denial.
    fn verify(
        &mut self,
        component: &str,
        path: &str,
        bytes: &[u8],
        loader: &Loader,
        flavor: DigestFlavor,
    ) -> Result<Option<Option<String>>, TpmFailure> {
        if !self.secure_boot {
            return Ok(Some(None));
        }
        // The digests the image will be measured with serve the check too.
        let mut known = KnownDigests::default();
        for d in self.pe_digests(path, bytes, flavor)?.unwrap_or_default() {
            if let Some(alg) = crate::measure::authenticode_alg(d.alg) {
                known.insert(alg, flavor, d.bytes);
            }
        }
        match verify_image_with(&self.dbs, bytes, loader, &known) {
            Verdict::Denied { reason } => {
                self.stop(component, path, reason.to_string(), true);
                Ok(None)
            }
            Verdict::Allowed { authority } => {
                let shim = match loader {
                    Loader::Shim(p) => Some(p.as_ref()),
                    Loader::Firmware => None,
                };
                if let Some((name, vendor, data)) = authority_variable(&authority, &self.dbs, shim)
                {
                    let seen = if shim.is_some() {
                        &mut self.shim_authorities
                    } else {
                        &mut self.firmware_authorities
                    };
                    if !seen.contains(&data) {
                        seen.push(data.clone());
                        self.m.data(
                            7,
                            EventType::EV_EFI_VARIABLE_AUTHORITY,
                            &variable_data(vendor, name, &data),
                        )?;
                    }
                }
                Ok(Some(Some(authority.to_string())))
            }
        }
    }

    /// The image's Authenticode digests in every bank: remembered from this boot or (by
    /// content identity) an earlier one, or computed now. None when it is not a PE image.
    fn pe_digests(
        &mut self,
        path: &str,
        bytes: &[u8],
        flavor: DigestFlavor,
    ) -> Result<Option<Vec<crate::measure::Digest>>, TpmFailure> {
        let kind = flavor_kind(flavor);
        if let Some(d) = self.cache.measured(self.image.content_id(path), kind) {
            return Ok(Some(d.to_vec()));
        }
        if let Some((_, _, d)) = self
            .pe_digests
            .iter()
            .find(|(p, k, _)| p == path && *k == kind)
        {
            return Ok(Some(d.clone()));
        }
        let Ok(pe) = PeImage::parse(bytes) else {
            return Ok(None);
        };
        let d = self
            .m
            .authenticode_digests(&pe, flavor)
            .map_err(TpmFailure)?;
        self.pe_digests.push((path.to_string(), kind, d.clone()));
        Ok(Some(d))
    }

    fn measure_pe(
        &mut self,
        component: &str,
        path: &str,
        bytes: &[u8],
        flavor: DigestFlavor,
        device_path: &[u8],
        times: usize,
    ) -> Result<Option<String>, TpmFailure> {
        let pe = match PeImage::parse(bytes) {
            Ok(pe) => pe,
            Err(e) => {
                self.stop(component, path, format!("not a PE image: {e}"), false);
                return Ok(None);
            }
        };
        let data = platform::image_load_event(bytes.len(), device_path);
        let (id, kind) = (self.image.content_id(path), flavor_kind(flavor));
        let known = self.pe_digests(path, bytes, flavor)?;
        let digests = self
            .m
            .boot_application(&pe, flavor, &data, times, known.as_deref())
            .map_err(TpmFailure)?;
        let sha256 = digests
            .iter()
            .find(|d| d.alg == eventlog::AlgorithmId::SHA256)
            .map(|d| d.bytes.clone());
        self.cache.remember(id, kind, digests);
        // The SHA-256 measurement, or (a TPM without that bank) computed for the report.
        Ok(sha256
            .or_else(|| {
                pe.authenticode_digest(secureboot::HashAlgorithm::Sha256, flavor)
                    .ok()
            })
            .map(hex))
    }

    fn chain(&mut self) -> Result<(), TpmFailure> {
        // Firmware loads shim.
        let Some(shim) = self.image.file(SHIM_PATH) else {
            self.stop(
                "shim",
                SHIM_PATH,
                "no boot loader at the removable-media path".into(),
                false,
            );
            return Ok(());
        };
        let Some(authority) = self.verify(
            "shim",
            SHIM_PATH,
            shim,
            &Loader::Firmware,
            DigestFlavor::Firmware,
        )?
        else {
            return Ok(());
        };
        let device = platform::esp_file_path(&SHIM_PATH.replace('/', "\\"));
        let Some(digest) =
            self.measure_pe("shim", SHIM_PATH, shim, DigestFlavor::Firmware, &device, 1)?
        else {
            return Ok(());
        };
        self.components.push(Component {
            name: "shim".into(),
            path: SHIM_PATH.into(),
            sha256: digest,
            authority,
        });

        // shim starts: its policy, its measurements.
        let mut policy = match ShimPolicy::from_shim_image(shim) {
            Ok(p) => p,
            Err(e) => {
                self.stop(
                    "shim",
                    SHIM_PATH,
                    format!("shim's built-in policy does not parse: {e}"),
                    false,
                );
                return Ok(());
            }
        };
        let mok_var = |name: &str| {
            self.vars
                .get(name, guid::SHIM_LOCK_GUID)
                .and_then(|v| esl::parse(v.data).ok())
                .unwrap_or_default()
        };
        policy.mok_list = mok_var("MokList");
        policy.mok_list_x = mok_var("MokListX");
        let (mok, mokx) = mok_mirrors(shim, &policy, self.vars);
        self.m.other(14, EventType::EV_IPL, &mok, b"MokList\0")?;
        self.m.other(14, EventType::EV_IPL, &mokx, b"MokListX\0")?;
        if let Some(level) = sbat_level_text(shim, self.vars) {
            if let Ok(parsed) = secureboot::sbat::SbatLevel::parse(&level) {
                policy.sbat_level = Some(parsed);
            }
            self.m.data(
                7,
                EventType::EV_EFI_VARIABLE_AUTHORITY,
                &variable_data(guid::SHIM_LOCK_GUID, "SbatLevel", &level),
            )?;
        }
        let trusted = self
            .vars
            .get("MokListTrusted", guid::SHIM_LOCK_GUID)
            .map(|v| v.data.to_vec())
            .unwrap_or_else(|| vec![1]);
        self.m
            .other(14, EventType::EV_IPL, &trusted, b"MokListTrusted\0")?;

        // shim loads grub.
        let Some(grub) = self.image.file(GRUB_PATH) else {
            self.stop(
                "grub",
                GRUB_PATH,
                "shim found no grubx64.efi beside itself".into(),
                false,
            );
            return Ok(());
        };
        let loader = Loader::Shim(Box::new(policy.clone()));
        let Some(authority) = self.verify("grub", GRUB_PATH, grub, &loader, DigestFlavor::Shim)?
        else {
            return Ok(());
        };
        let device = platform::relative_file_path(&GRUB_PATH.replace('/', "\\"));
        let Some(digest) =
            self.measure_pe("grub", GRUB_PATH, grub, DigestFlavor::Shim, &device, 1)?
        else {
            return Ok(());
        };
        self.components.push(Component {
            name: "grub".into(),
            path: GRUB_PATH.into(),
            sha256: digest,
            authority,
        });
        policy.via_protocol = true;
        self.shim = Some(policy);

        // grub runs.
        let modules = match PeImage::parse(grub)
            .ok()
            .and_then(|pe| pe.section_data(b"mods").ok().flatten())
            .map(GrubModules::parse)
        {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                self.stop("grub", GRUB_PATH, e, false);
                return Ok(());
            }
            None => {
                self.stop(
                    "grub",
                    GRUB_PATH,
                    "not a grub image (no mods section)".into(),
                    false,
                );
                return Ok(());
            }
        };
        let prefix = format!(
            "({BOOT_DEVICE}){}",
            modules.prefix.clone().unwrap_or_default()
        );
        let vars = [
            ("root", BOOT_DEVICE.to_string()),
            ("prefix", prefix),
            ("cmdpath", format!("({BOOT_DEVICE})/EFI/BOOT")),
        ]
        .map(|(k, v)| (k.to_string(), v));
        let mut host = GrubMachine {
            run: self,
            modules: &modules,
            kernel: None,
            failure: None,
            booted: false,
        };
        let result = run_grub(&mut host, &modules, vars);
        let (failure, booted) = (host.failure.take(), host.booted);
        if let Some(f) = failure {
            return Err(f);
        }
        if let Err(e) = result {
            self.stop("grub", GRUB_PATH, e.to_string(), false);
            return Ok(());
        }
        if self.stop.is_some() {
            return Ok(());
        }
        if !booted {
            self.stop(
                "grub",
                GRUB_PATH,
                "the configuration ended without booting a kernel".into(),
                false,
            );
            return Ok(());
        }
        self.kernel_modules();
        Ok(())
    }

    /// The kernel's module signature check under Secure Boot lockdown: the keyring is the
    /// kernel's built-in keys, db, shim's vendor certificate and the MokList (the platform
    /// and machine keyrings).
    fn kernel_modules(&mut self) {
        if self.image.modules().is_empty() {
            return;
        }
        let mut keyring = Vec::new();
        if self.secure_boot {
            let kernel = self.kernel.clone().unwrap_or_default();
            let digest = self
                .components
                .iter()
                .rev()
                .find(|c| c.name == "kernel")
                .map(|c| c.sha256.clone());
            match self.cache.get(&kernel, digest.as_deref()) {
                Ok(keys) => keyring.extend(keys),
                Err(e) => {
                    self.stop(
                        "kernel",
                        "/vmlinuz",
                        format!("cannot read the kernel's built-in keys: {e}"),
                        false,
                    );
                    return;
                }
            }
        }
        let mut add_lists = |lists: &[SignatureList]| {
            for l in lists {
                for (_, _, s) in l.entries() {
                    if let esl::Signature::X509(der) = s {
                        if let Ok(c) = openssl::x509::X509::from_der(der) {
                            keyring.push(c);
                        }
                    }
                }
            }
        };
        add_lists(&self.dbs.db);
        if let Some(shim) = &self.shim {
            add_lists(&shim.mok_list);
            add_lists(&shim.vendor_db);
        }
        if let Some(cert) = self.shim.as_ref().and_then(|s| s.vendor_cert.as_ref()) {
            if let Ok(c) = openssl::x509::X509::from_der(cert) {
                keyring.push(c);
            }
        }
        let modules: Vec<(String, Vec<u8>)> = self
            .image
            .modules()
            .into_iter()
            .map(|(p, b)| (p.to_string(), b.to_vec()))
            .collect();
        for (path, bytes) in modules {
            let name = path.rsplit('/').next().unwrap_or(&path).to_string();
            let component = format!("module {name}");
            let authority = if self.secure_boot {
                match module_sig::verify(&bytes, &keyring) {
                    ModuleVerdict::Allowed { authority } => Some(authority),
                    ModuleVerdict::Unsigned => {
                        self.stop(
                            &component,
                            &path,
                            "unsigned module: Secure Boot lockdown loads only signed modules"
                                .into(),
                            true,
                        );
                        return;
                    }
                    ModuleVerdict::NotTrusted => {
                        self.stop(&component, &path, "signer not trusted: no key in db, shim's vendor certificate or MokList vouches for it".into(), true);
                        return;
                    }
                    ModuleVerdict::Malformed(e) => {
                        self.stop(&component, &path, format!("malformed signature: {e}"), true);
                        return;
                    }
                }
            } else {
                None
            };
            self.components.push(Component {
                name: component,
                path,
                sha256: sha256_hex(&bytes),
                authority,
            });
        }
    }
}

/// grub's start: the embedded configuration runs through grub's rescue parser (nothing is
/// measured); its `normal FILE` enters normal mode, whose script engine measures.
fn run_grub(
    host: &mut GrubMachine<'_, '_, '_>,
    modules: &GrubModules,
    vars: [(String, String); 3],
) -> Result<(), ScriptError> {
    let embedded = modules.config.clone().unwrap_or_default();
    let mut vars: Vec<(String, String)> = vars.into();
    let mut normal: Option<String> = None;
    for line in embedded.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("normal") => normal = words.next().map(str::to_string),
            Some("set") => {
                for w in words {
                    if let Some((k, v)) = w.split_once('=') {
                        vars.push((k.to_string(), v.to_string()));
                    }
                }
            }
            _ => {}
        }
    }
    // No embedded `normal FILE`: normal mode reads $prefix/grub.cfg.
    let file = normal.unwrap_or_else(|| {
        let prefix = vars
            .iter()
            .rev()
            .find(|(k, _)| k == "prefix")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        format!("{prefix}/grub.cfg")
    });
    let text = host.open(&file).map_err(ScriptError::Command)?;
    let text = String::from_utf8_lossy(&text).into_owned();
    let mut interpreter = Interpreter::new(host, vars);
    interpreter.run_config(&file, &text)
}

/// grub's view of the machine: the ESP, the memdisk, shim's verifier, the TPM.
struct GrubMachine<'r, 'a, 't> {
    run: &'r mut Run<'a, 't>,
    modules: &'r GrubModules,
    kernel: Option<String>,
    failure: Option<TpmFailure>,
    booted: bool,
}

impl GrubMachine<'_, '_, '_> {
    /// A grub path on the boot partition, as an ESP path (None for other devices).
    fn esp_path(path: &str) -> Option<String> {
        if let Some(rest) = path.strip_prefix('(') {
            let (device, file) = rest.split_once(')')?;
            (device == BOOT_DEVICE).then(|| file.to_string())
        } else {
            Some(path.to_string())
        }
    }

    fn tpm(&mut self, r: Result<(), TpmFailure>) -> Result<(), String> {
        r.map_err(|e| {
            let text = e.to_string();
            self.failure = Some(e);
            text
        })
    }
}

impl GrubHost for GrubMachine<'_, '_, '_> {
    fn exists(&mut self, path: &str) -> bool {
        if let Some(file) = path.strip_prefix("(memdisk)") {
            return self.modules.memdisk_file(file).is_ok();
        }
        Self::esp_path(path).is_some_and(|p| self.run.image.exists(&p))
    }

    fn open(&mut self, path: &str) -> Result<Vec<u8>, String> {
        if let Some(file) = path.strip_prefix("(memdisk)") {
            // Part of the signed grub image, measured with it in PCR 4.
            return self.modules.memdisk_file(file);
        }
        let bytes = Self::esp_path(path)
            .and_then(|p| self.run.image.file(&p).map(<[u8]>::to_vec))
            .ok_or_else(|| format!("file `{path}' not found"))?;
        let mut data = path.as_bytes().to_vec();
        data.push(0);
        let id = Self::esp_path(path).and_then(|p| self.run.image.content_id(&p));
        let known = self.run.cache.measured(id, "file").map(<[_]>::to_vec);
        let r = self
            .run
            .m
            .file(9, EventType::EV_IPL, &bytes, &data, known.as_deref());
        match r {
            Ok(digests) => self.run.cache.remember(id, "file", digests),
            Err(e) => return self.tpm(Err(e)).map(|()| Vec::new()),
        }
        Ok(bytes)
    }

    fn measure_string(&mut self, kind: &str, text: &str) {
        let data = format!("{kind}{text}\0");
        let r = self
            .run
            .m
            .other(8, EventType::EV_IPL, text.as_bytes(), data.as_bytes());
        let _ = self.tpm(r);
    }

    fn load_kernel(&mut self, path: &str, image: &[u8], _cmdline: &str) -> Result<(), String> {
        let loader = Loader::Shim(Box::new(self.run.shim.clone().unwrap_or_default()));
        let verified = self
            .run
            .verify("kernel", path, image, &loader, DigestFlavor::Shim);
        let authority = match verified {
            Ok(Some(a)) => a,
            Ok(None) => return Err(format!("{path}: Secure Boot denied the kernel")),
            Err(e) => {
                let text = e.to_string();
                self.failure = Some(e);
                return Err(text);
            }
        };
        // grub's shim_lock verifier and its EFI linux loader each have shim verify the
        // kernel; shim measures it on each verification.
        let digest = match self
            .run
            .measure_pe("kernel", path, image, DigestFlavor::Shim, &[], 2)
        {
            Ok(Some(d)) => d,
            Ok(None) => return Err(format!("{path}: not a kernel image")),
            Err(e) => {
                let text = e.to_string();
                self.failure = Some(e);
                return Err(text);
            }
        };
        self.run.components.push(Component {
            name: "kernel".into(),
            path: path.into(),
            sha256: digest,
            authority,
        });
        self.kernel = Some(path.into());
        self.run.kernel = Some(image.to_vec());
        Ok(())
    }

    fn load_initrd(&mut self, files: &[(String, Vec<u8>)]) -> Result<(), String> {
        for (path, bytes) in files {
            self.run.components.push(Component {
                name: "initrd".into(),
                path: path.clone(),
                sha256: sha256_hex(bytes),
                authority: None,
            });
        }
        Ok(())
    }

    fn boot(&mut self) -> Result<(), String> {
        for text in [
            &b"Exit Boot Services Invocation"[..],
            b"Exit Boot Services Returned with Success",
        ] {
            let r = self.run.m.data(5, EventType::EV_EFI_ACTION, text);
            self.tpm(r)?;
        }
        self.booted = true;
        Ok(())
    }
}
