//! OVMF variable stores (an OVMF_VARS .fd).
//!
//! Input: a firmware volume. Checked: parsing never panics; every variable it lists lies
//! inside the input; the Secure Boot variables it extracts never panic the ESL parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secureboot::varstore::VariableStore;

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
});
