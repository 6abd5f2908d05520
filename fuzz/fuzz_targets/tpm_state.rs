//! Permanent-state blobs, as a host reads them back from disk.
//!
//! Input: a blob for `Tpm::restore`. Checked: restoring never panics; a blob that restores
//! re-encodes (`permanent_state()`) to a blob that restores to the same state; the restored
//! TPM then works: Startup(STATE) or Startup(CLEAR), capabilities, PCRs, and reads, writes
//! and counters on every NV index it holds, without panicking or malformed responses, and
//! survives Shutdown(STATE), a save and a Startup(STATE).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tpm::Tpm;
use tpm_fuzz::{
    check_restore, command, execute_checked, response_code, SHUTDOWN_STATE, STARTUP_CLEAR,
    STARTUP_STATE,
};

const OWNER: u32 = 0x4000_0001;
const PLATFORM: u32 = 0x4000_000C;

fn get_capability(tpm: &mut Tpm, cap: u32, property: u32, count: u32) -> Vec<u8> {
    let mut p = Vec::new();
    for v in [cap, property, count] {
        p.extend_from_slice(&v.to_be_bytes());
    }
    execute_checked(tpm, 0, &command(0x17A, &[], None, &p))
}

/// NV index handles from GetCapability(TPM_CAP_HANDLES, NV indices).
fn nv_handles(tpm: &mut Tpm) -> Vec<u32> {
    let resp = get_capability(tpm, 1, 0x0100_0000, 64);
    if response_code(&resp) != 0 || resp.len() < 19 {
        return Vec::new();
    }
    // header, moreData, capability, count, handles
    resp[19..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// dataSize from NV_ReadPublic, if it succeeds.
fn nv_data_size(tpm: &mut Tpm, index: u32) -> Option<u16> {
    let resp = execute_checked(tpm, 0, &command(0x169, &[index], None, &[]));
    if response_code(&resp) != 0 {
        return None;
    }
    // header, TPM2B size, nvIndex, nameAlg, attributes, authPolicy (TPM2B), dataSize
    let policy = usize::from(u16::from_be_bytes([*resp.get(22)?, *resp.get(23)?]));
    let at = 24 + policy;
    Some(u16::from_be_bytes([*resp.get(at)?, *resp.get(at + 1)?]))
}

fn exercise(tpm: &mut Tpm) {
    tpm.init();
    if response_code(&execute_checked(tpm, 0, &STARTUP_STATE)) != 0 {
        tpm.init();
        execute_checked(tpm, 0, &STARTUP_CLEAR);
    }
    for (cap, prop) in [
        (0u32, 0u32),
        (2, 0),
        (5, 0),
        (6, 0x100),
        (6, 0x200),
        (8, 0),
        (0x100, 0),
    ] {
        get_capability(tpm, cap, prop, 128);
    }
    // PCR_Read, every PCR of the SHA-1, SHA-256, SHA-384 and SHA-512 banks.
    let mut sel = 4u32.to_be_bytes().to_vec();
    for alg in [0x0004u16, 0x000B, 0x000C, 0x000D] {
        sel.extend_from_slice(&alg.to_be_bytes());
        sel.extend_from_slice(&[3, 0xff, 0xff, 0xff]);
    }
    execute_checked(tpm, 0, &command(0x17E, &[], None, &sel));
    execute_checked(tpm, 0, &command(0x181, &[], None, &[]));

    for index in nv_handles(tpm).into_iter().take(16) {
        let size = nv_data_size(tpm, index).unwrap_or(0).min(1024);
        for auth in [index, OWNER, PLATFORM] {
            let mut read = size.to_be_bytes().to_vec();
            read.extend_from_slice(&[0, 0]);
            execute_checked(tpm, 0, &command(0x14E, &[auth, index], Some(b""), &read));
            execute_checked(tpm, 0, &command(0x134, &[auth, index], Some(b""), &[]));
            execute_checked(tpm, 0, &command(0x135, &[auth, index], Some(b""), &[0; 8]));
            execute_checked(
                tpm,
                0,
                &command(0x136, &[auth, index], Some(b""), &[0, 1, 0x5a]),
            );
            let write = [0, 1, 0xa5, 0, 0];
            execute_checked(tpm, 0, &command(0x137, &[auth, index], Some(b""), &write));
        }
    }
    check_restore(tpm);
    execute_checked(tpm, 0, &SHUTDOWN_STATE);
    let mut again = check_restore(tpm);
    again.init();
    execute_checked(&mut again, 0, &STARTUP_STATE);
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut tpm) = Tpm::restore(data, &[0u8; 32]) else {
        return;
    };
    check_restore(&tpm);
    exercise(&mut tpm);
});
