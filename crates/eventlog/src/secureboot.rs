//! What a verifier reads from a log — Secure Boot state and boot components — after checks
//! that resist the known attacks on logs (an event's type and data are not covered by its
//! digest). Modelled on the defences of go-attestation's ParseSecurebootState; every
//! rejection names its rule and the event. It must never return values from a log it rejected.

use std::collections::BTreeMap;

use crate::data::{EventData, IplString, UefiVariableData};
use crate::error::{Error, Rejection};
use crate::log::{Digest, EventLog};
use crate::{AlgorithmId, EventType, Guid};

/// The PCR of Secure Boot policy (PFP 3.3.4.8).
const PCR_SECURE_BOOT: u32 = 7;
/// The PCR grub measures its commands and command lines into.
const PCR_GRUB_STRINGS: u32 = 8;
/// Secure Boot variables measured into PCR 7 before the separator (PFP 3.3.4.8), with the
/// vendor GUID each must have.
const SECURE_BOOT_VARIABLES: [(&str, Guid); 7] = [
    ("SecureBoot", Guid::EFI_GLOBAL_VARIABLE),
    ("PK", Guid::EFI_GLOBAL_VARIABLE),
    ("KEK", Guid::EFI_GLOBAL_VARIABLE),
    ("db", Guid::EFI_IMAGE_SECURITY_DATABASE),
    ("dbx", Guid::EFI_IMAGE_SECURITY_DATABASE),
    ("dbt", Guid::EFI_IMAGE_SECURITY_DATABASE),
    ("dbr", Guid::EFI_IMAGE_SECURITY_DATABASE),
];

/// Whether this event's digests are the hash of its data (PFP 10.4.1 for separators,
/// actions and UEFI variables), and if so of which bytes (grub's strings: the command or
/// line without its prefix, with or without its NUL by grub's form).
fn measured_bytes(t: EventType, data: &[u8]) -> Option<&[u8]> {
    match t {
        EventType::EV_SEPARATOR
        | EventType::EV_ACTION
        | EventType::EV_EFI_ACTION
        | EventType::EV_EFI_VARIABLE_DRIVER_CONFIG
        | EventType::EV_EFI_VARIABLE_BOOT2
        | EventType::EV_EFI_VARIABLE_AUTHORITY => Some(data),
        EventType::EV_IPL => crate::data::grub_measured_bytes(data),
        _ => None,
    }
}

