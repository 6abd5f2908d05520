//! EFI_GUID (UEFI 2.10, appendix A) and the GUIDs Secure Boot names, parsed from their text
//! form at compile time so that a typo fails the build instead of a verdict.

use std::fmt;

/// EFI_GUID: 128 bits, stored with the first three fields little-endian (UEFI 2.10 appendix A).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub [u8; 16]);

#[allow(clippy::panic, clippy::arithmetic_side_effects)]
const fn hex_digit(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("GUID text: not a hex digit"),
    }
}

impl Guid {
    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` as the specification prints it. Meant for
    /// constants: a malformed literal stops compilation.
    #[allow(
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )]
    pub const fn parse(text: &str) -> Guid {
        let s = text.as_bytes();
        if s.len() != 36 || s[8] != b'-' || s[13] != b'-' || s[18] != b'-' || s[23] != b'-' {
            panic!("GUID text: wrong shape");
        }
        // Byte i of the text form (big-endian reading) and its position in the encoding.
        const ORDER: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
        let mut text_bytes = [0u8; 16];
        let mut i = 0;
        let mut n = 0;
        while i < 36 {
            if s[i] == b'-' {
                i += 1;
                continue;
            }
            text_bytes[n] = hex_digit(s[i]) << 4 | hex_digit(s[i + 1]);
            n += 1;
            i += 2;
        }
        let mut out = [0u8; 16];
        let mut k = 0;
        while k < 16 {
            out[ORDER[k]] = text_bytes[k];
            k += 1;
        }
        Guid(out)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// EFI_CERT_SHA1_GUID (UEFI 2.10, 32.4.1).
pub const EFI_CERT_SHA1_GUID: Guid = Guid::parse("826ca512-cf10-4ac9-b187-be01496631bd");
/// EFI_CERT_SHA224_GUID (UEFI 2.10, 32.4.1).
pub const EFI_CERT_SHA224_GUID: Guid = Guid::parse("0b6e5233-a65c-44c9-9407-d9ab83bfc8bd");
/// EFI_CERT_SHA256_GUID (UEFI 2.10, 32.4.1).
pub const EFI_CERT_SHA256_GUID: Guid = Guid::parse("c1c41626-504c-4092-aca9-41f936934328");
/// EFI_CERT_SHA384_GUID (UEFI 2.10, 32.4.1).
pub const EFI_CERT_SHA384_GUID: Guid = Guid::parse("ff3e5307-9fd0-48c9-85f1-8ad56c701e01");
/// EFI_CERT_SHA512_GUID (UEFI 2.10, 32.4.1).
pub const EFI_CERT_SHA512_GUID: Guid = Guid::parse("093e0fae-a6c4-4f50-9f1b-d41e2b89c19a");
/// EFI_CERT_RSA2048_GUID (UEFI 2.10, 32.4.1): a 256-byte RSA-2048 modulus.
pub const EFI_CERT_RSA2048_GUID: Guid = Guid::parse("3c5766e8-269c-4e34-aa14-ed776e85b3b6");
/// EFI_CERT_X509_GUID (UEFI 2.10, 32.4.1): a DER X.509 certificate.
pub const EFI_CERT_X509_GUID: Guid = Guid::parse("a5c059a1-94e4-4aa7-87b5-ab155c2bf072");
/// EFI_CERT_X509_SHA256_GUID (UEFI 2.10, 32.4.1): TBS hash + revocation time.
pub const EFI_CERT_X509_SHA256_GUID: Guid = Guid::parse("3bd2a492-96c0-4079-b420-fcf98ef103ed");
/// EFI_CERT_X509_SHA384_GUID (UEFI 2.10, 32.4.1).
pub const EFI_CERT_X509_SHA384_GUID: Guid = Guid::parse("7076876e-80c2-4ee6-aad2-28b349a6865b");
/// EFI_CERT_X509_SHA512_GUID (UEFI 2.10, 32.4.1).
pub const EFI_CERT_X509_SHA512_GUID: Guid = Guid::parse("446dbf63-2502-4cda-bcfa-2465d2b0fe9d");
/// EFI_CERT_TYPE_PKCS7_GUID (UEFI 2.10, 32.2.4): WIN_CERTIFICATE_UEFI_GUID's PKCS#7 type.
pub const EFI_CERT_TYPE_PKCS7_GUID: Guid = Guid::parse("4aafd29d-68df-49ee-8aa9-347d375665a7");
/// EFI_GLOBAL_VARIABLE (UEFI 2.10, 3.3): PK, KEK, SecureBoot, SetupMode.
pub const EFI_GLOBAL_VARIABLE: Guid = Guid::parse("8be4df61-93ca-11d2-aa0d-00e098032b8c");
/// EFI_IMAGE_SECURITY_DATABASE_GUID (UEFI 2.10, 32.6.1): db, dbx, dbt, dbr.
pub const EFI_IMAGE_SECURITY_DATABASE_GUID: Guid =
    Guid::parse("d719b2cb-3d3a-4596-a3bc-dad00e67656f");
/// SHIM_LOCK_GUID (shim): MokList, MokListX, SbatLevel.
pub const SHIM_LOCK_GUID: Guid = Guid::parse("605dab50-e046-4300-abb6-3dd810dd8b23");
/// gEfiAuthenticatedVariableGuid (EDK2 MdeModulePkg): a store of authenticated variables.
pub const EFI_AUTHENTICATED_VARIABLE_GUID: Guid =
    Guid::parse("aaf32c78-947b-439a-a180-2e144ec37792");
/// gEfiVariableGuid (EDK2 MdeModulePkg): a store of plain variables.
pub const EFI_VARIABLE_GUID: Guid = Guid::parse("ddcf3616-3275-4164-98b6-fe85707ffe7d");
/// gEfiSystemNvDataFvGuid (EDK2): the firmware volume that holds the variable store.
pub const EFI_SYSTEM_NV_DATA_FV_GUID: Guid = Guid::parse("fff12b8d-7696-4c8b-a985-2747075b4f50");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_the_encoding_is_mixed_endian() {
        let g = EFI_CERT_X509_GUID;
        assert_eq!(g.to_string(), "a5c059a1-94e4-4aa7-87b5-ab155c2bf072");
        // The first field is little-endian in the encoding (UEFI appendix A).
        assert_eq!(&g.0[..4], &[0xa1, 0x59, 0xc0, 0xa5]);
    }
}
