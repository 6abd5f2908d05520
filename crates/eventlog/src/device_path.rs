//! UEFI device paths (UEFI 2.10 chapter 10) as logged in EFI_IMAGE_LOAD_EVENT: common nodes
//! decoded, every other node kept raw. Read from borrowed bytes; a node whose length does
//! not fit is an error with its offset, never a panic or a loop.

use std::fmt;

use crate::error::Error;
use crate::reader::Reader;
use crate::Guid;

/// Most nodes decoded in one path.
pub const MAX_NODES: usize = 256;

/// A device path: its nodes in order (End nodes included, as logged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DevicePath {
    pub nodes: Vec<DevicePathNode>,
}

/// One EFI_DEVICE_PATH_PROTOCOL node (UEFI 2.10 section 10.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePathNode {
    /// Hardware, PCI (10.3.2.1).
    Pci { function: u8, device: u8 },
    /// ACPI (10.3.3): _HID and _UID.
    Acpi { hid: u32, uid: u32 },
    /// Messaging, MAC address (10.3.5.11): the 32-byte field (Ethernet uses the first 6).
    Mac { address: [u8; 32], if_type: u8 },
    /// Messaging, IPv4 (10.3.5.12): addresses decoded, ports/protocol/gateway/mask kept.
    Ipv4 {
        local: [u8; 4],
        remote: [u8; 4],
        rest: Vec<u8>,
    },
    /// Messaging, IPv6 (10.3.5.13): addresses decoded, the other fields kept.
    Ipv6 {
        local: [u8; 16],
        remote: [u8; 16],
        rest: Vec<u8>,
    },
    /// Messaging, URI (10.3.5.23).
    Uri(String),
    /// Vendor-defined node of any type (hardware 1/4, messaging 3/10, media 4/3).
    Vendor {
        node_type: u8,
        guid: Guid,
        data: Vec<u8>,
    },
    /// Media, hard drive (10.3.6.1).
    HardDrive {
        partition: u32,
        start: u64,
        size: u64,
        signature: [u8; 16],
        format: u8,
        signature_type: u8,
    },
    /// Media, file path (10.3.6.4), UTF-16 decoded.
    FilePath(String),
    /// Media, PIWG firmware file (10.3.6.6).
    FvFile(Guid),
    /// Media, PIWG firmware volume (10.3.6.7).
    Fv(Guid),
    /// End of an instance (0x7f/0x01) or of the whole path (0x7f/0xff).
    End { sub_type: u8 },
    /// Any node not decoded above, kept as logged.
    Raw {
        node_type: u8,
        sub_type: u8,
        data: Vec<u8>,
    },
}

impl DevicePath {
    /// Decode a device path (the whole LengthOfDevicePath area of an image load event).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Self::parse(&mut Reader::new(bytes))
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut nodes = Vec::new();
        while !r.is_empty() {
            if nodes.len() >= MAX_NODES {
                return Err(r.invalid("device path", "more than 256 nodes"));
            }
            let node_type = r.u8("device path node type")?;
            let sub_type = r.u8("device path node subtype")?;
            let len = r.u16("device path node length")?;
            let Some(body) = len.checked_sub(4) else {
                return Err(r.invalid("device path node length", "below 4"));
            };
            let mut body = r.sub(body.into(), "device path node")?;
            nodes.push(DevicePathNode::decode(node_type, sub_type, &mut body));
        }
        Ok(Self { nodes })
    }

    /// The path's bytes (what [`DevicePath::parse`] read, byte for byte).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.nodes
            .iter()
            .flat_map(DevicePathNode::to_bytes)
            .collect()
    }

    /// The last file path node's text: the image's path on its volume.
    pub fn file_path(&self) -> Option<&str> {
        self.nodes.iter().rev().find_map(|n| match n {
            DevicePathNode::FilePath(p) => Some(p.as_str()),
            _ => None,
        })
    }
}

fn utf16(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .collect();
    let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
    String::from_utf16_lossy(units.get(..end).unwrap_or_default())
}

pub(crate) fn utf16_string(bytes: &[u8]) -> String {
    utf16(bytes)
}