/// The checks every reader below runs first. A log that passes has: the digest of each
/// data-measured event equal to the hash of its data in every bank this crate can hash;
/// exactly one separator in each of PCRs 0-7, of value 0 or 1; in PCR 7, only Secure Boot
/// configuration events before its separator and only authorities after it; no Secure Boot
/// variable measured twice or under a look-alike GUID or under another event type; no grub
/// string in PCR 8 under another type than EV_IPL; no EV_NO_ACTION with a non-zero digest
/// in a PCR. It does not replay: a verifier also compares [`EventLog::replay`] with a quote.
pub fn validate(log: &EventLog) -> Result<(), Rejection> {
    if !log.banks().iter().any(|a| a.hash(b"").is_some()) {
        return Err(Rejection::NoVerifiableBank);
    }
    let mut separators = [0u32; 8];
    let mut seen_variables: Vec<&str> = Vec::new();
    for (index, e) in log.events.iter().enumerate() {
        if !e.is_extended() {
            // PFP 10.4.5: EV_NO_ACTION digests are zero. Non-zero ones in a PCR mean a
            // measured event retyped so that readers (and replays) skip it. (Windows logs
            // its own EV_NO_ACTION events with digests under pcrIndex 0xFFFFFFFF; a retype
            // that also moves the event there still changes the replay of its PCR, which
            // the verifier compares with the quote.)
            let in_a_pcr = e.pcr < crate::replay::PCR_COUNT;
            if in_a_pcr && e.digests.iter().any(|d| d.bytes.iter().any(|&b| b != 0)) {
                return Err(Rejection::RetypedEvent {
                    event: index,
                    pcr: e.pcr,
                    event_type: e.event_type,
                    why: "EV_NO_ACTION with a non-zero digest",
                });
            }
            continue;
        }
        let decoded = log.decode(index).ok();
        check_digests(index, e.event_type, &e.data, &e.digests, decoded.as_ref())?;
        let pcr = e.pcr;
        let t = e.event_type;
        let in_pre_os_pcr = usize::try_from(pcr).ok().filter(|&p| p < separators.len());

        if t == EventType::EV_SEPARATOR {
            if let Some(p) = in_pre_os_pcr {
                if !matches!(decoded, Some(EventData::Separator(0 | 1))) {
                    return Err(Rejection::InvalidSeparator { event: index, pcr });
                }
                if let Some(count) = separators.get_mut(p) {
                    if *count > 0 {
                        return Err(Rejection::ExtraSeparator { event: index, pcr });
                    }
                    *count = 1;
                }
            }
            continue;
        }

        // grub's strings in PCR 8 are read only as EV_IPL: the same bytes under another
        // type would hide a command line from the reader while the replay still matches.
        if pcr == PCR_GRUB_STRINGS
            && t != EventType::EV_IPL
            && crate::data::grub_measured_bytes(&e.data).is_some()
        {
            return Err(Rejection::RetypedEvent {
                event: index,
                pcr,
                event_type: t,
                why: "carries a grub command or command line",
            });
        }

        if pcr == PCR_SECURE_BOOT {
            let after_separator = separators.get(7).is_some_and(|&c| c > 0);
            if after_separator {
                if t != EventType::EV_EFI_VARIABLE_AUTHORITY {
                    return Err(Rejection::EventAfterSeparator {
                        event: index,
                        event_type: t,
                    });
                }
            } else if !matches!(
                t,
                EventType::EV_EFI_VARIABLE_DRIVER_CONFIG
                    | EventType::EV_EFI_VARIABLE_AUTHORITY
                    | EventType::EV_EFI_ACTION
            ) {
                return Err(Rejection::RetypedEvent {
                    event: index,
                    pcr,
                    event_type: t,
                    why: "not a Secure Boot configuration event type",
                });
            }
        }

        // A Secure Boot variable under any other type than the configuration one (an
        // authority names "db" with db's GUID legitimately: it is a db entry).
        if let (Some(_), Some(EventData::Variable(v))) = (in_pre_os_pcr, decoded.as_ref()) {
            let sb = SECURE_BOOT_VARIABLES.iter().find(|(n, _)| *n == v.name);
            if let Some((name, guid)) = sb {
                let is_config = t == EventType::EV_EFI_VARIABLE_DRIVER_CONFIG;
                if !is_config && t != EventType::EV_EFI_VARIABLE_AUTHORITY && v.vendor_guid == *guid
                {
                    return Err(Rejection::RetypedEvent {
                        event: index,
                        pcr,
                        event_type: t,
                        why: "carries a Secure Boot variable",
                    });
                }
                if is_config && pcr == PCR_SECURE_BOOT {
                    if v.vendor_guid != *guid {
                        return Err(Rejection::WrongVariableGuid {
                            event: index,
                            name: v.name.clone(),
                            guid: v.vendor_guid,
                        });
                    }
                    if seen_variables.contains(name) {
                        return Err(Rejection::DuplicateVariable {
                            event: index,
                            name: v.name.clone(),
                        });
                    }
                    seen_variables.push(name);
                }
            }
        }
    }
    for (pcr, count) in (0u32..).zip(separators) {
        if count == 0 {
            return Err(Rejection::MissingSeparator { pcr });
        }
    }
    Ok(())
}

