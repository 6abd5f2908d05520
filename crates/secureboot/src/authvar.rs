//! Time-based authenticated variable updates: EFI_VARIABLE_AUTHENTICATION_2 (UEFI 2.10,
//! 8.2.2), the header of an `.auth` file (an EFI_TIME, then a WIN_CERTIFICATE_UEFI_GUID with
//! a PKCS#7 SignedData), checked and made as EDK2's AuthService and efitools'
//! sign-efi-sig-list do. Never writes a variable store.

use crate::authenticode::verify_pkcs7;
use crate::bytes::Reader;
use crate::der::{self, Der};
use crate::esl::EfiTime;
use crate::guid::{self, Guid};
use crate::pe::WIN_CERT_TYPE_EFI_GUID;
use crate::{Error, Result};
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::X509;

const WHAT: &str = "EFI_VARIABLE_AUTHENTICATION_2";
/// EFI_VARIABLE_NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS |
/// TIME_BASED_AUTHENTICATED_WRITE_ACCESS: how PK, KEK, db and dbx are written.
pub const SECURE_BOOT_ATTRIBUTES: u32 = 0x27;
/// WIN_CERT_REVISION_2_0.
const WIN_CERT_REVISION: u16 = 0x0200;

/// A parsed `.auth` payload, borrowing its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication2<'a> {
    pub timestamp: EfiTime,
    /// CertData: a PKCS#7 SignedData, bare (as the UEFI specification and efitools have it)
    /// or wrapped in a ContentInfo (EDK2 accepts both).
    pub signed_data: &'a [u8],
    /// The variable's new value (signature lists for PK, KEK, db, dbx).
    pub payload: &'a [u8],
}

/// The vendor GUID of the Secure Boot variable `name` (PK and KEK are global variables, db,
/// dbx, dbt and dbr image security databases).
pub fn secure_boot_vendor(name: &str) -> Option<Guid> {
    match name {
        "PK" | "KEK" => Some(guid::EFI_GLOBAL_VARIABLE),
        "db" | "dbx" | "dbt" | "dbr" => Some(guid::EFI_IMAGE_SECURITY_DATABASE_GUID),
        _ => None,
    }
}

/// What the signature covers (UEFI 8.2.2, EDK2 `VerifyTimeBasedPayload`): the variable
/// name in UCS-2 without its NUL, the vendor GUID, the attributes, the timestamp, the data.
pub fn signed_content(
    name: &str,
    vendor: Guid,
    attributes: u32,
    timestamp: &EfiTime,
    payload: &[u8],
) -> Vec<u8> {
    let mut v: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    v.extend_from_slice(&vendor.0);
    v.extend_from_slice(&attributes.to_le_bytes());
    timestamp.encode(&mut v);
    v.extend_from_slice(payload);
    v
}

impl<'a> Authentication2<'a> {
    /// Splits an `.auth` file. The timestamp's Pad1, Nanosecond, TimeZone, Daylight and Pad2
    /// must be zero, as EDK2 requires.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, 0, WHAT);
        let timestamp = EfiTime::read(&mut r)?;
        let stamp = bytes.get(..EfiTime::SIZE).unwrap_or_default();
        let padding_zero = [7usize, 8, 9, 10, 11, 12, 13, 14, 15]
            .iter()
            .all(|&i| stamp.get(i) == Some(&0));
        if !padding_zero {
            return Err(Error::malformed(
                WHAT,
                7,
                "TimeStamp has non-zero padding, nanoseconds or zone",
            ));
        }
        let len = r.u32()? as usize;
        let _revision = r.u16()?;
        let cert_type = r.u16()?;
        let kind = Guid(r.array::<16>()?);
        if cert_type != WIN_CERT_TYPE_EFI_GUID || kind != guid::EFI_CERT_TYPE_PKCS7_GUID {
            return Err(Error::malformed(
                WHAT,
                20,
                "not a WIN_CERTIFICATE_UEFI_GUID of EFI_CERT_TYPE_PKCS7_GUID",
            ));
        }
        let data_len = len
            .checked_sub(24)
            .filter(|&n| n > 0)
            .ok_or(Error::malformed(WHAT, 16, "dwLength too small"))?;
        let signed_data = r.take(data_len)?;
        let payload = bytes.get(r.offset()..).unwrap_or_default();
        Ok(Authentication2 {
            timestamp,
            signed_data,
            payload,
        })
    }

    /// EDK2's check: the SignedData (wrapped in a ContentInfo when it is bare) verifies over
    /// [`signed_content`] and chains to `trusted` (a PK or KEK certificate) with the same
    /// OpenSSL store as image signatures.
    pub fn verify(&self, name: &str, vendor: Guid, attributes: u32, trusted: &X509) -> bool {
        let content = signed_content(name, vendor, attributes, &self.timestamp, self.payload);
        verify_pkcs7(
            &content_info(self.signed_data),
            Some(&content),
            trusted,
            &[],
        )
    }
}

