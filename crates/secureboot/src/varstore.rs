//! OVMF/EDK2 variable stores (an OVMF_VARS .fd): the firmware volume header (PI 1.8 vol. 3,
//! 3.2.1), the variable store header and the variable headers (EDK2 MdeModulePkg
//! `Guid/VariableFormat.h`, authenticated or not). Lists variables, and writes new values
//! into a copy as EDK2's variable driver does (old copy marked deleted, new one appended);
//! never reclaims space or touches the firmware volume header.

use crate::bytes::{align_up, slice, u16_at, u32_at, u64_at, Reader};
use crate::esl::EfiTime;
use crate::guid::{self, Guid};
use crate::{Error, Result};

const WHAT: &str = "variable store";
/// "_FVH", EFI_FVH_SIGNATURE.
const FVH_SIGNATURE: u32 = u32::from_le_bytes(*b"_FVH");
/// VARIABLE_DATA: a variable header's StartId.
const VARIABLE_DATA: u16 = 0x55aa;
/// VARIABLE_STORE_FORMATTED.
const STORE_FORMATTED: u8 = 0x5a;
/// VAR_ADDED, and VAR_ADDED with VAR_IN_DELETED_TRANSITION cleared: a live variable.
const VAR_ADDED: u8 = 0x3f;
const VAR_ADDED_IN_DELETED_TRANSITION: u8 = 0x3e;
/// Cap on variables in one store.
pub const MAX_VARIABLES: usize = 4096;

/// One variable header and its name and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable<'a> {
    /// File offset of the header.
    pub offset: usize,
    pub state: u8,
    pub attributes: u32,
    pub name: String,
    pub vendor: Guid,
    /// For authenticated variables, their TimeStamp.
    pub timestamp: Option<EfiTime>,
    pub data: &'a [u8],
}

impl Variable<'_> {
    /// Whether the variable is current (VAR_ADDED, possibly mid-deletion of an older copy).
    pub fn is_live(&self) -> bool {
        self.state == VAR_ADDED || self.state == VAR_ADDED_IN_DELETED_TRANSITION
    }
}

/// A parsed store.
#[derive(Debug, Clone)]
pub struct VariableStore<'a> {
    pub authenticated: bool,
    pub variables: Vec<Variable<'a>>,
    /// File offset of the first byte after the last variable (where a new one goes).
    pub free_offset: usize,
    /// File offset of the end of the variable store.
    pub end_offset: usize,
}

/// A variable to write with [`write_variables`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVariable<'a> {
    pub name: &'a str,
    pub vendor: Guid,
    pub attributes: u32,
    /// The TimeStamp of an authenticated store's header (ignored by a plain store).
    pub timestamp: EfiTime,
    pub data: &'a [u8],
}

/// VAR_DELETED cleared into a live variable's State (flash bits only go from 1 to 0).
const VAR_DELETED: u8 = 0xfd;

