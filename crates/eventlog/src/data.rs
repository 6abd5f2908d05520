//! Event data decoding (PFP 10.4): what each event type's payload means, decoded from the
//! event's bytes on a borrowed reader. A payload that does not decode is an error for that
//! event only; unknown types stay raw. Decoding never changes the event.

use crate::device_path::{utf16_string, DevicePath};
use crate::error::Error;
use crate::log::{Event, EventLog, LogFormat};
use crate::reader::{Reader, UintnWidth};
use crate::spec_id::{SpecIdEvent, StartupLocality};
use crate::{EventType, Guid};

/// Longest UEFI variable name accepted, in UTF-16 code units.
pub const MAX_VARIABLE_NAME: u64 = 1024;
/// Most GPT partitions and handoff tables decoded.
pub const MAX_TABLE_ENTRIES: u64 = 1024;

/// A decoded event payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventData {
    /// EV_NO_ACTION: the Spec ID event (PFP 10.4.5.1).
    SpecId(SpecIdEvent),
    /// EV_NO_ACTION: the Startup Locality event (PFP 10.4.5.3).
    StartupLocality(StartupLocality),
    /// Any other EV_NO_ACTION event.
    NoAction(NoActionEvent),
    /// EV_SEPARATOR: 0 (normal) or 1 (error) as a UINT32 (PFP 10.4.1).
    Separator(u32),
    /// EV_ACTION / EV_EFI_ACTION: an ASCII string, not NUL-terminated.
    Action(String),
    /// EV_EFI_VARIABLE_* (UEFI_VARIABLE_DATA, PFP 10.4.2).
    Variable(UefiVariableData),
    /// EV_EFI_BOOT_SERVICES_APPLICATION/DRIVER, EV_EFI_RUNTIME_SERVICES_DRIVER
    /// (UEFI_IMAGE_LOAD_EVENT, PFP 10.4.3).
    ImageLoad(ImageLoadEvent),
    /// EV_EFI_GPT_EVENT / EV_EFI_GPT_EVENT2 (UEFI_GPT_DATA, PFP 10.4.4).
    Gpt(GptData),
    /// EV_EFI_PLATFORM_FIRMWARE_BLOB(2), EV_S_CRTM_CONTENTS, EV_POST_CODE with a blob.
    FirmwareBlob(FirmwareBlob),
    /// EV_EFI_HANDOFF_TABLES(2) (PFP 10.4.6).
    HandoffTables(HandoffTables),
    /// EV_IPL strings (grub, shim, systemd-boot).
    Ipl(IplString),
    /// A text payload: EV_S_CRTM_VERSION (UTF-16), EV_POST_CODE strings, ...
    Text(String),
    /// EV_S_CRTM_VERSION given as a GUID.
    Guid(Guid),
    /// A payload this crate does not interpret (the event's data is the value).
    Raw,
}

/// UEFI_VARIABLE_DATA (PFP 10.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UefiVariableData {
    pub vendor_guid: Guid,
    pub name: String,
    pub data: Vec<u8>,
    /// Bytes after VariableData that the event holds (shim logs some after its "Shim"
    /// certificate); kept so that [`Self::to_bytes`] gives back the event data.
    pub extra: Vec<u8>,
}

/// UEFI_IMAGE_LOAD_EVENT (PFP 10.4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLoadEvent {
    pub location_in_memory: u64,
    pub length_in_memory: u64,
    pub link_time_address: u64,
    pub device_path: DevicePath,
    /// Bytes after the device path that the event holds (some firmware logs a path longer
    /// than LengthOfDevicePath says); kept for [`Self::to_bytes`].
    pub extra: Vec<u8>,
}

/// UEFI_GPT_DATA (PFP 10.4.4): the partition table header and the used entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptData {
    pub disk_guid: Guid,
    pub header: Vec<u8>,
    pub partitions: Vec<GptPartition>,
}