fn check_digests(
    index: usize,
    t: EventType,
    data: &[u8],
    digests: &[Digest],
    decoded: Option<&EventData>,
) -> Result<(), Rejection> {
    let Some(measured) = measured_bytes(t, data) else {
        return Ok(());
    };
    // shim's "Shim" authority: some shim releases log one byte more than they hash (the
    // sb_cert log of go-attestation). That byte is outside the certificate; the hashed
    // bytes are still checked in full.
    let shim_quirk = match decoded {
        Some(EventData::Variable(v))
            if t == EventType::EV_EFI_VARIABLE_AUTHORITY
                && v.name == "Shim"
                && v.vendor_guid == Guid::SHIM_LOCK =>
        {
            measured.split_last().map(|(_, rest)| rest)
        }
        _ => None,
    };
    for d in digests {
        if let Some(h) = d.alg.hash(measured) {
            let quirk_matches = shim_quirk.and_then(|q| d.alg.hash(q)) == Some(d.bytes.clone());
            if h != d.bytes && !quirk_matches {
                return Err(Rejection::DigestMismatch {
                    event: index,
                    alg: d.alg,
                });
            }
        }
    }
    Ok(())
}

/// A measured UEFI variable: where it is in the log, its contents and digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableMeasurement {
    pub event: usize,
    pub name: String,
    pub vendor_guid: Guid,
    /// The variable's contents (for PK/KEK/db/dbx: EFI_SIGNATURE_LISTs, as stored).
    pub data: Vec<u8>,
    pub digests: Vec<Digest>,
}

/// What an EV_EFI_VARIABLE_AUTHORITY event says authorised an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorityKind {
    /// An EFI_SIGNATURE_DATA from db or MokList (UEFI 2.10 32.4.1): owner and certificate
    /// (or hash).
    SignatureData { owner: Guid, data: Vec<u8> },
    /// shim's "Shim" entry: its built-in vendor certificate, raw DER (no owner GUID).
    ShimCertificate(Vec<u8>),
    /// Another variable (shim's SbatLevel, MokListTrusted), contents as measured.
    Variable(Vec<u8>),
}

/// One authority used during boot (PFP 3.3.4.8, EV_EFI_VARIABLE_AUTHORITY).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub event: usize,
    pub name: String,
    pub vendor_guid: Guid,
    pub kind: AuthorityKind,
    pub digests: Vec<Digest>,
}

/// The Secure Boot state a log records, from a log that passed [`validate`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecureBootState {
    /// The SecureBoot variable was measured and is 1.
    pub enabled: bool,
    /// Every Secure Boot variable measured into PCR 7 (SecureBoot, PK, KEK, db, dbx, ...),
    /// by name.
    pub variables: BTreeMap<String, VariableMeasurement>,
    /// Authorities, in log order.
    pub authorities: Vec<Authority>,
}

impl SecureBootState {
    /// Validate the log, then read its Secure Boot state.
    pub fn from_log(log: &EventLog) -> Result<Self, Error> {
        validate(log)?;
        let mut out = Self::default();
        for (index, e) in log.events.iter().enumerate() {
            if e.pcr != PCR_SECURE_BOOT || !e.is_extended() {
                continue;
            }
            let v = match log.decode(index) {
                Ok(EventData::Variable(v)) => v,
                Ok(_) => continue,
                Err(Error::Parse { problem, .. }) => {
                    return Err(Rejection::BadPayload {
                        event: index,
                        problem,
                    }
                    .into())
                }
                Err(e) => return Err(e),
            };
            if e.event_type == EventType::EV_EFI_VARIABLE_AUTHORITY {
                out.authorities.push(authority(index, v, e.digests.clone()));
            } else if SECURE_BOOT_VARIABLES.iter().any(|(n, _)| *n == v.name) {
                if v.name == "SecureBoot" {
                    out.enabled = v.data == [1];
                }
                out.variables.insert(
                    v.name.clone(),
                    VariableMeasurement {
                        event: index,
                        name: v.name,
                        vendor_guid: v.vendor_guid,
                        data: v.data,
                        digests: e.digests.clone(),
                    },
                );
            }
        }
        Ok(out)
    }

    /// A measured variable (`"PK"`, `"KEK"`, `"db"`, `"dbx"`, ...).
    pub fn variable(&self, name: &str) -> Option<&VariableMeasurement> {
        self.variables.get(name)
    }
}