/// A copy of the store image `file` in which each of `updates` replaces the variable of the
/// same name and vendor: the live copy's State gets VAR_DELETED, the new value is appended
/// after the last variable (on erased, all-0xFF flash, 4-byte aligned), as EDK2's
/// `UpdateVariable` does at run time. Fails when the store has no room or its free area is
/// not erased (no reclaim here).
pub fn write_variables(file: &[u8], updates: &[NewVariable<'_>]) -> Result<Vec<u8>> {
    let mut out = file.to_vec();
    for u in updates {
        let store = VariableStore::parse(&out)?;
        let stale: Vec<usize> = store
            .variables
            .iter()
            .filter(|v| v.is_live() && v.name == u.name && v.vendor == u.vendor)
            .map(|v| v.offset.saturating_add(2))
            .collect();
        let record = encode_variable(u, store.authenticated);
        let at = align_up(store.free_offset, 4, WHAT, store.free_offset)?;
        let end = at
            .checked_add(record.len())
            .filter(|&e| e <= store.end_offset)
            .ok_or(Error::TooLarge {
                what: WHAT,
                offset: at,
                value: record.len() as u64,
                cap: store.end_offset.saturating_sub(at) as u64,
            })?;
        // EDK2 checks that the whole free area is erased before it appends there (otherwise it
        // reclaims); bytes left beyond the last variable could read as a variable once the
        // gap before them is filled.
        let free = out
            .get(store.free_offset..store.end_offset)
            .unwrap_or_default();
        if free.iter().any(|&b| b != 0xff) {
            return Err(Error::malformed(
                WHAT,
                store.free_offset,
                "space after the last variable is not erased",
            ));
        }
        let target = out.get_mut(at..end).ok_or(Error::Truncated {
            what: WHAT,
            offset: at,
        })?;
        target.copy_from_slice(&record);
        for state in stale {
            if let Some(b) = out.get_mut(state) {
                *b &= VAR_DELETED;
            }
        }
    }
    Ok(out)
}

fn encode_variable(v: &NewVariable<'_>, authenticated: bool) -> Vec<u8> {
    let name: Vec<u8> = v
        .name
        .encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut out = Vec::new();
    out.extend_from_slice(&VARIABLE_DATA.to_le_bytes());
    out.extend_from_slice(&[VAR_ADDED, 0]);
    out.extend_from_slice(&v.attributes.to_le_bytes());
    if authenticated {
        out.extend_from_slice(&0u64.to_le_bytes()); // MonotonicCount
        v.timestamp.encode(&mut out);
        out.extend_from_slice(&0u32.to_le_bytes()); // PubKeyIndex
    }
    out.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(v.data.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&v.vendor.0);
    out.extend_from_slice(&name);
    out.extend_from_slice(v.data);
    out
}

impl<'a> VariableStore<'a> {
    /// Parses an OVMF_VARS image: a firmware volume whose first bytes after its header are the
    /// variable store.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        if u32_at(bytes, 40, WHAT)? != FVH_SIGNATURE {
            return Err(Error::malformed(
                WHAT,
                40,
                "no _FVH firmware volume signature",
            ));
        }
        let fs = Guid(slice(bytes, 16, 16, WHAT)?.try_into().unwrap_or([0; 16]));
        if fs != guid::EFI_SYSTEM_NV_DATA_FV_GUID {
            return Err(Error::malformed(WHAT, 16, "not an NV-data firmware volume"));
        }
        let fv_len = u64_at(bytes, 32, WHAT)?;
        if fv_len > bytes.len() as u64 {
            return Err(Error::malformed(WHAT, 32, "FvLength beyond the file"));
        }
        let store = usize::from(u16_at(bytes, 48, WHAT)?);
        let kind = Guid(slice(bytes, store, 16, WHAT)?.try_into().unwrap_or([0; 16]));
        let authenticated = match kind {
            k if k == guid::EFI_AUTHENTICATED_VARIABLE_GUID => true,
            k if k == guid::EFI_VARIABLE_GUID => false,
            _ => {
                return Err(Error::malformed(
                    WHAT,
                    store,
                    "unknown variable store signature",
                ))
            }
        };
        let size = u32_at(bytes, store.saturating_add(16), WHAT)? as usize;
        let format = slice(bytes, store.saturating_add(20), 1, WHAT)?
            .first()
            .copied();
        if format != Some(STORE_FORMATTED) {
            return Err(Error::malformed(
                WHAT,
                store.saturating_add(20),
                "store not formatted",
            ));
        }
        let store_bytes = slice(bytes, store, size, WHAT)?;
        let header_len = if authenticated { 60 } else { 32 };
        let mut variables = Vec::new();
        // HEADER_ALIGN applies to addresses, not to offsets within the store: in the file, to
        // offsets from its start (the volume is mapped at an aligned address).
        let align = |rel: usize| -> Result<usize> {
            let abs = align_up(store.saturating_add(rel), 4, WHAT, store)?;
            Ok(abs.saturating_sub(store))
        };
        let mut off = align(28)?;
        while off.saturating_add(header_len) <= store_bytes.len() {
            let abs = store.saturating_add(off);
            let mut r = Reader::new(
                slice(store_bytes, off, header_len, WHAT)?,
                abs,
                "variable header",
            );
            if r.u16()? != VARIABLE_DATA {
                break;
            }
            let state = r.u8()?;
            r.u8()?;
            let attributes = r.u32()?;
            let timestamp = if authenticated {
                r.u64()?;
                let t = EfiTime::read(&mut r)?;
                r.u32()?;
                Some(t)
            } else {
                None
            };
            let name_size = r.u32()? as usize;
            let data_size = r.u32()? as usize;
            let vendor = Guid(r.array::<16>()?);
            let name_at = off.saturating_add(header_len);
            let name_bytes =
                slice(store_bytes, name_at, name_size, "variable name").map_err(|_| {
                    Error::Truncated {
                        what: "variable name",
                        offset: abs,
                    }
                })?;
            let data_at = name_at.saturating_add(name_size);
            let data = slice(store_bytes, data_at, data_size, "variable data").map_err(|_| {
                Error::Truncated {
                    what: "variable data",
                    offset: abs,
                }
            })?;
            let name = utf16_name(name_bytes).ok_or(Error::malformed(
                "variable name",
                abs,
                "not NUL-terminated UCS-2",
            ))?;
            if variables.len() >= MAX_VARIABLES {
                return Err(Error::TooLarge {
                    what: WHAT,
                    offset: abs,
                    value: variables.len() as u64,
                    cap: MAX_VARIABLES as u64,
                });
            }
            variables.push(Variable {
                offset: abs,
                state,
                attributes,
                name,
                vendor,
                timestamp,
                data,
            });
            off = align(data_at.saturating_add(data_size))?;
        }
        Ok(VariableStore {
            authenticated,
            variables,
            free_offset: store.saturating_add(off),
            end_offset: store.saturating_add(store_bytes.len()),
        })
    }

    /// The live variable `name` of `vendor`, if any (the last live copy wins, as in EDK2's
    /// reclaim order).
    pub fn get(&self, name: &str, vendor: Guid) -> Option<&Variable<'a>> {
        self.variables
            .iter()
            .rev()
            .find(|v| v.is_live() && v.name == name && v.vendor == vendor)
    }

    /// PK, KEK, db and dbx (their ESL bytes; empty when a variable is absent).
    pub fn secure_boot_variables(&self) -> [(&'static str, &'a [u8]); 4] {
        let g = |n: &str, v: Guid| self.get(n, v).map(|v| v.data).unwrap_or_default();
        [
            ("PK", g("PK", guid::EFI_GLOBAL_VARIABLE)),
            ("KEK", g("KEK", guid::EFI_GLOBAL_VARIABLE)),
            ("db", g("db", guid::EFI_IMAGE_SECURITY_DATABASE_GUID)),
            ("dbx", g("dbx", guid::EFI_IMAGE_SECURITY_DATABASE_GUID)),
        ]
    }
}

