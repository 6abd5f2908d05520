//! OVMF variable stores (an OVMF_VARS .fd).
//!
//! Input: a firmware volume. Checked: parsing never panics; every variable it lists lies
//! inside the input; the Secure Boot variables it extracts never panic the ESL parser; writing
//! a variable into a store that parses either fails cleanly or gives a store that parses and
//! holds the new value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secureboot::varstore::{write_variables, NewVariable, VariableStore};

fuzz_target!(|data: &[u8]| {
    let Ok(store) = VariableStore::parse(data) else {
        return;
    };
    for v in &store.variables {
        assert!(v.offset < data.len());
        assert!(v.data.len() <= data.len());
    }
    for (_, bytes) in store.secure_boot_variables() {
        let _ = secureboot::esl::parse(bytes);
    }
    let update = NewVariable {
        name: "db",
        vendor: secureboot::guid::EFI_IMAGE_SECURITY_DATABASE_GUID,
        attributes: 0x27,
        timestamp: Default::default(),
        data: b"fuzz",
    };
    if let Ok(written) = write_variables(data, std::slice::from_ref(&update)) {
        let again = VariableStore::parse(&written).expect("a written store parses");
        let db = again
            .get("db", update.vendor)
            .expect("the written variable is live");
        assert_eq!(db.data, b"fuzz");
    }
});