fn authority(event: usize, v: UefiVariableData, digests: Vec<Digest>) -> Authority {
    let kind = if v.name == "Shim" && v.vendor_guid == Guid::SHIM_LOCK {
        AuthorityKind::ShimCertificate(v.data)
    } else if matches!(v.name.as_str(), "db" | "MokList") && v.data.len() >= 16 {
        let (owner, data) = v.data.split_at(16);
        let mut g = [0u8; 16];
        g.copy_from_slice(owner);
        AuthorityKind::SignatureData {
            owner: Guid(g),
            data: data.to_vec(),
        }
    } else {
        AuthorityKind::Variable(v.data)
    };
    Authority {
        event,
        name: v.name,
        vendor_guid: v.vendor_guid,
        kind,
        digests,
    }
}

/// Which stage of the boot chain an application is: named by its file when the name says
/// (shim*, grub*, vmlinuz*), else by position: the first application is the first stage
/// (shim, or what stands in its place), the second the boot loader, later ones the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootRole {
    Shim,
    Grub,
    Kernel,
}

/// An EFI application measured into PCR 4 (EV_EFI_BOOT_SERVICES_APPLICATION; its digest is
/// the Authenticode hash of the PE image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootApplication {
    pub event: usize,
    pub role: BootRole,
    /// The device path in UEFI text form ("" when the image was loaded from memory).
    pub device_path: String,
    pub digests: Vec<Digest>,
}

/// A firmware measurement (PCR 0/2 blobs, S-CRTM, option ROM drivers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareMeasurement {
    pub event: usize,
    pub pcr: u32,
    pub event_type: EventType,
    /// Blob address/description, S-CRTM version or driver path, as text.
    pub description: String,
    pub digests: Vec<Digest>,
}

/// A measured string or file of the boot loader (grub: PCR 8 commands, PCR 9 files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootString {
    pub event: usize,
    pub pcr: u32,
    pub text: String,
    pub digests: Vec<Digest>,
}

/// The measured boot chain, from a log that passed [`validate`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootComponents {
    pub firmware: Vec<FirmwareMeasurement>,
    /// PCR 4 applications in order: shim, grub, the kernel (grub's shim_lock verification
    /// and LoadImage each measure it).
    pub applications: Vec<BootApplication>,
    /// Files grub read (PCR 9): grub.cfg, the kernel, the initrd.
    pub files: Vec<BootString>,
    /// grub commands (PCR 8, `grub_cmd:`), prefix removed.
    pub grub_commands: Vec<BootString>,
    /// The kernel command line (PCR 8, `kernel_cmdline:`), the last one logged.
    pub kernel_cmdline: Option<BootString>,
    /// The initrd file (PCR 9), as named by grub's `initrd` command.
    pub initrd: Option<BootString>,
    /// The kernel file (PCR 9), as named by grub's `linux` command.
    pub kernel_file: Option<BootString>,
}

