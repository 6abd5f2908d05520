//! Authenticode PKCS#7 SignedData (a WIN_CERTIFICATE's contents), kernel module signature
//! trailers and bzImage headers.
//!
//! Input: DER bytes. Checked: the SpcIndirectDataContent parse never panics; a signature
//! that parses reports a digest of its algorithm's length and lists its certificates through
//! OpenSSL without panicking; the same bytes as a module's trailer or a bzImage never panic
//! either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secureboot::authenticode::AuthenticodeSignature;

fuzz_target!(|data: &[u8]| {
    if let Ok(sig) = AuthenticodeSignature::parse(data, 0) {
        assert_eq!(sig.digest().len(), sig.digest_algorithm().output_len());
        let _ = sig.certificates();
    }
    let _ = secureboot::module_sig::parse(data);
    if let Ok(Some((_, payload))) = secureboot::module_sig::bzimage_payload(data) {
        assert!(payload.len() <= data.len());
    }
});
