//! Authenticode PKCS#7 SignedData (a WIN_CERTIFICATE's contents), kernel module signature
//! trailers and bzImage headers.
//!
//! Input: DER bytes. Checked: the SpcIndirectDataContent parse never panics; a signature
//! that parses reports a digest of its algorithm's length and lists its certificates through
//! OpenSSL without panicking; wherever the verification without OpenSSL answers whether the
//! signature chains to one of its own certificates or to Debian's Secure Boot CA, OpenSSL
//! answers the same; the same bytes as a module's trailer or a bzImage never panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secureboot::authenticode::AuthenticodeSignature;

const DEBIAN_CA: &[u8] = include_bytes!("../../crates/secureboot/testdata/debian-secure-boot-ca.der");

fuzz_target!(|data: &[u8]| {
    if let Ok(sig) = AuthenticodeSignature::parse(data, 0) {
        assert_eq!(sig.digest().len(), sig.digest_algorithm().output_len());
        let mut anchors: Vec<Vec<u8>> = vec![DEBIAN_CA.to_vec()];
        if let Ok(certs) = sig.certificates() {
            anchors.extend(certs.iter().filter_map(|c| c.to_der().ok()));
        }
        for anchor in &anchors {
            assert_ne!(sig.fast_path_agrees(anchor), Some(false));
        }
    }
    let _ = secureboot::module_sig::parse(data);
    if let Ok(Some((_, payload))) = secureboot::module_sig::bzimage_payload(data) {
        assert!(payload.len() <= data.len());
    }
});