fn utf16_name(b: &[u8]) -> Option<String> {
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .collect();
    let (last, name) = units.split_last()?;
    if *last != 0 {
        return None;
    }
    String::from_utf16(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variable(name: &str, vendor: Guid, state: u8, data: &[u8]) -> Vec<u8> {
        let name: Vec<u8> = name
            .encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut v = Vec::new();
        v.extend_from_slice(&VARIABLE_DATA.to_le_bytes());
        v.extend_from_slice(&[state, 0]);
        v.extend_from_slice(&0x27u32.to_le_bytes());
        v.extend_from_slice(&[0; 8 + 16 + 4]);
        v.extend_from_slice(&(name.len() as u32).to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(&vendor.0);
        v.extend_from_slice(&name);
        v.extend_from_slice(data);
        while v.len() % 4 != 0 {
            v.push(0xff);
        }
        v
    }

    /// An OVMF-shaped volume: FV header (72 bytes with its block map), an authenticated
    /// store, a deleted and a live `db`, then erased flash.
    fn store() -> Vec<u8> {
        let mut b = vec![0u8; 72];
        b[16..32].copy_from_slice(&guid::EFI_SYSTEM_NV_DATA_FV_GUID.0);
        b[40..44].copy_from_slice(b"_FVH");
        b[48..50].copy_from_slice(&72u16.to_le_bytes());
        let mut vars = variable("db", guid::EFI_IMAGE_SECURITY_DATABASE_GUID, 0x3c, b"old");
        vars.extend(variable(
            "db",
            guid::EFI_IMAGE_SECURITY_DATABASE_GUID,
            VAR_ADDED,
            b"new!",
        ));
        vars.extend(variable("PK", guid::EFI_GLOBAL_VARIABLE, VAR_ADDED, b"pk"));
        let size = 28 + vars.len() + 256;
        b.extend_from_slice(&guid::EFI_AUTHENTICATED_VARIABLE_GUID.0);
        b.extend_from_slice(&(size as u32).to_le_bytes());
        b.extend_from_slice(&[STORE_FORMATTED, 0xfe, 0, 0, 0, 0, 0, 0]);
        b.extend(vars);
        b.resize(72 + size, 0xff);
        let len = b.len() as u64;
        b[32..40].copy_from_slice(&len.to_le_bytes());
        b
    }

    #[test]
    fn lists_variables_and_finds_the_live_copy() {
        let b = store();
        let s = VariableStore::parse(&b).unwrap();
        assert!(s.authenticated);
        assert_eq!(s.variables.len(), 3);
        assert!(!s.variables[0].is_live());
        let [pk, kek, db, dbx] = s.secure_boot_variables();
        assert_eq!(
            (pk.1, kek.1, db.1, dbx.1),
            (&b"pk"[..], &b""[..], &b"new!"[..], &b""[..])
        );
    }

    #[test]
    fn written_variables_replace_the_live_copy() {
        let b = store();
        let pk = NewVariable {
            name: "PK",
            vendor: guid::EFI_GLOBAL_VARIABLE,
            attributes: 0x27,
            timestamp: EfiTime {
                year: 2025,
                ..Default::default()
            },
            data: b"new PK",
        };
        let kek = NewVariable {
            name: "KEK",
            data: b"a KEK",
            ..pk.clone()
        };
        let out = write_variables(&b, &[pk, kek]).unwrap();
        let s = VariableStore::parse(&out).unwrap();
        let [pk, kek, db, _] = s.secure_boot_variables();
        assert_eq!(
            (pk.1, kek.1, db.1),
            (&b"new PK"[..], &b"a KEK"[..], &b"new!"[..])
        );
        assert_eq!(s.variables.iter().filter(|v| v.is_live()).count(), 3);
        assert_eq!(s.variables.len(), 5);
        // No room: an error, not a truncated store.
        let huge = vec![0u8; 4096];
        let big = NewVariable {
            name: "db",
            vendor: guid::EFI_IMAGE_SECURITY_DATABASE_GUID,
            attributes: 0x27,
            timestamp: EfiTime::default(),
            data: &huge,
        };
        assert!(matches!(
            write_variables(&b, &[big]),
            Err(Error::TooLarge { .. })
        ));
    }

    /// Found by the secureboot_varstore fuzz target in its tenth minute: a store that starts at
    /// an offset that is not a multiple of 4 (HeaderLength 74). The writer aligned the file
    /// offset, the reader the offset within the store, and the new variable was never read.
    #[test]
    fn regression_fuzz_alignment_is_of_file_offsets() {
        let b = store();
        let mut shifted = b[..72].to_vec();
        shifted.extend_from_slice(&[0, 0]);
        shifted.extend_from_slice(&b[72..]);
        shifted[48..50].copy_from_slice(&74u16.to_le_bytes());
        let len = shifted.len() as u64;
        shifted[32..40].copy_from_slice(&len.to_le_bytes());
        // The variables were laid out for offset 72; re-lay them out by writing afresh.
        let store_len = u32::from_le_bytes(shifted[74 + 16..74 + 20].try_into().unwrap()) as usize;
        shifted[74 + 28..74 + store_len].fill(0xff);
        let v = NewVariable {
            name: "db",
            vendor: guid::EFI_IMAGE_SECURITY_DATABASE_GUID,
            attributes: 0x27,
            timestamp: EfiTime::default(),
            data: b"x",
        };
        let out = write_variables(
            &shifted,
            &[
                v.clone(),
                NewVariable {
                    data: b"yz",
                    ..v.clone()
                },
            ],
        )
        .unwrap();
        let s = VariableStore::parse(&out).unwrap();
        assert_eq!(s.variables.len(), 2);
        assert!(s.variables.iter().all(|v| v.offset % 4 == 0));
        assert_eq!(s.get("db", v.vendor).unwrap().data, b"yz");
    }

    /// Found by the secureboot_varstore fuzz target: a stray variable header beyond the free
    /// gap is invisible until a write fills the gap, and then the store no longer parsed.
    /// EDK2 appends only to a fully erased free area; so do we.
    #[test]
    fn regression_fuzz_writes_need_an_erased_free_area() {
        let mut b = store();
        let free = VariableStore::parse(&b).unwrap().free_offset;
        b[free + 100..free + 102].copy_from_slice(&VARIABLE_DATA.to_le_bytes());
        assert_eq!(VariableStore::parse(&b).unwrap().variables.len(), 3);
        let v = NewVariable {
            name: "KEK",
            vendor: guid::EFI_GLOBAL_VARIABLE,
            attributes: 0x27,
            timestamp: EfiTime::default(),
            data: &[0; 100],
        };
        let e = write_variables(&b, &[v]).unwrap_err();
        assert_eq!(e.offset(), Some(free));
    }

    #[test]
    fn every_prefix_is_an_error() {
        let b = store();
        for n in 0..b.len() {
            assert!(VariableStore::parse(&b[..n]).is_err(), "prefix {n}");
        }
    }
}