/// EFI_PARTITION_ENTRY (UEFI 2.10 5.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub starting_lba: u64,
    pub ending_lba: u64,
    pub attributes: u64,
    pub name: String,
}

/// UEFI_PLATFORM_FIRMWARE_BLOB / _BLOB2 (PFP 10.4.5): where the measured code was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareBlob {
    /// BLOB2's description (None for the first form).
    pub description: Option<String>,
    pub base: u64,
    pub length: u64,
}

/// UEFI_HANDOFF_TABLE_POINTERS(2) (PFP 10.4.6): configuration tables handed to the OS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffTables {
    pub description: Option<String>,
    /// (VendorGuid, VendorTable address).
    pub tables: Vec<(Guid, u64)>,
}

/// An EV_NO_ACTION event other than Spec ID / Startup Locality: its 16-byte signature (when
/// printable) and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoActionEvent {
    pub signature: Option<String>,
}

/// What an EV_IPL string is, by its producer's convention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IplString {
    /// grub: `grub_cmd: <command>` or `grub_cmd <command>` (PCR 8), prefix removed.
    GrubCommand(String),
    /// grub: `kernel_cmdline: <line>` or `grub_kernel_cmdline <line>` (PCR 8).
    KernelCmdline(String),
    /// grub: `module_cmdline: <line>` (PCR 8).
    ModuleCmdline(String),
    /// shim: a variable name (MokList, MokListX, MokListTrusted, SbatLevel) tagging a
    /// measurement of that variable's contents (PCR 14).
    ShimVariable(String),
    /// Any other string: grub's file paths in PCR 9, systemd-boot's UTF-16 strings.
    Text(String),
}

/// shim's EV_IPL tags (shim's `MokList`, `MokListX`, `MokListTrusted`, `SbatLevel`).
const SHIM_IPL_TAGS: [&str; 4] = ["MokList", "MokListX", "MokListTrusted", "SbatLevel"];

#[derive(Clone, Copy)]
enum GrubKind {
    Command,
    KernelCmdline,
    ModuleCmdline,
}

/// grub's EV_IPL strings in PCR 8: the logged prefix, what follows it, and whether the
/// digest covers the trailing NUL. Upstream grub (2.04+) logs `grub_cmd: X\0` and hashes X;
/// Red Hat's older patches log `grub_cmd X\0` and hash X with its NUL, and
/// `grub_kernel_cmdline X\0` hashing X (seen in the rhcos and rhel logs of testdata/).
const GRUB_FORMS: [(&[u8], GrubKind, bool); 5] = [
    (b"grub_cmd: ", GrubKind::Command, false),
    (b"kernel_cmdline: ", GrubKind::KernelCmdline, false),
    (b"module_cmdline: ", GrubKind::ModuleCmdline, false),
    (b"grub_cmd ", GrubKind::Command, true),
    (b"grub_kernel_cmdline ", GrubKind::KernelCmdline, false),
];

/// If `data` is one of grub's PCR 8 strings: its kind, its text and the bytes grub hashed.
fn grub_string(data: &[u8]) -> Option<(GrubKind, &[u8], &[u8])> {
    let (prefix, kind, nul_hashed) = GRUB_FORMS.iter().find(|(p, _, _)| data.starts_with(p))?;
    let body = data.get(prefix.len()..)?;
    let text = body.strip_suffix(&[0]).unwrap_or(body);
    Some((*kind, text, if *nul_hashed { body } else { text }))
}

/// The bytes grub hashed for an EV_IPL string it logged (None if it is not grub's).
pub(crate) fn grub_measured_bytes(data: &[u8]) -> Option<&[u8]> {
    grub_string(data).map(|(_, _, measured)| measured)
}

