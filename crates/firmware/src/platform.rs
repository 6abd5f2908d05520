//! The virtual machine the firmware runs on, as UEFI structures: its device paths, its boot
//! options and its firmware volumes. The model is a Generation 2 VM laid out as QEMU's q35
//! machine with OVMF presents it (an AHCI controller at 00:1f.2 with the OS disk on port 0
//! and an empty optical drive on port 2, the OS disk with one MBR partition holding the ESP),
//! so the PCRs that describe boot applications come out as on that machine.
//!
//! PCRs 0, 1, 2, 3, 5 and 6 describe the platform, not the node image: they depend on this
//! model and on the firmware build, and are not expected to equal another platform's.

use secureboot::guid::{self, Guid};

/// UEFI_VARIABLE_DATA (TCG PFP 10.4.1): how variables are measured.
pub fn variable_data(vendor: Guid, name: &str, data: &[u8]) -> Vec<u8> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let mut out = Vec::with_capacity(32 + units.len() * 2 + data.len());
    out.extend_from_slice(&vendor.0);
    out.extend_from_slice(&(units.len() as u64).to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    for u in units {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// One device path node: type, subtype, little-endian length, data.
fn node(ty: u8, subtype: u8, data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
    let mut out = vec![ty, subtype];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(data);
    out
}

const END: [u8; 4] = [0x7f, 0xff, 0x04, 0x00];

/// PciRoot(0x0)/Pci(0x1F,0x2)/Sata(port,0xFFFF,0x0): the AHCI controller's port.
fn sata(port: u16) -> Vec<u8> {
    let mut p = node(2, 1, &[0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0]); // ACPI PNP0A03, UID 0
    p.extend(node(1, 1, &[0x02, 0x1f])); // PCI function 2, device 0x1f
    let mut s = port.to_le_bytes().to_vec();
    s.extend_from_slice(&0xffffu16.to_le_bytes());
    s.extend_from_slice(&0u16.to_le_bytes());
    p.extend(node(3, 0x12, &s));
    p
}

/// File(path): a UTF-16 path with its NUL.
fn file(path: &str) -> Vec<u8> {
    let mut data = Vec::new();
    for u in path.encode_utf16().chain([0]) {
        data.extend_from_slice(&u.to_le_bytes());
    }
    node(4, 4, &data)
}

/// The ESP partition on the OS disk: HD(1,MBR,signature,start,size).
const ESP_START: u64 = 0x3f;
const ESP_SECTORS: u64 = 0x000f_bfc1;
const MBR_SIGNATURE: u32 = 0xbe1a_fdfa;

fn esp_partition() -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&1u32.to_le_bytes());
    d.extend_from_slice(&ESP_START.to_le_bytes());
    d.extend_from_slice(&ESP_SECTORS.to_le_bytes());
    let mut sig = [0u8; 16];
    sig[..4].copy_from_slice(&MBR_SIGNATURE.to_le_bytes());
    d.extend_from_slice(&sig);
    d.extend_from_slice(&[1, 1]); // MBR partition format, 32-bit MBR signature
    node(4, 1, &d)
}

/// The full device path of a file on the ESP, as the firmware's boot manager loads it.
pub fn esp_file_path(path: &str) -> Vec<u8> {
    let mut p = sata(0);
    p.extend(esp_partition());
    p.extend(file(path));
    p.extend_from_slice(&END);
    p
}

/// A file path relative to the loaded image's device, as shim passes it for grub.
pub fn relative_file_path(path: &str) -> Vec<u8> {
    let mut p = file(path);
    p.extend_from_slice(&END);
    p
}

/// EFI_IMAGE_LOAD_EVENT (TCG PFP 10.2.3) for an image of `len` bytes.
pub fn image_load_event(len: usize, device_path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + device_path.len());
    out.extend_from_slice(&0u64.to_le_bytes()); // ImageLocationInMemory: not meaningful here
    out.extend_from_slice(&(len as u64).to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // ImageLinkTimeAddress
    out.extend_from_slice(&(device_path.len() as u64).to_le_bytes());
    out.extend_from_slice(device_path);
    out
}

