//! Black-box tests of the engine at the byte level: command framing, response codes as the
//! specification defines them, PCR arithmetic checked against independently computed hashes,
//! NV semantics, and state that survives Shutdown(STATE) and a restore.

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384};
use tpm::Tpm;

const RS_PW: u32 = 0x4000_0009;
const OWNER: u32 = 0x4000_0001;
const PLATFORM: u32 = 0x4000_000C;

/// Build a command: tag, size, code, handles, optional password sessions (one per entry), params.
fn cmd(code: u32, handles: &[u32], passwords: Option<&[&[u8]]>, params: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for h in handles {
        body.extend_from_slice(&h.to_be_bytes());
    }
    let tag: u16 = if passwords.is_some() { 0x8002 } else { 0x8001 };
    if let Some(pws) = passwords {
        let mut area = Vec::new();
        for pw in pws {
            area.extend_from_slice(&RS_PW.to_be_bytes());
            area.extend_from_slice(&0u16.to_be_bytes());
            area.push(1);
            area.extend_from_slice(&(pw.len() as u16).to_be_bytes());
            area.extend_from_slice(pw);
        }
        body.extend_from_slice(&(area.len() as u32).to_be_bytes());
        body.extend_from_slice(&area);
    }
    body.extend_from_slice(params);
    let mut out = tag.to_be_bytes().to_vec();
    out.extend_from_slice(&((10 + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn rc(resp: &[u8]) -> u32 {
    u32::from_be_bytes(resp[6..10].try_into().unwrap())
}

/// The parameter area of a successful response.
fn params(resp: &[u8], with_sessions: bool, handles: usize) -> Vec<u8> {
    assert_eq!(rc(resp), 0, "command failed: {:#x}", rc(resp));
    assert_eq!(
        u32::from_be_bytes(resp[2..6].try_into().unwrap()) as usize,
        resp.len()
    );
    let start = 10 + 4 * handles;
    if with_sessions {
        let n = u32::from_be_bytes(resp[start..start + 4].try_into().unwrap()) as usize;
        resp[start + 4..start + 4 + n].to_vec()
    } else {
        resp[start..].to_vec()
    }
}

fn started() -> Tpm {
    let mut t = Tpm::manufacture(&[7u8; 32]);
    t.init();
    assert_eq!(rc(&t.execute(0, &cmd(0x144, &[], None, &[0, 0]))), 0);
    t
}

fn pcr_read(t: &mut Tpm, alg: u16, pcr: usize) -> Vec<u8> {
    let mut sel = [0u8; 3];
    sel[pcr / 8] = 1 << (pcr % 8);
    let mut p = 1u32.to_be_bytes().to_vec();
    p.extend_from_slice(&alg.to_be_bytes());
    p.push(3);
    p.extend_from_slice(&sel);
    let out = params(&t.execute(0, &cmd(0x17E, &[], None, &p)), false, 0);
    // pcrUpdateCounter(4) selection(4+2+1+3) count(4) size(2) digest
    let count = u32::from_be_bytes(out[14..18].try_into().unwrap());
    assert_eq!(count, 1, "PCR {pcr} of bank {alg:#x} not returned");
    let size = u16::from_be_bytes(out[18..20].try_into().unwrap()) as usize;
    out[20..20 + size].to_vec()
}

fn extend_params(digests: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut p = (digests.len() as u32).to_be_bytes().to_vec();
    for (alg, d) in digests {
        p.extend_from_slice(&alg.to_be_bytes());
        p.extend_from_slice(d);
    }
    p
}

/// A TPM 1.2 command gets a TPM 2 answer (tag TPM_ST_NO_SESSIONS, TPM_RC_BAD_TAG), before and
/// after Startup. OVMF's TIS driver probes with 1.2 commands and takes a 1.2-tagged answer for
/// a TPM 1.2 (regression: with tpm-tis the firmware then measured nothing); swtpm answers
/// with the TPM 2 tag as well.
#[test]
fn tpm12_commands_get_a_tpm2_format_answer() {
    let mut t = Tpm::manufacture(&[1u8; 32]);
    t.init();
    // TPM_ORD_GetCapability, and the ordinal OVMF's TIS probe sends (0xF1).
    let probes: [&[u8]; 2] = [
        &[
            0x00, 0xC1, 0, 0, 0, 0x16, 0, 0, 0, 0x65, 0, 0, 0, 6, 0, 0, 0, 4, 0, 0, 1, 3,
        ],
        &[0x00, 0xC1, 0, 0, 0, 0x0A, 0, 0, 0, 0xF1],
    ];
    for probe in probes {
        assert_eq!(
            t.execute(0, probe),
            vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0x1E]
        );
    }
    assert_eq!(rc(&t.execute(0, &cmd(0x144, &[], None, &[0, 0]))), 0);
    assert_eq!(
        t.execute(0, probes[1]),
        vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0x1E]
    );
}

#[test]
fn framing_errors_are_the_specified_codes() {
    let mut t = Tpm::manufacture(&[1u8; 32]);
    t.init();
    // Before Startup: TPM_RC_INITIALIZE.
    assert_eq!(rc(&t.execute(0, &cmd(0x17B, &[], None, &[0, 8]))), 0x100);
    assert_eq!(rc(&t.execute(0, &cmd(0x144, &[], None, &[0, 0]))), 0);
    // A second Startup: TPM_RC_INITIALIZE.
    assert_eq!(rc(&t.execute(0, &cmd(0x144, &[], None, &[0, 0]))), 0x100);
    // Unknown command: TPM_RC_COMMAND_CODE.
    assert_eq!(rc(&t.execute(0, &cmd(0x1FF, &[], None, &[]))), 0x143);
    // Size field disagreeing with the bytes: TPM_RC_COMMAND_SIZE.
    let mut c = cmd(0x17B, &[], None, &[0, 8]);
    c.push(0);
    assert_eq!(rc(&t.execute(0, &c)), 0x142);
    // Truncated header.
    assert_eq!(t.execute(0, &[0x80, 0x01, 0, 0]).len(), 10);
    // Trailing parameter bytes: TPM_RC_SIZE.
    assert_eq!(rc(&t.execute(0, &cmd(0x17B, &[], None, &[0, 8, 0]))), 0x095);
    // Missing parameter: TPM_RC_INSUFFICIENT on parameter 1.
    assert_eq!(rc(&t.execute(0, &cmd(0x17B, &[], None, &[0]))), 0x1DA);
    // PCR_Extend without a session: TPM_RC_AUTH_MISSING.
    assert_eq!(
        rc(&t.execute(0, &cmd(0x182, &[16], None, &extend_params(&[])))),
        0x125
    );
    // Bad capability: TPM_RC_VALUE on parameter 1.
    assert_eq!(
        rc(&t.execute(
            0,
            &cmd(0x17A, &[], None, &[0, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 1])
        )),
        0x1C4
    );
    // A locality above 4.
    assert_eq!(rc(&t.execute(7, &cmd(0x17B, &[], None, &[0, 8]))), 0x907);
}

#[test]
fn pcr_extend_event_and_reset_follow_the_pc_client_rules() {
    let mut t = started();
    // Fresh values: zeros for 0-16 and 23, all ones for 17-22.
    assert_eq!(pcr_read(&mut t, 0x000B, 0), vec![0; 32]);
    assert_eq!(pcr_read(&mut t, 0x000B, 17), vec![0xFF; 32]);
    assert_eq!(pcr_read(&mut t, 0x0004, 23), vec![0; 20]);

    let d256 = Sha256::digest(b"kernel").to_vec();
    let d1 = Sha1::digest(b"kernel").to_vec();
    let r = t.execute(
        0,
        &cmd(
            0x182,
            &[8],
            Some(&[b""]),
            &extend_params(&[(0x0B, d256.clone()), (0x04, d1.clone())]),
        ),
    );
    params(&r, true, 0);
    let expect256 = Sha256::digest([vec![0u8; 32], d256].concat()).to_vec();
    let expect1 = Sha1::digest([vec![0u8; 20], d1].concat()).to_vec();
    assert_eq!(pcr_read(&mut t, 0x000B, 8), expect256);
    assert_eq!(pcr_read(&mut t, 0x0004, 8), expect1);
    // The SHA-384 bank was not given a digest, so it is unchanged.
    assert_eq!(pcr_read(&mut t, 0x000C, 8), vec![0; 48]);

    // PCR_Event hashes the data with every algorithm and extends each bank.
    let mut ev = (5u16).to_be_bytes().to_vec();
    ev.extend_from_slice(b"event");
    let r = t.execute(0, &cmd(0x13C, &[9], Some(&[b""]), &ev));
    let out = params(&r, true, 0);
    assert_eq!(u32::from_be_bytes(out[0..4].try_into().unwrap()), 4);
    let e384 = Sha384::digest(b"event").to_vec();
    assert_eq!(
        pcr_read(&mut t, 0x000C, 9),
        Sha384::digest([vec![0u8; 48], e384].concat()).to_vec()
    );

    // PCR 16 resets at locality 0; PCR 0 never; PCR 17 only at locality 4 (refused there too).
    t.execute(
        0,
        &cmd(
            0x182,
            &[16],
            Some(&[b""]),
            &extend_params(&[(0x0B, vec![1; 32])]),
        ),
    );
    assert_ne!(pcr_read(&mut t, 0x000B, 16), vec![0; 32]);
    assert_eq!(rc(&t.execute(0, &cmd(0x13D, &[16], Some(&[b""]), &[]))), 0);
    assert_eq!(pcr_read(&mut t, 0x000B, 16), vec![0; 32]);
    assert_eq!(
        rc(&t.execute(0, &cmd(0x13D, &[0], Some(&[b""]), &[]))),
        0x907
    );
    assert_eq!(
        rc(&t.execute(0, &cmd(0x13D, &[17], Some(&[b""]), &[]))),
        0x907
    );
    // PCR 17 cannot be extended from locality 0, but can from locality 4 ...
    assert_eq!(
        rc(&t.execute(
            0,
            &cmd(
                0x182,
                &[17],
                Some(&[b""]),
                &extend_params(&[(0x0B, vec![1; 32])])
            )
        )),
        0x907
    );
    assert_eq!(
        rc(&t.execute(
            4,
            &cmd(
                0x182,
                &[17],
                Some(&[b""]),
                &extend_params(&[(0x0B, vec![1; 32])])
            )
        )),
        0
    );
    // A handle that is not a PCR: TPM_RC_VALUE on handle 1.
    assert_eq!(
        rc(&t.execute(0, &cmd(0x182, &[24], Some(&[b""]), &extend_params(&[])))),
        0x184
    );
}

#[test]
fn shutdown_state_and_restore_resumes_pcrs_and_nv() {
    let mut t = started();
    let d = Sha256::digest(b"x").to_vec();
    t.execute(
        0,
        &cmd(
            0x182,
            &[3],
            Some(&[b""]),
            &extend_params(&[(0x0B, d.clone())]),
        ),
    );
    t.execute(
        0,
        &cmd(
            0x182,
            &[16],
            Some(&[b""]),
            &extend_params(&[(0x0B, d.clone())]),
        ),
    );
    let pcr3 = pcr_read(&mut t, 0x000B, 3);
    // An NV index defined by the owner.
    let mut def = vec![0, 2, b'p', b'w'];
    let public = [
        &0x0150_0010u32.to_be_bytes()[..],
        &0x000Bu16.to_be_bytes(),
        &0x0006_0006u32.to_be_bytes(),
        &[0, 0],
        &4u16.to_be_bytes(),
    ]
    .concat();
    def.extend_from_slice(&(public.len() as u16).to_be_bytes());
    def.extend_from_slice(&public);
    assert_eq!(
        rc(&t.execute(0, &cmd(0x12A, &[OWNER], Some(&[b""]), &def))),
        0
    );
    let write = [&[0u8, 4, 1, 2, 3, 4][..], &[0, 0]].concat();
    assert_eq!(
        rc(&t.execute(
            0,
            &cmd(0x137, &[0x0150_0010, 0x0150_0010], Some(&[b"pw"]), &write)
        )),
        0
    );
    // Wrong password: TPM_RC_AUTH_FAIL on session 1.
    assert_eq!(
        rc(&t.execute(
            0,
            &cmd(
                0x14E,
                &[0x0150_0010, 0x0150_0010],
                Some(&[b"no"]),
                &[0, 4, 0, 0]
            )
        )),
        0x98E
    );

    // Shutdown(STATE), power cycle through a fresh process (restore from the blob).
    assert_eq!(rc(&t.execute(0, &cmd(0x145, &[], None, &[0, 1]))), 0);
    let blob = t.permanent_state();
    let mut t = Tpm::restore(&blob, &[9u8; 32]).unwrap();
    t.init();
    assert_eq!(rc(&t.execute(0, &cmd(0x144, &[], None, &[0, 1]))), 0);
    assert_eq!(pcr_read(&mut t, 0x000B, 3), pcr3);
    // PCR 16 is not preserved.
    assert_eq!(pcr_read(&mut t, 0x000B, 16), vec![0; 32]);
    let r = t.execute(
        0,
        &cmd(
            0x14E,
            &[0x0150_0010, 0x0150_0010],
            Some(&[b"pw"]),
            &[0, 4, 0, 0],
        ),
    );
    assert_eq!(params(&r, true, 0), vec![0, 4, 1, 2, 3, 4]);

    // Startup(STATE) without a Shutdown(STATE): TPM_RC_VALUE on parameter 1; CLEAR works.
    t.init();
    assert_eq!(rc(&t.execute(0, &cmd(0x144, &[], None, &[0, 1]))), 0x1C4);
    assert_eq!(rc(&t.execute(0, &cmd(0x144, &[], None, &[0, 0]))), 0);
    assert_eq!(pcr_read(&mut t, 0x000B, 3), vec![0; 32]);
}

#[test]
fn pcr_allocate_takes_effect_at_the_next_reset() {
    let mut t = started();
    // sha256 only: the other banks lose their PCRs.
    let mut p = 4u32.to_be_bytes().to_vec();
    for (alg, all) in [(0x04u16, false), (0x0B, true), (0x0C, false), (0x0D, false)] {
        p.extend_from_slice(&alg.to_be_bytes());
        p.push(3);
        p.extend_from_slice(if all { &[0xFF, 0xFF, 0xFF] } else { &[0, 0, 0] });
    }
    let r = t.execute(0, &cmd(0x12B, &[PLATFORM], Some(&[b""]), &p));
    let out = params(&r, true, 0);
    assert_eq!(out[0], 1);
    // Still in force until the reset.
    assert_eq!(pcr_read(&mut t, 0x0004, 0).len(), 20);
    // The owner may not allocate: TPM_RC_VALUE on handle 1.
    assert_eq!(
        rc(&t.execute(0, &cmd(0x12B, &[OWNER], Some(&[b""]), &p))),
        0x184
    );
    t.init();
    t.execute(0, &cmd(0x144, &[], None, &[0, 0]));
    assert_eq!(pcr_read(&mut t, 0x000B, 0).len(), 32);
    let mut sel = 1u32.to_be_bytes().to_vec();
    sel.extend_from_slice(&[0, 4, 3, 1, 0, 0]);
    let out = params(&t.execute(0, &cmd(0x17E, &[], None, &sel)), false, 0);
    assert_eq!(&out[14..18], &[0, 0, 0, 0], "sha1 bank still allocated");
}

#[test]
fn hash_sequences_match_one_shot_hashes() {
    let mut t = started();
    let data = vec![0xA5u8; 3000];
    let r = t.execute(0, &cmd(0x186, &[], None, &[0, 0, 0, 0x0C]));
    assert_eq!(rc(&r), 0);
    let seq = u32::from_be_bytes(r[10..14].try_into().unwrap());
    assert_eq!(seq >> 24, 0x80);
    for chunk in data.chunks(1024) {
        let mut p = (chunk.len() as u16).to_be_bytes().to_vec();
        p.extend_from_slice(chunk);
        assert_eq!(rc(&t.execute(0, &cmd(0x15C, &[seq], Some(&[b""]), &p))), 0);
    }
    let r = t.execute(0, &cmd(0x13E, &[seq], Some(&[b""]), &[0, 0, 0x40, 0, 0, 1]));
    let out = params(&r, true, 0);
    assert_eq!(&out[2..50], Sha384::digest(&data).as_slice());
    // The sequence is gone.
    assert_eq!(
        rc(&t.execute(0, &cmd(0x15C, &[seq], Some(&[b""]), &[0, 0]))),
        0x18B
    );
}

/// The TCG EK Credential Profile's RSA-2048 template (L-1) and ECC P-256 template (L-2).
fn ek_template(rsa: bool) -> Vec<u8> {
    let policy = "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa";
    let t = if rsa {
        format!(
            "0001000b000300b20020{policy}00060080004300100800000000000100{}",
            "00".repeat(256)
        )
    } else {
        format!(
            "0023000b000300b20020{policy}0006008000430010000300100020{}0020{}",
            "00".repeat(32),
            "00".repeat(32)
        )
    };
    hex::decode(t).unwrap()
}

/// CreatePrimary(endorsement, template) and the Name it returns.
fn primary_name(t: &mut Tpm, template: &[u8]) -> Vec<u8> {
    let mut p = vec![0, 4, 0, 0, 0, 0]; // TPM2B_SENSITIVE_CREATE: empty auth and data
    p.extend_from_slice(&(template.len() as u16).to_be_bytes());
    p.extend_from_slice(template);
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // outsideInfo, creationPCR
    let r = t.execute(0, &cmd(0x131, &[0x4000_000B], Some(&[b""]), &p));
    let out = params(&r, true, 1);
    // outPublic, creationData, creationHash, creationTicket, name: the name is last.
    let mut rd = tpm::codec::Reader::new(&out);
    for _ in 0..3 {
        rd.sized(4096).unwrap();
    }
    rd.take(6).unwrap(); // ticket tag and hierarchy
    rd.sized(64).unwrap();
    rd.sized(68).unwrap().to_vec()
}

/// Primary derivation is frozen (derivation v1): the same manufacture entropy and the same
/// template give the same EK Names forever. These Names were computed once and pinned; a
/// change here means existing EKs (and their certificates) would change on upgrade.
#[test]
fn primary_derivation_v1_is_pinned() {
    let mut t = started();
    let rsa = primary_name(&mut t, &ek_template(true));
    let ecc = primary_name(&mut t, &ek_template(false));
    assert_eq!(hex::encode(&rsa), PINNED_RSA_EK_NAME, "RSA EK Name changed");
    assert_eq!(hex::encode(&ecc), PINNED_ECC_EK_NAME, "ECC EK Name changed");
    // A second TPM from other entropy has other EKs; the same TPM derives the same again.
    let mut other = Tpm::manufacture(&[8u8; 32]);
    other.init();
    other.execute(0, &cmd(0x144, &[], None, &[0, 0]));
    assert_ne!(primary_name(&mut other, &ek_template(true)), rsa);
    let blob = t.permanent_state();
    let mut again = Tpm::restore(&blob, &[1u8; 32]).unwrap();
    again.init();
    again.execute(0, &cmd(0x144, &[], None, &[0, 0]));
    assert_eq!(primary_name(&mut again, &ek_template(false)), ecc);
}

const PINNED_RSA_EK_NAME: &str =
    "000bb4ca90c4722d28ca3f9090e5b444ea0f745f7f46d90047d1675b83a636e82b3d";
const PINNED_ECC_EK_NAME: &str =
    "000b97992055113ea913a1cac319e86fbfd309dda82a2a7c20fb9f5717fb8dd40d22";

/// A snapshot: the volatile blob carries PCRs and loaded keys to another process holding the
/// same permanent state, which answers at once, without TPM2_Startup.
#[test]
fn volatile_state_moves_pcrs_and_loaded_keys() {
    let mut t = started();
    let d = Sha256::digest(b"snapshot").to_vec();
    t.execute(
        0,
        &cmd(0x182, &[5], Some(&[b""]), &extend_params(&[(0x0B, d)])),
    );
    let pcr5 = pcr_read(&mut t, 0x000B, 5);
    // An ECC signing primary in the NULL hierarchy ... then its handle is used after restore.
    // ECC P-256, sign|userWithAuth|sensitiveDataOrigin|fixedParent|fixedTPM, ECDSA/SHA-256.
    let template =
        hex::decode("0023000b000400720000001000180 00b0003001000000000".replace(' ', "")).unwrap();
    let mut p = vec![0, 4, 0, 0, 0, 0];
    p.extend_from_slice(&(template.len() as u16).to_be_bytes());
    p.extend_from_slice(&template);
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let r = t.execute(0, &cmd(0x131, &[0x4000_0001], Some(&[b""]), &p));
    assert_eq!(rc(&r), 0, "CreatePrimary");
    let key = u32::from_be_bytes(r[10..14].try_into().unwrap());

    let permanent = t.permanent_state();
    let volatile = t.volatile_state();
    for cut in 0..volatile.len() {
        let mut probe = Tpm::restore(&permanent, &[3u8; 32]).unwrap();
        assert!(
            probe.restore_volatile(&volatile[..cut]).is_err(),
            "prefix {cut} accepted"
        );
    }
    let mut moved = Tpm::restore(&permanent, &[4u8; 32]).unwrap();
    moved.restore_volatile(&volatile).unwrap();
    assert_eq!(pcr_read(&mut moved, 0x000B, 5), pcr5);
    // Sign with the key loaded before the move: digest, scheme ECDSA/SHA-256, NULL ticket.
    let mut sp = vec![0, 32];
    sp.extend_from_slice(&Sha256::digest(b"m"));
    sp.extend_from_slice(&[0x00, 0x18, 0x00, 0x0B, 0x80, 0x24, 0x40, 0, 0, 7, 0, 0]);
    let r = moved.execute(0, &cmd(0x15D, &[key], Some(&[b""]), &sp));
    assert_eq!(rc(&r), 0, "Sign with the moved key");
}

/// CMD_SET_BUFFERSIZE's engine side: the size in force bounds commands and is reported.
#[test]
fn io_buffer_size_bounds_commands_and_is_reported() {
    let mut t = started();
    assert_eq!(t.set_io_buffer_size(3968), 3968);
    assert_eq!(t.set_io_buffer_size(0), 3968, "0 queries");
    assert_eq!(t.set_io_buffer_size(10), Tpm::MIN_IO_BUFFER);
    assert_eq!(t.set_io_buffer_size(3968), 3968);
    // A 4000-byte command no longer fits: TPM_RC_COMMAND_SIZE.
    let mut big = cmd(0x17D, &[], None, &[0; 3990]);
    big.truncate(4000);
    let len = (big.len() as u32).to_be_bytes();
    big[2..6].copy_from_slice(&len);
    assert_eq!(rc(&t.execute(0, &big)), 0x142);
    // GetCapability(TPM_PROPERTIES, MAX_COMMAND_SIZE, 2) reports it for commands and responses.
    let r = t.execute(
        0,
        &cmd(0x17A, &[], None, &[0, 0, 0, 6, 0, 0, 1, 0x1E, 0, 0, 0, 2]),
    );
    let out = params(&r, false, 0);
    assert_eq!(&out[9..17], &[0, 0, 1, 0x1E, 0, 0, 0x0F, 0x80]);
    assert_eq!(&out[17..25], &[0, 0, 1, 0x1F, 0, 0, 0x0F, 0x80]);
}

/// Session audit: the digest is H(digest || cpHash || rpHash) per audited command (Part 1,
/// 19.5), computed here independently and compared with what GetSessionAuditDigest attests.
#[test]
fn audit_session_digest_follows_the_specification() {
    let mut t = started();
    // StartAuthSession(tpmKey NULL, bind NULL, nonce 16, no salt, HMAC, NULL symmetric, SHA-256).
    let mut p = vec![0, 16];
    p.extend_from_slice(&[0x11; 16]);
    p.extend_from_slice(&[0, 0, 0x00, 0x00, 0x10, 0x00, 0x0B]);
    let r = t.execute(0, &cmd(0x176, &[0x4000_0007, 0x4000_0007], None, &p));
    assert_eq!(rc(&r), 0, "StartAuthSession");
    let session = u32::from_be_bytes(r[10..14].try_into().unwrap());

    // GetRandom(16) with the session as an audit session (continueSession | audit).
    let audited = |t: &mut Tpm, nonce: u8| -> (Vec<u8>, Vec<u8>) {
        let params = [0u8, 16];
        let mut area = session.to_be_bytes().to_vec();
        area.extend_from_slice(&[0, 16]);
        area.extend_from_slice(&[nonce; 16]);
        area.push(0x81);
        area.extend_from_slice(&[0, 0]);
        let mut body = (area.len() as u32).to_be_bytes().to_vec();
        body.extend_from_slice(&area);
        body.extend_from_slice(&params);
        let mut c = vec![0x80, 0x02];
        c.extend_from_slice(&((10 + body.len()) as u32).to_be_bytes());
        c.extend_from_slice(&0x17Bu32.to_be_bytes());
        c.extend_from_slice(&body);
        let r = t.execute(0, &c);
        assert_eq!(rc(&r), 0, "audited GetRandom");
        let n = u32::from_be_bytes(r[10..14].try_into().unwrap()) as usize;
        let out = r[14..14 + n].to_vec();
        let attrs = r[14 + n + 2 + 32];
        assert_eq!(attrs & 0x82, 0x82, "audit and auditExclusive come back set");
        let cp = Sha256::digest([&0x17Bu32.to_be_bytes()[..], &params].concat()).to_vec();
        let rp = Sha256::digest([&[0u8; 4][..], &0x17Bu32.to_be_bytes(), &out].concat()).to_vec();
        (cp, rp)
    };
    let (cp1, rp1) = audited(&mut t, 1);
    let (cp2, rp2) = audited(&mut t, 2);
    let d1 = Sha256::digest([vec![0u8; 32], cp1, rp1].concat()).to_vec();
    let expected = Sha256::digest([d1, cp2, rp2].concat()).to_vec();

    let get = |t: &mut Tpm| -> (u8, Vec<u8>) {
        let r = t.execute(
            0,
            &cmd(
                0x14D,
                &[0x4000_000B, 0x4000_0007, session],
                Some(&[b"", b""]),
                &[0, 0, 0x00, 0x10],
            ),
        );
        let out = params(&r, true, 0);
        // TPM2B_ATTEST: size, magic, type, qualifiedSigner, extraData, clockInfo, firmware.
        let mut rd = tpm::codec::Reader::new(&out);
        let attest = rd.sized(4096).unwrap().to_vec();
        let mut a = tpm::codec::Reader::new(&attest);
        assert_eq!(a.u32().unwrap(), 0xFF54_4347);
        assert_eq!(a.u16().unwrap(), 0x8016);
        a.sized(68).unwrap();
        a.sized(64).unwrap();
        a.take(17 + 8).unwrap();
        let exclusive = a.u8().unwrap();
        (exclusive, a.sized(64).unwrap().to_vec())
    };
    let (exclusive, digest) = get(&mut t);
    assert_eq!(digest, expected, "session audit digest");
    assert_eq!(exclusive, 1);
    // A command outside the audit session ends its exclusivity.
    t.execute(0, &cmd(0x17B, &[], None, &[0, 8]));
    assert_eq!(get(&mut t).0, 0);
}