impl IplString {
    fn decode(bytes: &[u8]) -> Option<Self> {
        if let Some((kind, text, _)) = grub_string(bytes) {
            let text = String::from_utf8_lossy(text).into_owned();
            return Some(match kind {
                GrubKind::Command => Self::GrubCommand(text),
                GrubKind::KernelCmdline => Self::KernelCmdline(text),
                GrubKind::ModuleCmdline => Self::ModuleCmdline(text),
            });
        }
        let text = ascii_text(bytes).or_else(|| utf16_text(bytes))?;
        Some(
            if SHIM_IPL_TAGS.contains(&text.as_str()) && bytes.ends_with(&[0]) {
                Self::ShimVariable(text)
            } else {
                Self::Text(text)
            },
        )
    }
}

/// Printable ASCII/UTF-8 text, trailing NULs removed.
fn ascii_text(bytes: &[u8]) -> Option<String> {
    let end = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i.saturating_add(1));
    let s = std::str::from_utf8(bytes.get(..end)?).ok()?;
    let printable = s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t');
    (printable && !s.is_empty()).then(|| s.to_owned())
}

/// NUL-terminated UTF-16LE text (CHAR16 strings, UEFI 2.10 2.3.1), if it decodes cleanly.
fn utf16_text(bytes: &[u8]) -> Option<String> {
    if !bytes.len().is_multiple_of(2) || !bytes.ends_with(&[0, 0]) {
        return None;
    }
    let s = utf16_string(bytes);
    let printable = s.chars().all(|c| !c.is_control() && c != '\u{fffd}');
    printable.then_some(s)
}

impl UefiVariableData {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, Error> {
        let vendor_guid = Guid(r.array("VariableName GUID")?);
        let name_len = r.u64("UnicodeNameLength")?;
        let name_len = r.capped(name_len, MAX_VARIABLE_NAME, "UnicodeNameLength")?;
        let data_len = r.u64("VariableDataLength")?;
        let data_len = r.capped(data_len, crate::MAX_EVENT_DATA.into(), "VariableDataLength")?;
        let name = utf16_string(r.take(name_len.saturating_mul(2), "UnicodeName")?);
        let data = r.take(data_len, "VariableData")?.to_vec();
        Ok(Self {
            vendor_guid,
            name,
            data,
            extra: r.rest().to_vec(),
        })
    }

    /// The encoding this was parsed from (for builders of variable events).
    pub fn to_bytes(&self) -> Vec<u8> {
        let name: Vec<u8> = self
            .name
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut out = self.vendor_guid.0.to_vec();
        out.extend_from_slice(&((name.len() / 2) as u64).to_le_bytes());
        out.extend_from_slice(&(self.data.len() as u64).to_le_bytes());
        out.extend_from_slice(&name);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.extra);
        out
    }
}

