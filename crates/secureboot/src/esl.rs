//! EFI signature databases: EFI_SIGNATURE_LIST and EFI_SIGNATURE_DATA (UEFI 2.10, 32.4.1),
//! read from and written to their wire form, with the standard signature types checked for
//! their sizes. Never interprets what a database means for an image (see `policy`).

use crate::bytes::Reader;
use crate::guid::{self, Guid};
use crate::hash::HashAlgorithm;
use crate::{Error, Result};

const WHAT: &str = "EFI_SIGNATURE_LIST";
/// sizeof(EFI_SIGNATURE_LIST): SignatureType, SignatureListSize, SignatureHeaderSize,
/// SignatureSize.
const LIST_HEADER: usize = 28;
/// Cap on entries in one list (the largest real dbx has a few hundred hashes).
pub const MAX_SIGNATURES: usize = 1 << 16;
/// Cap on one signature's size (an X.509 certificate with its owner GUID).
pub const MAX_SIGNATURE_SIZE: usize = 64 * 1024;

/// EFI_TIME (UEFI 2.10, 8.3), as X509_SHA* entries carry their revocation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EfiTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub nanosecond: u32,
    pub time_zone: i16,
    pub daylight: u8,
}

impl EfiTime {
    pub const SIZE: usize = 16;

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let year = r.u16()?;
        let month = r.u8()?;
        let day = r.u8()?;
        let hour = r.u8()?;
        let minute = r.u8()?;
        let second = r.u8()?;
        r.u8()?;
        let nanosecond = r.u32()?;
        let time_zone = i16::from_le_bytes(r.array::<2>()?);
        let daylight = r.u8()?;
        r.u8()?;
        Ok(EfiTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            nanosecond,
            time_zone,
            daylight,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.year.to_le_bytes());
        out.extend_from_slice(&[self.month, self.day, self.hour, self.minute, self.second, 0]);
        out.extend_from_slice(&self.nanosecond.to_le_bytes());
        out.extend_from_slice(&self.time_zone.to_le_bytes());
        out.extend_from_slice(&[self.daylight, 0]);
    }

    /// All zero: "revoked since forever" in EFI_CERT_X509_SHA* entries.
    pub fn is_zero(&self) -> bool {
        *self == EfiTime::default()
    }
}

/// EFI_SIGNATURE_DATA: the owner and the signature bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureData {
    pub owner: Guid,
    pub data: Vec<u8>,
}

/// EFI_SIGNATURE_LIST: signatures of one type and one size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureList {
    pub signature_type: Guid,
    /// The type-specific header (empty for every standard type).
    pub header: Vec<u8>,
    /// SignatureSize: owner GUID plus data, the same for every entry.
    pub signature_size: u32,
    pub signatures: Vec<SignatureData>,
}