impl DevicePathNode {
    /// Decode one node's body; a body too short for its kind stays raw.
    fn decode(node_type: u8, sub_type: u8, body: &mut Reader<'_>) -> Self {
        let raw = body.rest().to_vec();
        let decoded = (|| -> Result<Option<Self>, Error> {
            Ok(Some(match (node_type, sub_type) {
                (1, 1) => Self::Pci {
                    function: body.u8("function")?,
                    device: body.u8("device")?,
                },
                (2, 1) => Self::Acpi {
                    hid: body.u32("_HID")?,
                    uid: body.u32("_UID")?,
                },
                (3, 11) => Self::Mac {
                    address: body.array("MAC address")?,
                    if_type: body.u8("IfType")?,
                },
                (3, 12) => Self::Ipv4 {
                    local: body.array("local IP")?,
                    remote: body.array("remote IP")?,
                    rest: body.rest().to_vec(),
                },
                (3, 13) => Self::Ipv6 {
                    local: body.array("local IP")?,
                    remote: body.array("remote IP")?,
                    rest: body.rest().to_vec(),
                },
                (3, 24) => Self::Uri(String::from_utf8_lossy(body.rest()).into_owned()),
                (1, 4) | (3, 10) | (4, 3) => Self::Vendor {
                    node_type,
                    guid: Guid(body.array("vendor GUID")?),
                    data: body.rest().to_vec(),
                },
                (4, 1) => Self::HardDrive {
                    partition: body.u32("partition number")?,
                    start: body.u64("partition start")?,
                    size: body.u64("partition size")?,
                    signature: body.array("partition signature")?,
                    format: body.u8("partition format")?,
                    signature_type: body.u8("signature type")?,
                },
                (4, 4) => Self::FilePath(utf16(body.rest())),
                (4, 6) => Self::FvFile(Guid(body.array("FV file GUID")?)),
                (4, 7) => Self::Fv(Guid(body.array("FV GUID")?)),
                (0x7f, _) => Self::End { sub_type },
                _ => return Ok(None),
            }))
        })();
        match decoded {
            // A node whose encoding would differ (a longer body than its kind has, text
            // that does not survive decoding) stays raw: paths write back byte for byte.
            Ok(Some(node)) if node.encode() == (node_type, sub_type, raw.clone()) => node,
            _ => Self::Raw {
                node_type,
                sub_type,
                data: raw,
            },
        }
    }

    /// (type, subtype, body) of the node's encoding.
    fn encode(&self) -> (u8, u8, Vec<u8>) {
        match self {
            Self::Pci { function, device } => (1, 1, vec![*function, *device]),
            Self::Acpi { hid, uid } => {
                let mut b = hid.to_le_bytes().to_vec();
                b.extend_from_slice(&uid.to_le_bytes());
                (2, 1, b)
            }
            Self::Mac { address, if_type } => {
                let mut b = address.to_vec();
                b.push(*if_type);
                (3, 11, b)
            }
            Self::Ipv4 {
                local,
                remote,
                rest,
            } => (3, 12, [&local[..], &remote[..], rest].concat()),
            Self::Ipv6 {
                local,
                remote,
                rest,
            } => (3, 13, [&local[..], &remote[..], rest].concat()),
            Self::Uri(u) => (3, 24, u.as_bytes().to_vec()),
            Self::Vendor {
                node_type,
                guid,
                data,
            } => {
                let sub_type = match node_type {
                    1 => 4,
                    3 => 10,
                    _ => 3,
                };
                (*node_type, sub_type, [&guid.0[..], data].concat())
            }
            Self::HardDrive {
                partition,
                start,
                size,
                signature,
                format,
                signature_type,
            } => {
                let mut b = partition.to_le_bytes().to_vec();
                b.extend_from_slice(&start.to_le_bytes());
                b.extend_from_slice(&size.to_le_bytes());
                b.extend_from_slice(signature);
                b.extend_from_slice(&[*format, *signature_type]);
                (4, 1, b)
            }
            Self::FilePath(p) => {
                let b = p
                    .encode_utf16()
                    .chain([0])
                    .flat_map(u16::to_le_bytes)
                    .collect();
                (4, 4, b)
            }
            Self::FvFile(g) => (4, 6, g.0.to_vec()),
            Self::Fv(g) => (4, 7, g.0.to_vec()),
            Self::End { sub_type } => (0x7f, *sub_type, Vec::new()),
            Self::Raw {
                node_type,
                sub_type,
                data,
            } => (*node_type, *sub_type, data.clone()),
        }
    }