/// `signed_data` as a ContentInfo: unchanged when it already is one (EDK2 `WrapPkcs7Data`
/// looks for the signedData OID at the same place).
fn content_info(signed_data: &[u8]) -> Vec<u8> {
    let wrapped = Der::new(signed_data, 0, WHAT)
        .expect(der::SEQUENCE, "not a SEQUENCE")
        .and_then(|s| s.reader(WHAT).expect(der::OID, "no OID"))
        .is_ok_and(|o| o.value == der::OID_SIGNED_DATA);
    if wrapped {
        signed_data.to_vec()
    } else {
        der::seq(&[
            &der::oid(der::OID_SIGNED_DATA),
            &der::tlv(der::CONTEXT_0, signed_data),
        ])
    }
}

/// An `.auth` file for writing `payload` to variable `name`, signed by `key` for `cert` as
/// efitools' sign-efi-sig-list signs: SHA-256, no signed attributes, the signer's certificate
/// included, the bare SignedData as CertData.
pub fn create(
    name: &str,
    vendor: Guid,
    attributes: u32,
    timestamp: &EfiTime,
    payload: &[u8],
    cert: &X509,
    key: &PKey<Private>,
) -> Result<Vec<u8>> {
    let content = signed_content(name, vendor, attributes, timestamp, payload);
    let none = Stack::new().map_err(|e| Error::crypto(WHAT, e))?;
    let flags = Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY | Pkcs7Flags::NOATTR;
    let p7 = Pkcs7::sign(cert, key, &none, &content, flags).map_err(|e| Error::crypto(WHAT, e))?;
    let ci = p7.to_der().map_err(|e| Error::crypto(WHAT, e))?;
    // ContentInfo → its [0] EXPLICIT → the SignedData element itself.
    let outer = Der::new(&ci, 0, WHAT).expect(der::SEQUENCE, "ContentInfo")?;
    let mut r = outer.reader(WHAT);
    r.expect(der::OID, "contentType")?;
    let explicit = r.expect(der::CONTEXT_0, "content")?;
    let signed_data = explicit
        .reader(WHAT)
        .expect(der::SEQUENCE, "SignedData")?
        .raw;
    let len = u32::try_from(signed_data.len().saturating_add(24))
        .map_err(|_| Error::malformed(WHAT, 0, "signature too large"))?;
    let mut out = Vec::new();
    timestamp.encode(&mut out);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&WIN_CERT_REVISION.to_le_bytes());
    out.extend_from_slice(&WIN_CERT_TYPE_EFI_GUID.to_le_bytes());
    out.extend_from_slice(&guid::EFI_CERT_TYPE_PKCS7_GUID.0);
    out.extend_from_slice(signed_data);
    out.extend_from_slice(payload);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::key_and_cert;

    #[test]
    fn created_updates_verify_for_their_variable_and_signer_only() {
        let (key, kek) = key_and_cert("KEK");
        let (_, other) = key_and_cert("other");
        let t = EfiTime {
            year: 2024,
            month: 5,
            day: 6,
            hour: 7,
            minute: 8,
            second: 9,
            ..Default::default()
        };
        let db = guid::EFI_IMAGE_SECURITY_DATABASE_GUID;
        let bytes = create(
            "db",
            db,
            SECURE_BOOT_ATTRIBUTES,
            &t,
            b"new db value",
            &kek,
            &key,
        )
        .unwrap();
        let auth = Authentication2::parse(&bytes).unwrap();
        assert_eq!((auth.timestamp, auth.payload), (t, &b"new db value"[..]));
        assert!(auth.verify("db", db, SECURE_BOOT_ATTRIBUTES, &kek));
        assert!(!auth.verify("dbx", db, SECURE_BOOT_ATTRIBUTES, &kek));
        assert!(!auth.verify("db", db, 0x07, &kek));
        assert!(!auth.verify("db", db, SECURE_BOOT_ATTRIBUTES, &other));
        // The same SignedData wrapped in a ContentInfo verifies too (EDK2 accepts both).
        let wrapped = Authentication2 {
            signed_data: &content_info(auth.signed_data),
            ..auth.clone()
        };
        assert!(wrapped.verify("db", db, SECURE_BOOT_ATTRIBUTES, &kek));
        let mut tampered = bytes.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(!Authentication2::parse(&tampered).unwrap().verify(
            "db",
            db,
            SECURE_BOOT_ATTRIBUTES,
            &kek
        ));
        // Every prefix that cuts the header or the signature is an error.
        let header = bytes.len() - b"new db value".len();
        for n in 0..header {
            assert!(Authentication2::parse(&bytes[..n]).is_err(), "prefix {n}");
        }
    }
}