/// A standard signature, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature<'a> {
    /// EFI_CERT_SHA*_GUID: an image digest.
    Hash(HashAlgorithm, &'a [u8]),
    /// EFI_CERT_X509_GUID: a DER certificate.
    X509(&'a [u8]),
    /// EFI_CERT_X509_SHA*_GUID: the digest of a certificate's TBSCertificate, revoked since
    /// the given time.
    X509Hash(HashAlgorithm, &'a [u8], EfiTime),
    /// EFI_CERT_RSA2048_GUID: a 2048-bit modulus.
    Rsa2048(&'a [u8]),
    /// Any other type, kept as it was.
    Other(Guid, &'a [u8]),
}

/// The data size a standard type fixes, or None for types of any size (X.509, unknown).
fn fixed_data_size(t: Guid) -> Option<usize> {
    match t {
        t if t == guid::EFI_CERT_RSA2048_GUID => Some(256),
        t if t == guid::EFI_CERT_X509_GUID => None,
        t => hash_type(t)
            .map(|a| a.output_len())
            .or_else(|| x509_hash_type(t).map(|a| a.output_len().saturating_add(EfiTime::SIZE))),
    }
}

fn hash_type(t: Guid) -> Option<HashAlgorithm> {
    HashAlgorithm::ALL.into_iter().find(|a| a.cert_guid() == t)
}

fn x509_hash_type(t: Guid) -> Option<HashAlgorithm> {
    match t {
        t if t == guid::EFI_CERT_X509_SHA256_GUID => Some(HashAlgorithm::Sha256),
        t if t == guid::EFI_CERT_X509_SHA384_GUID => Some(HashAlgorithm::Sha384),
        t if t == guid::EFI_CERT_X509_SHA512_GUID => Some(HashAlgorithm::Sha512),
        _ => None,
    }
}

/// The signature-list type of TBS-certificate hashes made with `alg`.
pub fn x509_hash_guid(alg: HashAlgorithm) -> Option<Guid> {
    match alg {
        HashAlgorithm::Sha256 => Some(guid::EFI_CERT_X509_SHA256_GUID),
        HashAlgorithm::Sha384 => Some(guid::EFI_CERT_X509_SHA384_GUID),
        HashAlgorithm::Sha512 => Some(guid::EFI_CERT_X509_SHA512_GUID),
        _ => None,
    }
}

impl SignatureList {
    /// One list of `signature_type` with one entry per item of `data`, all of one size.
    pub fn new(signature_type: Guid, owner: Guid, data: Vec<Vec<u8>>) -> Result<Self> {
        let size = data.first().map_or(0, Vec::len);
        if data.iter().any(|d| d.len() != size) {
            return Err(Error::malformed(
                WHAT,
                0,
                "entries of one list differ in size",
            ));
        }
        Ok(SignatureList {
            signature_type,
            header: Vec::new(),
            signature_size: u32::try_from(size.saturating_add(16)).unwrap_or(u32::MAX),
            signatures: data
                .into_iter()
                .map(|data| SignatureData { owner, data })
                .collect(),
        })
    }

    /// The entries typed. Sizes were checked when the list was parsed.
    pub fn entries(&self) -> impl Iterator<Item = (usize, &SignatureData, Signature<'_>)> {
        let t = self.signature_type;
        self.signatures.iter().enumerate().map(move |(i, s)| {
            let sig = if let Some(a) = hash_type(t) {
                Signature::Hash(a, &s.data)
            } else if t == guid::EFI_CERT_X509_GUID {
                Signature::X509(&s.data)
            } else if let Some(a) = x509_hash_type(t) {
                let (h, time) = s.data.split_at(a.output_len().min(s.data.len()));
                let mut r = Reader::new(time, 0, WHAT);
                Signature::X509Hash(a, h, EfiTime::read(&mut r).unwrap_or_default())
            } else if t == guid::EFI_CERT_RSA2048_GUID {
                Signature::Rsa2048(&s.data)
            } else {
                Signature::Other(t, &s.data)
            };
            (i, s, sig)
        })
    }

    /// Appends the wire form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let body: usize = self
            .signatures
            .len()
            .saturating_mul(self.signature_size as usize);
        let total = LIST_HEADER
            .saturating_add(self.header.len())
            .saturating_add(body);
        out.extend_from_slice(&self.signature_type.0);
        out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(
            &u32::try_from(self.header.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(&self.signature_size.to_le_bytes());
        out.extend_from_slice(&self.header);
        for s in &self.signatures {
            out.extend_from_slice(&s.owner.0);
            out.extend_from_slice(&s.data);
        }
    }
}

/// Parses a concatenation of EFI_SIGNATURE_LISTs (the contents of db, dbx, KEK, PK, MokList,
/// an ESL file). An empty input is an empty database.
pub fn parse(bytes: &[u8]) -> Result<Vec<SignatureList>> {
    let mut r = Reader::new(bytes, 0, WHAT);
    let mut lists = Vec::new();
    while r.remaining() > 0 {
        let at = r.offset();
        let signature_type = Guid(r.array::<16>()?);
        let list_size = r.u32()? as usize;
        let header_size = r.u32()? as usize;
        let signature_size = r.u32()?;
        let sig_size = signature_size as usize;
        if list_size < LIST_HEADER || list_size.saturating_sub(LIST_HEADER) > r.remaining() {
            return Err(Error::malformed(
                WHAT,
                at,
                "SignatureListSize outside the input",
            ));
        }
        let body_len = list_size.saturating_sub(LIST_HEADER);
        if header_size > body_len {
            return Err(Error::malformed(
                WHAT,
                at,
                "SignatureHeaderSize larger than the list",
            ));
        }
        if sig_size <= 16 || sig_size > MAX_SIGNATURE_SIZE {
            return Err(Error::malformed(WHAT, at, "SignatureSize out of range"));
        }
        let header = r.take(header_size)?.to_vec();
        let sigs_len = body_len.saturating_sub(header_size);
        // sig_size > 16 was checked above, so these divisions cannot fail.
        if sigs_len.checked_rem(sig_size) != Some(0) {
            return Err(Error::malformed(
                WHAT,
                at,
                "signatures do not fill the list",
            ));
        }
        if let Some(fixed) = fixed_data_size(signature_type) {
            if sig_size != fixed.saturating_add(16) {
                return Err(Error::malformed(
                    WHAT,
                    at,
                    "SignatureSize wrong for its type",
                ));
            }
        }
        let count = sigs_len.checked_div(sig_size).unwrap_or(0);
        if count > MAX_SIGNATURES {
            return Err(Error::TooLarge {
                what: WHAT,
                offset: at,
                value: count as u64,
                cap: MAX_SIGNATURES as u64,
            });
        }
        let mut signatures = Vec::with_capacity(count);
        for _ in 0..count {
            let owner = Guid(r.array::<16>()?);
            let data = r.take(sig_size.saturating_sub(16))?.to_vec();
            signatures.push(SignatureData { owner, data });
        }
        lists.push(SignatureList {
            signature_type,
            header,
            signature_size,
            signatures,
        });
    }
    Ok(lists)
}

/// The wire form of `lists`, concatenated.
pub fn encode(lists: &[SignatureList]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lists {
        l.encode(&mut out);
    }
    out
}

/// The signature lists inside an `.auth` file (an EFI_VARIABLE_AUTHENTICATION_2 header and
/// then the variable's new value); `Ok(None)` when `bytes` does not start with one.
pub fn strip_authentication_2(bytes: &[u8]) -> Result<Option<&[u8]>> {
    let looks_like_one = crate::bytes::u16_at(bytes, 22, "EFI_VARIABLE_AUTHENTICATION_2").ok()
        == Some(crate::pe::WIN_CERT_TYPE_EFI_GUID)
        && crate::bytes::slice(bytes, 24, 16, "EFI_VARIABLE_AUTHENTICATION_2").ok()
            == Some(&guid::EFI_CERT_TYPE_PKCS7_GUID.0[..]);
    if !looks_like_one {
        return Ok(None);
    }
    crate::authvar::Authentication2::parse(bytes).map(|a| Some(a.payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<SignatureList> {
        let owner = Guid::parse("77fa9abd-0359-4d32-bd60-28f4e78f784b");
        let mut x509_hash = vec![0xab; 32];
        EfiTime {
            year: 2024,
            month: 2,
            day: 3,
            ..Default::default()
        }
        .encode(&mut x509_hash);
        vec![
            SignatureList::new(
                guid::EFI_CERT_SHA256_GUID,
                owner,
                vec![vec![1; 32], vec![2; 32]],
            )
            .unwrap(),
            SignatureList::new(
                guid::EFI_CERT_X509_GUID,
                owner,
                vec![vec![0x30, 3, 1, 2, 3]],
            )
            .unwrap(),
            SignatureList::new(guid::EFI_CERT_X509_SHA256_GUID, owner, vec![x509_hash]).unwrap(),
            SignatureList::new(guid::EFI_CERT_SHA1_GUID, owner, vec![vec![9; 20]]).unwrap(),
            SignatureList::new(guid::EFI_CERT_RSA2048_GUID, owner, vec![vec![7; 256]]).unwrap(),
        ]
    }

    #[test]
    fn round_trip_and_typed_entries() {
        let lists = sample();
        let bytes = encode(&lists);
        let back = parse(&bytes).unwrap();
        assert_eq!(back, lists);
        assert_eq!(encode(&back), bytes);
        let (_, _, s) = back[2].entries().next().unwrap();
        match s {
            Signature::X509Hash(HashAlgorithm::Sha256, h, t) => {
                assert_eq!(h, &[0xab; 32]);
                assert_eq!(t.year, 2024);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_prefix_of_a_valid_database_is_an_error_or_a_shorter_database() {
        let bytes = encode(&sample());
        for n in 0..bytes.len() {
            if let Ok(lists) = parse(&bytes[..n]) {
                // Only cuts at list boundaries parse, and they give fewer lists.
                assert!(lists.len() < sample().len());
                assert_eq!(encode(&lists).len(), n);
            }
        }
    }

    #[test]
    fn wrong_size_for_a_hash_type_is_rejected() {
        let owner = Guid([0; 16]);
        let l = SignatureList::new(guid::EFI_CERT_SHA256_GUID, owner, vec![vec![1; 20]]).unwrap();
        let e = parse(&encode(&[l])).unwrap_err();
        assert_eq!(e.offset(), Some(0));
    }

    proptest! {
        #[test]
        fn arbitrary_lists_round_trip(entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 40), 1..5), owner in any::<[u8; 16]>()) {
            let l = SignatureList::new(guid::EFI_CERT_X509_GUID, Guid(owner), entries).unwrap();
            let bytes = encode(std::slice::from_ref(&l));
            prop_assert_eq!(parse(&bytes).unwrap(), vec![l]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }
    }
}