    /// The node as EFI_DEVICE_PATH_PROTOCOL bytes (a body above 65531 bytes is cut: no
    /// device path node is that large).
    pub fn to_bytes(&self) -> Vec<u8> {
        let (node_type, sub_type, mut body) = self.encode();
        body.truncate(usize::from(u16::MAX).saturating_sub(4));
        let len = u16::try_from(body.len().saturating_add(4)).unwrap_or(u16::MAX);
        let mut out = vec![node_type, sub_type];
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Display for DevicePathNode {
    /// The UEFI text form (UEFI 2.10 section 10.6) for decoded nodes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pci { function, device } => write!(f, "Pci(0x{device:x},0x{function:x})"),
            Self::Acpi { hid, uid } if hid & 0xffff == 0x41d0 => {
                write!(f, "Acpi(PNP{:04X},0x{uid:x})", hid >> 16)
            }
            Self::Acpi { hid, uid } => write!(f, "Acpi(0x{hid:08x},0x{uid:x})"),
            Self::Mac { address, if_type } => {
                // IfType 0/1 (Ethernet) uses 6 of the 32 bytes.
                let n = if *if_type <= 1 { 6 } else { 32 };
                let used = address.get(..n).unwrap_or(address);
                write!(f, "MAC({},0x{if_type:x})", hex(used))
            }
            Self::Ipv4 { local, remote, .. } => write!(
                f,
                "IPv4({},{})",
                std::net::Ipv4Addr::from(*remote),
                std::net::Ipv4Addr::from(*local)
            ),
            Self::Ipv6 { local, remote, .. } => write!(
                f,
                "IPv6({},{})",
                std::net::Ipv6Addr::from(*remote),
                std::net::Ipv6Addr::from(*local)
            ),
            Self::Uri(u) => write!(f, "Uri({u})"),
            Self::Vendor {
                node_type,
                guid,
                data,
            } => {
                let kind = match node_type {
                    1 => "VenHw",
                    3 => "VenMsg",
                    _ => "VenMedia",
                };
                if data.is_empty() {
                    write!(f, "{kind}({guid})")
                } else {
                    write!(f, "{kind}({guid},{})", hex(data))
                }
            }
            Self::HardDrive {
                partition,
                start,
                size,
                signature,
                format,
                signature_type,
            } => {
                let sig = if *signature_type == 2 {
                    Guid(*signature).to_string()
                } else {
                    hex(signature)
                };
                let fmt_name = if *format == 2 { "GPT" } else { "MBR" };
                write!(f, "HD({partition},{fmt_name},{sig},0x{start:x},0x{size:x})")
            }
            Self::FilePath(p) => f.write_str(p),
            Self::FvFile(g) => write!(f, "FvFile({g})"),
            Self::Fv(g) => write!(f, "Fv({g})"),
            Self::End { .. } => Ok(()),
            Self::Raw {
                node_type,
                sub_type,
                data,
            } => write!(f, "Path({node_type},{sub_type},{})", hex(data)),
        }
    }
}

impl fmt::Display for DevicePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| !matches!(n, DevicePathNode::End { .. }))
            .map(ToString::to_string)
            .collect();
        f.write_str(&parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_ovmf_shim_path_and_keeps_unknown_nodes() {
        // PciRoot(0)/Pci(1,1)/unknown(5,9,"ab")/\EFI\a/End
        let mut bytes = vec![2, 1, 12, 0, 0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0];
        bytes.extend_from_slice(&[1, 1, 6, 0, 1, 1]);
        bytes.extend_from_slice(&[5, 9, 6, 0, 0xab, 0xcd]);
        let name: Vec<u8> = "\\EFI\\a\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        bytes.extend_from_slice(&[4, 4, (name.len() + 4) as u8, 0]);
        bytes.extend_from_slice(&name);
        bytes.extend_from_slice(&[0x7f, 0xff, 4, 0]);
        let p = DevicePath::parse(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(
            p.to_string(),
            "Acpi(PNP0A03,0x0)/Pci(0x1,0x1)/Path(5,9,abcd)/\\EFI\\a"
        );
        assert_eq!(p.file_path(), Some("\\EFI\\a"));
        assert_eq!(p.to_bytes(), bytes);
    }

    #[test]
    fn nodes_that_would_not_write_back_stay_raw() {
        // An ACPI node one byte longer than its kind, a file path without its NUL.
        let bytes = [2, 1, 13, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 4, 4, 6, 0, b'a', 0];
        let p = DevicePath::parse(&mut Reader::new(&bytes)).unwrap();
        assert!(p
            .nodes
            .iter()
            .all(|n| matches!(n, DevicePathNode::Raw { .. })));
        assert_eq!(p.to_bytes(), bytes);
    }

    #[test]
    fn short_node_length_is_an_error_not_a_loop() {
        let e = DevicePath::parse(&mut Reader::new(&[4, 4, 2, 0])).unwrap_err();
        assert!(e.to_string().contains("below 4"), "{e}");
        assert!(DevicePath::parse(&mut Reader::new(&[4, 4, 200, 0, 1])).is_err());
    }
}
