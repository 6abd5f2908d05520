//! EFI signature lists (db, dbx, KEK, MokList contents, ESL and .auth files) and SbatLevel
//! text.
//!
//! Input: bytes. Checked: parsing never panics; lists that parse re-encode to the same bytes
//! and parse back to the same lists; typed entries, `.auth` headers and SbatLevel text never
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secureboot::esl;

fuzz_target!(|data: &[u8]| {
    if let Ok(lists) = esl::parse(data) {
        let bytes = esl::encode(&lists);
        assert_eq!(bytes, data, "re-encoding changed the bytes");
        assert_eq!(esl::parse(&bytes).as_ref(), Ok(&lists));
        for l in &lists {
            for _ in l.entries() {}
        }
    }
    if let Ok(Some(inner)) = esl::strip_authentication_2(data) {
        let _ = esl::parse(inner);
    }
    if let Ok(auth) = secureboot::authvar::Authentication2::parse(data) {
        assert!(auth.signed_data.len() + auth.payload.len() < data.len());
    }
    let _ = secureboot::sbat::SbatLevel::parse(data);
});