/// The UINT8-sized description of BLOB2 / HANDOFF_TABLES2 forms (at most 255 bytes kept).
fn put_description(out: &mut Vec<u8>, description: Option<&str>) {
    if let Some(d) = description {
        let d = d.as_bytes();
        let d = d.get(..255).unwrap_or(d);
        out.push(u8::try_from(d.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(d);
    }
}

impl ImageLoadEvent {
    /// UEFI_IMAGE_LOAD_EVENT bytes with 64-bit UINTN (the builder's logs), for firmware.
    pub fn to_bytes(&self) -> Vec<u8> {
        let path = self.device_path.to_bytes();
        let mut out = self.location_in_memory.to_le_bytes().to_vec();
        out.extend_from_slice(&self.length_in_memory.to_le_bytes());
        out.extend_from_slice(&self.link_time_address.to_le_bytes());
        out.extend_from_slice(&(path.len() as u64).to_le_bytes());
        out.extend_from_slice(&path);
        out.extend_from_slice(&self.extra);
        out
    }
}

impl FirmwareBlob {
    /// UEFI_PLATFORM_FIRMWARE_BLOB, or _BLOB2 when there is a description.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_description(&mut out, self.description.as_deref());
        out.extend_from_slice(&self.base.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out
    }
}

impl HandoffTables {
    /// UEFI_HANDOFF_TABLE_POINTERS (64-bit UINTN), or _POINTERS2 with a description.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_description(&mut out, self.description.as_deref());
        out.extend_from_slice(&(self.tables.len() as u64).to_le_bytes());
        for (guid, address) in &self.tables {
            out.extend_from_slice(&guid.0);
            out.extend_from_slice(&address.to_le_bytes());
        }
        out
    }
}

fn description(r: &mut Reader<'_>, what: &'static str) -> Result<String, Error> {
    let len = r.u8(what)?;
    Ok(String::from_utf8_lossy(r.take(len.into(), what)?).into_owned())
}

impl EventData {
    /// Decode `event`'s payload. `uintn` is the width of UINTN fields in this log.
    pub(crate) fn decode_event(
        event: &Event,
        index: usize,
        data_offset: usize,
        uintn: UintnWidth,
        first_event: bool,
    ) -> Result<Self, Error> {
        let r = &mut Reader::at(&event.data, data_offset, index);
        let t = event.event_type;
        Ok(match t {
            EventType::EV_NO_ACTION => {
                if first_event {
                    if let Some(spec) = SpecIdEvent::parse(r)? {
                        return Ok(Self::SpecId(spec));
                    }
                }
                if let Some(l) = StartupLocality::parse(&event.data) {
                    Self::StartupLocality(l)
                } else {
                    let signature = event.data.get(..16).and_then(ascii_text);
                    Self::NoAction(NoActionEvent { signature })
                }
            }
            EventType::EV_SEPARATOR => {
                let v = r.u32("separator value")?;
                if !r.is_empty() {
                    return Err(r.invalid("separator", "longer than 4 bytes"));
                }
                Self::Separator(v)
            }
            EventType::EV_ACTION | EventType::EV_EFI_ACTION => {
                Self::Action(String::from_utf8_lossy(&event.data).into_owned())
            }
            EventType::EV_EFI_VARIABLE_DRIVER_CONFIG
            | EventType::EV_EFI_VARIABLE_BOOT
            | EventType::EV_EFI_VARIABLE_BOOT2
            | EventType::EV_EFI_VARIABLE_AUTHORITY => Self::Variable(UefiVariableData::parse(r)?),
            EventType::EV_EFI_BOOT_SERVICES_APPLICATION
            | EventType::EV_EFI_BOOT_SERVICES_DRIVER
            | EventType::EV_EFI_RUNTIME_SERVICES_DRIVER => {
                let location_in_memory = r.u64("ImageLocationInMemory")?;
                let length_in_memory = r.uintn(uintn, "ImageLengthInMemory")?;
                let link_time_address = r.uintn(uintn, "ImageLinkTimeAddress")?;
                let path_len = r.uintn(uintn, "LengthOfDevicePath")?;
                let mut path = r.sub(path_len, "DevicePath")?;
                Self::ImageLoad(ImageLoadEvent {
                    location_in_memory,
                    length_in_memory,
                    link_time_address,
                    device_path: DevicePath::parse(&mut path)?,
                    extra: r.rest().to_vec(),
                })
            }
            EventType::EV_EFI_GPT_EVENT | EventType::EV_EFI_GPT_EVENT2 => {
                Self::Gpt(GptData::parse(r, uintn)?)
            }
            EventType::EV_EFI_PLATFORM_FIRMWARE_BLOB2 => {
                let description = Some(description(r, "BlobDescription")?);
                Self::FirmwareBlob(FirmwareBlob {
                    description,
                    base: r.u64("BlobBase")?,
                    length: r.u64("BlobLength")?,
                })
            }
            EventType::EV_EFI_PLATFORM_FIRMWARE_BLOB
            | EventType::EV_S_CRTM_CONTENTS
            | EventType::EV_POST_CODE
                if event.data.len() == 16 =>
            {
                Self::FirmwareBlob(FirmwareBlob {
                    description: None,
                    base: r.u64("BlobBase")?,
                    length: r.u64("BlobLength")?,
                })
            }
            EventType::EV_EFI_HANDOFF_TABLES | EventType::EV_EFI_HANDOFF_TABLES2 => {
                let description = if t == EventType::EV_EFI_HANDOFF_TABLES2 {
                    Some(description(r, "TableDescription")?)
                } else {
                    None
                };
                let count = if description.is_some() {
                    r.u64("NumberOfTables")?
                } else {
                    r.uintn(uintn, "NumberOfTables")?
                };
                let count = r.capped(count, MAX_TABLE_ENTRIES, "NumberOfTables")?;
                let mut tables = Vec::new();
                for _ in 0..count {
                    let guid = Guid(r.array("VendorGuid")?);
                    tables.push((guid, r.uintn(uintn, "VendorTable")?));
                }
                Self::HandoffTables(HandoffTables {
                    description,
                    tables,
                })
            }
            EventType::EV_IPL => IplString::decode(&event.data).map_or(Self::Raw, Self::Ipl),
            // PFP 10.4.1: the S-CRTM version is a CHAR16 string or a GUID.
            EventType::EV_S_CRTM_VERSION => match utf16_text(&event.data) {
                Some(text) => Self::Text(text),
                None if event.data.len() == 16 => Self::Guid(Guid(r.array("S-CRTM GUID")?)),
                None => Self::Raw,
            },
            EventType::EV_POST_CODE
            | EventType::EV_S_CRTM_CONTENTS
            | EventType::EV_EFI_HCRTM_EVENT
            | EventType::EV_EVENT_TAG
            | EventType::EV_COMPACT_HASH
            | EventType::EV_PLATFORM_CONFIG_FLAGS
            | EventType::EV_OMIT_BOOT_DEVICE_EVENTS => {
                ascii_text(&event.data).map_or(Self::Raw, Self::Text)
            }
            _ => Self::Raw,
        })
    }
}

impl GptData {
    fn parse(r: &mut Reader<'_>, uintn: UintnWidth) -> Result<Self, Error> {
        // EFI_PARTITION_TABLE_HEADER is 92 bytes (UEFI 2.10 5.3.2); the entry size is at 84.
        let header = r.take(92, "UEFI_PARTITION_TABLE_HEADER")?;
        let mut h = Reader::new(header);
        h.take(56, "header fields")?;
        let disk_guid = Guid(h.array("DiskGUID")?);
        h.take(12, "entry LBA and count")?;
        let entry_size = h.u32("SizeOfPartitionEntry")?;
        if !(128..=4096).contains(&entry_size) {
            return Err(r.invalid("SizeOfPartitionEntry", "not within 128..=4096"));
        }
        let count = r.uintn(uintn, "NumberOfPartitions")?;
        let count = r.capped(count, MAX_TABLE_ENTRIES, "NumberOfPartitions")?;
        let mut partitions = Vec::new();
        for _ in 0..count {
            let mut p = r.sub(entry_size.into(), "EFI_PARTITION_ENTRY")?;
            partitions.push(GptPartition {
                type_guid: Guid(p.array("PartitionTypeGUID")?),
                unique_guid: Guid(p.array("UniquePartitionGUID")?),
                starting_lba: p.u64("StartingLBA")?,
                ending_lba: p.u64("EndingLBA")?,
                attributes: p.u64("Attributes")?,
                name: utf16_string(p.take(72, "PartitionName")?),
            });
        }
        Ok(Self {
            disk_guid,
            header: header.to_vec(),
            partitions,
        })
    }
}

impl EventLog {
    /// Decode the payload of event `index`.
    pub fn decode(&self, index: usize) -> Result<EventData, Error> {
        let event = self
            .events
            .get(index)
            .ok_or(Error::Usage("no event with that index"))?;
        let first = index == 0;
        let header = if first || matches!(self.format, LogFormat::Sha1) {
            32
        } else {
            event
                .digests
                .iter()
                .map(|d| d.bytes.len().saturating_add(2))
                .fold(16usize, usize::saturating_add)
        };
        EventData::decode_event(
            event,
            index,
            event.offset.saturating_add(header),
            self.uintn(),
            first,
        )
    }
}