impl BootComponents {
    /// Validate the log, then read its boot chain.
    pub fn from_log(log: &EventLog) -> Result<Self, Error> {
        validate(log)?;
        let mut out = Self::default();
        for (index, e) in log.events.iter().enumerate() {
            if !e.is_extended() {
                continue;
            }
            let decoded = log.decode(index).ok();
            let string = |text: String| BootString {
                event: index,
                pcr: e.pcr,
                text,
                digests: e.digests.clone(),
            };
            match (e.pcr, e.event_type, decoded) {
                (4, EventType::EV_EFI_BOOT_SERVICES_APPLICATION, d) => {
                    let path = match d {
                        Some(EventData::ImageLoad(i)) => i.device_path,
                        _ => Default::default(),
                    };
                    let name = path.file_path().unwrap_or_default().to_ascii_lowercase();
                    // By file name where it says; otherwise (removable-media BOOTX64.EFI,
                    // images loaded from memory) by position in the chain.
                    let role = if name.contains("shim") {
                        BootRole::Shim
                    } else if name.contains("grub") {
                        BootRole::Grub
                    } else if name.contains("vmlinuz") || name.contains("linux") {
                        BootRole::Kernel
                    } else {
                        match out.applications.len() {
                            0 => BootRole::Shim,
                            1 => BootRole::Grub,
                            _ => BootRole::Kernel,
                        }
                    };
                    out.applications.push(BootApplication {
                        event: index,
                        role,
                        device_path: path.to_string(),
                        digests: e.digests.clone(),
                    });
                }
                (0 | 2, t, d)
                    if matches!(
                        t,
                        EventType::EV_EFI_PLATFORM_FIRMWARE_BLOB
                            | EventType::EV_EFI_PLATFORM_FIRMWARE_BLOB2
                            | EventType::EV_S_CRTM_VERSION
                            | EventType::EV_S_CRTM_CONTENTS
                            | EventType::EV_POST_CODE
                            | EventType::EV_EFI_BOOT_SERVICES_DRIVER
                            | EventType::EV_EFI_RUNTIME_SERVICES_DRIVER
                    ) =>
                {
                    out.firmware.push(FirmwareMeasurement {
                        event: index,
                        pcr: e.pcr,
                        event_type: t,
                        description: describe(d.as_ref()),
                        digests: e.digests.clone(),
                    });
                }
                (8, EventType::EV_IPL, Some(EventData::Ipl(IplString::GrubCommand(c)))) => {
                    out.grub_commands.push(string(c));
                }
                (8, EventType::EV_IPL, Some(EventData::Ipl(IplString::KernelCmdline(c)))) => {
                    out.kernel_cmdline = Some(string(c));
                }
                (9, EventType::EV_IPL, Some(EventData::Ipl(IplString::Text(path)))) => {
                    out.files.push(string(path));
                }
                _ => {}
            }
        }
        out.kernel_file =
            out.file_named_by(&["linux", "linuxefi", "linux16"], "grub_linuxefi Kernel");
        out.initrd =
            out.file_named_by(&["initrd", "initrdefi", "initrd16"], "grub_linuxefi Initrd");
        Ok(out)
    }

    /// The PCR 9 file named by the last grub command `<command> <path> ...` (paths compared
    /// without their `(hd0,gpt1)` device part), else the file logged under Red Hat grub's
    /// `tag` (`grub_linuxefi Kernel`), which logs no path.
    fn file_named_by(&self, commands: &[&str], tag: &str) -> Option<BootString> {
        fn without_device(path: &str) -> &str {
            match path.strip_prefix('(').and_then(|p| p.split_once(')')) {
                Some((_, rest)) => rest,
                None => path,
            }
        }
        let path = self.grub_commands.iter().rev().find_map(|c| {
            let mut words = c.text.split_whitespace();
            let first = words.next()?;
            commands.contains(&first).then(|| words.next())?
        });
        let by_path = path.and_then(|path| {
            let path = without_device(path);
            self.files
                .iter()
                .rev()
                .find(|f| without_device(&f.text) == path)
        });
        by_path
            .or_else(|| self.files.iter().rev().find(|f| f.text == tag))
            .cloned()
    }

    /// Applications of a role, in log order.
    pub fn role(&self, role: BootRole) -> impl Iterator<Item = &BootApplication> {
        self.applications.iter().filter(move |a| a.role == role)
    }
}

fn describe(d: Option<&EventData>) -> String {
    match d {
        Some(EventData::FirmwareBlob(b)) => {
            let desc = b
                .description
                .as_deref()
                .map(|d| format!("{d} "))
                .unwrap_or_default();
            format!("{desc}base 0x{:x} length 0x{:x}", b.base, b.length)
        }
        Some(EventData::Text(t)) => t.clone(),
        Some(EventData::Guid(g)) => g.to_string(),
        Some(EventData::ImageLoad(i)) => i.device_path.to_string(),
        _ => String::new(),
    }
}

/// The digest of bank `alg` among `digests`.
pub fn digest_of(digests: &[Digest], alg: AlgorithmId) -> Option<&[u8]> {
    digests
        .iter()
        .find(|d| d.alg == alg)
        .map(|d| d.bytes.as_slice())
}