/// EFI_LOAD_OPTION (UEFI 2.10, 3.1.3).
fn load_option(attributes: u32, description: &str, path: &[u8], optional: &[u8]) -> Vec<u8> {
    let mut out = attributes.to_le_bytes().to_vec();
    out.extend_from_slice(&u16::try_from(path.len()).unwrap_or(u16::MAX).to_le_bytes());
    for u in description.encode_utf16().chain([0]) {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out.extend_from_slice(path);
    out.extend_from_slice(optional);
    out
}

/// An OVMF firmware file in a firmware volume: Fv(volume)/FvFile(file).
fn fv_file(volume: Guid, file: Guid) -> Vec<u8> {
    let mut p = node(4, 7, &volume.0);
    p.extend(node(4, 6, &file.0));
    p.extend_from_slice(&END);
    p
}

const DXE_FV: Guid = Guid::parse("7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1");
const UI_APP: Guid = Guid::parse("462caa21-7614-4503-836e-8ab6f4662331");
const SHELL_APP: Guid = Guid::parse("7c04a583-9e3e-4f1c-ad65-e05268d0b4d1");
/// The optional data OVMF's platform boot manager attaches to the options it creates.
const AUTO_CREATED: Guid = Guid::parse("8108ac4e-9f11-4d59-850e-e21a522c59b2");

/// A boot option and whether booting it reaches the node image.
pub struct BootOption {
    pub variable: &'static str,
    pub data: Vec<u8>,
    /// Hidden options (the setup application) are skipped by the boot manager.
    pub hidden: bool,
    /// The empty optical drive: the boot manager calls it, it returns at once.
    pub empty: bool,
}

/// The boot options, in `BootOrder` order.
pub fn boot_options() -> Vec<BootOption> {
    vec![
        BootOption {
            variable: "Boot0000",
            data: load_option(0x109, "UiApp", &fv_file(DXE_FV, UI_APP), &[]),
            hidden: true,
            empty: false,
        },
        BootOption {
            variable: "Boot0001",
            data: load_option(
                1,
                "UEFI QEMU DVD-ROM QM00005 ",
                &[sata(2), END.to_vec()].concat(),
                &AUTO_CREATED.0,
            ),
            hidden: false,
            empty: true,
        },
        BootOption {
            variable: "Boot0002",
            data: load_option(
                1,
                "UEFI QEMU HARDDISK QM00001 ",
                &[sata(0), END.to_vec()].concat(),
                &AUTO_CREATED.0,
            ),
            hidden: false,
            empty: false,
        },
        BootOption {
            variable: "Boot0003",
            data: load_option(1, "EFI Internal Shell", &fv_file(DXE_FV, SHELL_APP), &[]),
            hidden: false,
            empty: false,
        },
    ]
}

/// `BootOrder`: the options' numbers.
pub fn boot_order() -> Vec<u8> {
    (0u16..4).flat_map(u16::to_le_bytes).collect()
}

/// The firmware volumes measured into PCR 0: a description of this firmware (there is no
/// firmware binary to hash), with OVMF's blob addresses.
pub fn firmware_volumes() -> [(Vec<u8>, [u64; 2]); 2] {
    let version = concat!("trustlaunch virtual firmware ", env!("CARGO_PKG_VERSION"));
    [
        (
            format!("{version}: PEI").into_bytes(),
            [0x82_0000, 0xe_0000],
        ),
        (
            format!("{version}: DXE").into_bytes(),
            [0x90_0000, 0xc0_0000],
        ),
    ]
}

/// EFI_GLOBAL_VARIABLE, re-exported for the boot sequence.
pub const GLOBAL: Guid = guid::EFI_GLOBAL_VARIABLE;
