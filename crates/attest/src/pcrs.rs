//! The PCR values a verifier believes were quoted, and their two file formats: the "pcrs" file
//! that `tpm2_quote -o` (and `tpm2_pcrread -o -F serialized`) writes, and simple
//! `<bank> <pcr> <hex>` lines.

use std::collections::BTreeMap;
use std::fmt;

use tpm::hash::HashAlg;

use crate::wire::Fields;
use crate::Error;

/// PCR values: bank (hash algorithm) and PCR index to value. Every value has its bank's
/// digest size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PcrValues(BTreeMap<(HashAlg, u8), Vec<u8>>);

/// Layout of tpm2-tools' serialized "pcrs" file (`pcr_fwrite_serialized` in tpm2-tools'
/// lib/pcr.c): the in-memory tpm2-tss structures written as they are, little-endian.
///
/// ```text
/// TPML_PCR_SELECTION   u32 count; TPMS_PCR_SELECTION[16]           = 4 + 16 * 8 = 132
///   TPMS_PCR_SELECTION u16 hash; u8 sizeofSelect; u8 pcrSelect[4]; 1 padding byte = 8
/// u32 number of TPML_DIGEST that follow
/// TPML_DIGEST          u32 count; TPM2B_DIGEST[8]                  = 4 + 8 * 66 = 532
///   TPM2B_DIGEST       u16 size; u8 buffer[64]                                    = 66
/// ```
///
/// The digests of all TPML_DIGESTs, in order, are the selected PCRs' values: bank by bank in
/// selection order, each bank's PCRs in ascending order.
pub mod tpm2_tools_layout {
    /// TPM2_NUM_PCR_BANKS: TPMS_PCR_SELECTION slots in a TPML_PCR_SELECTION.
    pub const BANK_SLOTS: usize = 16;
    /// TPM2_PCR_SELECT_MAX: pcrSelect octets in a TPMS_PCR_SELECTION.
    pub const SELECT_MAX: usize = 4;
    /// sizeof(TPMS_PCR_SELECTION) with its padding.
    pub const SELECTION_SIZE: usize = 8;
    /// sizeof(TPML_PCR_SELECTION).
    pub const SELECTION_LIST_SIZE: usize = 4 + BANK_SLOTS * SELECTION_SIZE;
    /// Digests in a TPML_DIGEST.
    pub const DIGEST_SLOTS: usize = 8;
    /// sizeof(TPMU_HA): the largest digest.
    pub const DIGEST_BUFFER: usize = 64;
    /// sizeof(TPM2B_DIGEST).
    pub const DIGEST_SIZE: usize = 2 + DIGEST_BUFFER;
    /// sizeof(TPML_DIGEST).
    pub const DIGEST_LIST_SIZE: usize = 4 + DIGEST_SLOTS * DIGEST_SIZE;
    /// The most TPML_DIGESTs tpm2-tools writes (TPM2_MAX_PCRS entries of tpm2_pcrs).
    pub const MAX_DIGEST_LISTS: usize = 32;
}

use tpm2_tools_layout as layout;

const PCR_FILE: &str = "tpm2-tools PCR file";

/// Bank names as tpm2-tools and the text format spell them.
pub(crate) fn bank_from_name(name: &str) -> Option<HashAlg> {
    HashAlg::ALL
        .into_iter()
        .find(|alg| alg.name().eq_ignore_ascii_case(name))
}

fn le16(b: &[u8]) -> u16 {
    match b {
        [lo, hi, ..] => u16::from_le_bytes([*lo, *hi]),
        _ => 0,
    }
}

