//! Command sequences against a freshly manufactured, started TPM.
//!
//! Input: records of `control: u8, length: u16 BE, command bytes` (see `tpm_fuzz::records`);
//! the control byte picks the locality (bits 0-2, 5-7 invalid), asks for a state round trip
//! (0x08), a power cycle through the saved state (0x10) or a _TPM_Init first (0x20).
//!
//! Checked for every command: the engine does not panic; the response is a well-formed
//! header of the right size, within MAX_RESPONSE_SIZE, and an error is a bare header; the
//! permanent state never changes without `nv_generation()` changing (else a host would not
//! persist it); `permanent_state()` restores to a TPM that encodes the same state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tpm::Tpm;
use tpm_fuzz::{
    check_restore, ctl, execute_checked, records, response_code, same_state, ENTROPY, STARTUP_CLEAR,
};

/// Commands per input (longer inputs are cut off: sequences, not volume, find bugs).
const MAX_COMMANDS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let mut tpm = Tpm::manufacture(&ENTROPY);
    tpm.init();
    let resp = execute_checked(&mut tpm, 0, &STARTUP_CLEAR);
    assert_eq!(
        response_code(&resp),
        0,
        "Startup(CLEAR) failed: {resp:02x?}"
    );

    for rec in records(data).take(MAX_COMMANDS) {
        if rec.control & ctl::INIT != 0 {
            tpm.init();
        }
        let generation = tpm.nv_generation();
        let before = tpm.permanent_state();
        execute_checked(&mut tpm, rec.control & ctl::LOCALITY, rec.command);
        if tpm.nv_generation() == generation {
            let after = tpm.permanent_state();
            assert!(
                same_state(&before, &after),
                "permanent state changed but nv_generation() did not, command {:02x?}",
                rec.command
            );
        }
        if rec.control & ctl::POWER_CYCLE != 0 {
            tpm = check_restore(&tpm);
        } else if rec.control & ctl::CHECK_RESTORE != 0 {
            check_restore(&tpm);
        }
    }
});