fn le32(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

impl PcrValues {
    pub fn new() -> Self {
        PcrValues(BTreeMap::new())
    }

    /// Set one PCR's value; it must have the bank's digest size.
    pub fn insert(&mut self, bank: HashAlg, index: u8, value: Vec<u8>) -> Result<(), Error> {
        if value.len() != bank.size() {
            return Err(Error::PcrValueSize {
                bank,
                index,
                len: value.len(),
                expected: bank.size(),
            });
        }
        self.0.insert((bank, index), value);
        Ok(())
    }

    pub fn get(&self, bank: HashAlg, index: u8) -> Option<&[u8]> {
        self.0.get(&(bank, index)).map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All values, by bank then index.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, u8, &[u8])> + '_ {
        self.0
            .iter()
            .map(|((bank, index), v)| (*bank, *index, v.as_slice()))
    }

    pub fn as_map(&self) -> &BTreeMap<(HashAlg, u8), Vec<u8>> {
        &self.0
    }

    /// The "pcrs" file `tpm2_quote -o FILE` writes for these values, its banks in the order
    /// the quote selected them (`order`; banks not listed follow by algorithm id), PCRs
    /// ascending, unused slots and padding zero: what tpm2-tools based verifiers such as
    /// Keylime read.
    pub fn to_tpm2_tools(&self, order: &[HashAlg]) -> Vec<u8> {
        /// A bank: its values in ascending PCR order and its pcrSelect bitmap.
        type Bank<'a> = (HashAlg, Vec<&'a [u8]>, [u8; layout::SELECT_MAX]);
        let mut banks: Vec<Bank<'_>> = Vec::new();
        for ((bank, pcr), value) in &self.0 {
            let i = match banks.iter().position(|(b, _, _)| b == bank) {
                Some(i) => i,
                None => {
                    banks.push((*bank, Vec::new(), [0; layout::SELECT_MAX]));
                    banks.len() - 1
                }
            };
            if let Some((_, values, select)) = banks.get_mut(i) {
                values.push(value);
                if let Some(b) = select.get_mut(usize::from(pcr / 8)) {
                    *b |= 1 << (pcr % 8);
                }
            }
        }
        banks.sort_by_key(|(b, _, _)| order.iter().position(|o| o == b).unwrap_or(order.len()));
        banks.truncate(layout::BANK_SLOTS);
        let mut out = Vec::with_capacity(layout::SELECTION_LIST_SIZE + 4);
        out.extend_from_slice(&(banks.len() as u32).to_le_bytes());
        for slot in 0..layout::BANK_SLOTS {
            match banks.get(slot) {
                Some((bank, _, select)) => {
                    out.extend_from_slice(&bank.id().to_le_bytes());
                    out.push(3); // sizeofSelect: PCRs 0-23
                    out.extend_from_slice(select);
                    out.push(0); // padding
                }
                None => out.extend_from_slice(&[0; layout::SELECTION_SIZE]),
            }
        }
        let digests: Vec<&[u8]> = banks
            .iter()
            .flat_map(|(_, values, _)| values.iter().copied())
            .collect();
        let lists = digests.chunks(layout::DIGEST_SLOTS);
        out.extend_from_slice(&(lists.len() as u32).to_le_bytes());
        for chunk in lists {
            out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            for slot in 0..layout::DIGEST_SLOTS {
                let d = chunk.get(slot).copied().unwrap_or(&[]);
                let d = d.get(..layout::DIGEST_BUFFER).unwrap_or(d);
                out.extend_from_slice(&(d.len() as u16).to_le_bytes());
                out.extend_from_slice(d);
                out.resize(out.len() + layout::DIGEST_BUFFER - d.len(), 0);
            }
        }
        out
    }

    /// Parse the "pcrs" file that `tpm2_quote -o FILE` writes (its default `-F serialized`
    /// format; `tpm2_pcrread -o FILE -F serialized` writes the same). See
    /// [`tpm2_tools_layout`] for the layout. Padding bytes and bytes past a digest's size are
    /// ignored, as tpm2-tools ignores them.
    pub fn from_tpm2_tools(bytes: &[u8]) -> Result<Self, Error> {
        let mut f = Fields::new(bytes, PCR_FILE);
        let selection = f.take(layout::SELECTION_LIST_SIZE, "TPML_PCR_SELECTION")?;
        let bank_count = le32(selection) as usize;
        if bank_count > layout::BANK_SLOTS {
            return Err(f.error_at(
                0,
                format!(
                    "TPML_PCR_SELECTION count {bank_count} exceeds {}",
                    layout::BANK_SLOTS
                ),
            ));
        }
        // (bank, its selected PCRs in ascending order)
        let mut banks: Vec<(HashAlg, Vec<u8>)> = Vec::with_capacity(bank_count);
        for (i, slot) in selection
            .get(4..)
            .unwrap_or(&[])
            .chunks_exact(layout::SELECTION_SIZE)
            .take(bank_count)
            .enumerate()
        {
            let at = 4 + i * layout::SELECTION_SIZE;
            let hash = le16(slot);
            let bank = HashAlg::from_id(hash).ok_or(Error::UnsupportedPcrBank { alg: hash })?;
            let size = usize::from(slot.get(2).copied().unwrap_or(0));
            if size > layout::SELECT_MAX {
                return Err(f.error_at(
                    at + 2,
                    format!(
                        "sizeofSelect {size} exceeds {} in selection {i}",
                        layout::SELECT_MAX
                    ),
                ));
            }
            let select = slot.get(3..3 + size).unwrap_or(&[]);
            banks.push((bank, selected_pcrs(select)));
        }

        let lists_at = f.position();
        let list_count = le32(f.take(4, "number of TPML_DIGEST")?) as usize;
        if list_count > layout::MAX_DIGEST_LISTS {
            return Err(f.error_at(
                lists_at,
                format!(
                    "{list_count} TPML_DIGEST lists, tpm2-tools writes at most {}",
                    layout::MAX_DIGEST_LISTS
                ),
            ));
        }
        // (offset of the digest, its bytes)
        let mut digests: Vec<(usize, &[u8])> = Vec::new();
        for n in 0..list_count {
            let list_at = f.position();
            let list = f.take(layout::DIGEST_LIST_SIZE, "TPML_DIGEST")?;
            let count = le32(list) as usize;
            if count > layout::DIGEST_SLOTS {
                return Err(f.error_at(
                    list_at,
                    format!(
                        "TPML_DIGEST {n} count {count} exceeds {}",
                        layout::DIGEST_SLOTS
                    ),
                ));
            }
            for (k, d) in list
                .get(4..)
                .unwrap_or(&[])
                .chunks_exact(layout::DIGEST_SIZE)
                .take(count)
                .enumerate()
            {
                let at = list_at + 4 + k * layout::DIGEST_SIZE;
                let size = usize::from(le16(d));
                if size > layout::DIGEST_BUFFER {
                    return Err(f.error_at(
                        at,
                        format!(
                            "digest size {size} exceeds {} (TPML_DIGEST {n}, digest {k})",
                            layout::DIGEST_BUFFER
                        ),
                    ));
                }
                digests.push((at, d.get(2..2 + size).unwrap_or(&[])));
            }
        }
        f.end("PCR file")?;

        let mut values = PcrValues::new();
        let mut next = digests.into_iter();
        for (bank, pcrs) in banks {
            for index in pcrs {
                let Some((at, digest)) = next.next() else {
                    return Err(Error::Malformed {
                        input: PCR_FILE,
                        offset: bytes.len(),
                        what: format!(
                            "the selection lists more PCRs than the file has values (none for {} PCR {index})",
                            bank.name()
                        ),
                    });
                };
                if digest.len() != bank.size() {
                    return Err(Error::Malformed {
                        input: PCR_FILE,
                        offset: at,
                        what: format!(
                            "{} PCR {index}: value of {} bytes, a {} digest has {}",
                            bank.name(),
                            digest.len(),
                            bank.name(),
                            bank.size()
                        ),
                    });
                }
                values.0.insert((bank, index), digest.to_vec());
            }
        }
        if let Some((at, _)) = next.next() {
            return Err(Error::Malformed {
                input: PCR_FILE,
                offset: at,
                what: "the file has more PCR values than its selection lists".into(),
            });
        }
        Ok(values)
    }

    /// Parse `<bank> <pcr> <hex>` lines, e.g. `sha256 7 3d45...` (bank names as tpm2-tools
    /// spells them, case-insensitive; PCR index in decimal; the value in hex, optionally with
    /// `0x`, exactly the bank's digest size). Blank lines and `#` comments are skipped; a
    /// PCR given twice is an error.
    pub fn from_text(text: &str) -> Result<Self, Error> {
        let mut values = PcrValues::new();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let err = |what: String| Error::PcrLine { line, what };
            let words: Vec<&str> = content.split_whitespace().collect();
            let [bank, index, value] = words.as_slice() else {
                return Err(err(format!(
                    "expected \"<bank> <pcr> <hex>\", got {} fields: {content:?}",
                    words.len()
                )));
            };
            let bank = bank_from_name(bank).ok_or_else(|| {
                err(format!(
                    "unknown bank {bank:?} (expected sha1, sha256, sha384 or sha512)"
                ))
            })?;
            let index: u8 = index
                .parse()
                .map_err(|_| err(format!("PCR index {index:?} is not a number from 0 to 255")))?;
            let digits = value
                .strip_prefix("0x")
                .or_else(|| value.strip_prefix("0X"))
                .unwrap_or(value);
            let value =
                hex::decode(digits).map_err(|e| err(format!("value {value:?} is not hex: {e}")))?;
            if value.len() != bank.size() {
                return Err(err(format!(
                    "{} PCR {index}: value of {} bytes, a {} digest has {}",
                    bank.name(),
                    value.len(),
                    bank.name(),
                    bank.size()
                )));
            }
            if values.0.insert((bank, index), value).is_some() {
                return Err(err(format!("{} PCR {index} is given twice", bank.name())));
            }
        }
        Ok(values)
    }
}

/// PCR indices whose bits are set in a pcrSelect bitmap (PCR n is bit n % 8 of octet n / 8).
pub(crate) fn selected_pcrs(select: &[u8]) -> Vec<u8> {
    select
        .iter()
        .enumerate()
        .flat_map(|(octet, bits)| {
            (0..8u8).filter_map(move |bit| {
                let index = u8::try_from(octet * 8).ok()?.checked_add(bit)?;
                (bits & (1 << bit) != 0).then_some(index)
            })
        })
        .collect()
}

/// The text format [`PcrValues::from_text`] reads, one `<bank> <pcr> <hex>` line per value.
impl fmt::Display for PcrValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for ((bank, index), value) in &self.0 {
            writeln!(f, "{} {index} {}", bank.name(), hex::encode(value))?;
        }
        Ok(())
    }
}
