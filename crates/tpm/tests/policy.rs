//! Black-box tests of the policy commands (Part 3, 23) through `Tpm::execute`: policy
//! digests pinned to values from the TCG specifications and from swtpm (libtpms) driven by
//! tpm2-tools 5.4, policy sessions authorizing (or failing to authorize) NV reads, PolicyPCR
//! against PCR changes, PolicyOR branches, PolicyNV comparisons, PolicySigned with a loaded
//! ECDSA key, and format-one errors on malformed parameters.

use hmac::{Hmac, Mac};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use tpm::Tpm;

const RS_PW: u32 = 0x4000_0009;
const OWNER: u32 = 0x4000_0001;
const ENDORSEMENT: u32 = 0x4000_000B;
const NULL: u32 = 0x4000_0007;

const SHA1: u16 = 0x0004;
const SHA256: u16 = 0x000B;
const SHA384: u16 = 0x000C;

const POLICY: u8 = 0x01;
const TRIAL: u8 = 0x03;

// Command codes (Part 2, 6.5.2).
const CC_NV_DEFINE: u32 = 0x12A;
const CC_NV_WRITE: u32 = 0x137;
const CC_NV_READ: u32 = 0x14E;
const CC_NV_READ_LOCK: u32 = 0x14F;
const CC_NV_READ_PUBLIC: u32 = 0x169;
const CC_PCR_EXTEND: u32 = 0x182;
const CC_START_AUTH_SESSION: u32 = 0x176;
const CC_LOAD_EXTERNAL: u32 = 0x167;
const CC_POLICY_NV: u32 = 0x149;
const CC_POLICY_SECRET: u32 = 0x151;
const CC_POLICY_SIGNED: u32 = 0x160;
const CC_POLICY_AUTHORIZE: u32 = 0x16A;
const CC_POLICY_AUTH_VALUE: u32 = 0x16B;
const CC_POLICY_COMMAND_CODE: u32 = 0x16C;
const CC_POLICY_CP_HASH: u32 = 0x16E;
const CC_POLICY_NAME_HASH: u32 = 0x170;
const CC_POLICY_OR: u32 = 0x171;
const CC_POLICY_PCR: u32 = 0x17F;
const CC_POLICY_RESTART: u32 = 0x180;
const CC_POLICY_GET_DIGEST: u32 = 0x189;
const CC_POLICY_PASSWORD: u32 = 0x18C;

// Response codes (Part 2, 6.6).
const RC_POLICY: u32 = 0x126;
const RC_PCR_CHANGED: u32 = 0x128;
const RC_NV_AUTHORIZATION: u32 = 0x149;
const RC_NV_UNINITIALIZED: u32 = 0x14A;
const RC_CPHASH: u32 = 0x151;
const RC_REFERENCE_H0: u32 = 0x910;
const RC_SIZE: u32 = 0x095;

/// A format-one code with parameter number `n`.
fn p(rc: u32, n: u32) -> u32 {
    rc | 0x040 | (n << 8)
}
/// A format-one code with session number `n`.
fn s(rc: u32, n: u32) -> u32 {
    rc | 0x800 | (n << 8)
}
/// A format-one code with handle number `n`.
fn h(rc: u32, n: u32) -> u32 {
    rc | (n << 8)
}
const FMT1_VALUE: u32 = 0x084;
const FMT1_HASH: u32 = 0x083;
const FMT1_SIZE: u32 = 0x095;
const FMT1_NONCE: u32 = 0x08F;
const FMT1_TAG: u32 = 0x097;
const FMT1_INSUFFICIENT: u32 = 0x09A;
const FMT1_POLICY_FAIL: u32 = 0x09D;
const FMT1_BAD_AUTH: u32 = 0x0A2;
const FMT1_POLICY_CC: u32 = 0x0A4;
const FMT1_HANDLE: u32 = 0x08B;
const FMT1_SCHEME: u32 = 0x092;
const FMT1_SIGNATURE: u32 = 0x09B;

// TPMA_NV bits (Part 2, 13.4).
const NV_OWNERWRITE: u32 = 1 << 1;
const NV_AUTHWRITE: u32 = 1 << 2;
const NV_OWNERREAD: u32 = 1 << 17;
const NV_AUTHREAD: u32 = 1 << 18;
const NV_POLICYREAD: u32 = 1 << 19;
const NV_NO_DA: u32 = 1 << 25;
const NV_READ_STCLEAR: u32 = 1 << 31;

/// One entry of a command's authorization area.
struct Auth {
    handle: u32,
    nonce: Vec<u8>,
    attrs: u8,
    hmac: Vec<u8>,
}

fn pw(password: &[u8]) -> Auth {
    Auth {
        handle: RS_PW,
        nonce: Vec::new(),
        attrs: 1,
        hmac: password.to_vec(),
    }
}

/// A policy session in the authorization area, continued, with a 16-byte caller nonce.
fn ps(handle: u32, hmac: &[u8]) -> Auth {
    Auth {
        handle,
        nonce: vec![0xA5; 16],
        attrs: 1,
        hmac: hmac.to_vec(),
    }
}

fn b2(data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

fn cmd(code: u32, handles: &[u32], auths: &[Auth], params: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for h in handles {
        body.extend_from_slice(&h.to_be_bytes());
    }
    let tag: u16 = if auths.is_empty() { 0x8001 } else { 0x8002 };
    if !auths.is_empty() {
        let mut area = Vec::new();
        for a in auths {
            area.extend_from_slice(&a.handle.to_be_bytes());
            area.extend_from_slice(&b2(&a.nonce));
            area.push(a.attrs);
            area.extend_from_slice(&b2(&a.hmac));
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
fn out_params(resp: &[u8], handles: usize) -> Vec<u8> {
    assert_eq!(rc(resp), 0, "command failed: {:#x}", rc(resp));
    assert_eq!(
        u32::from_be_bytes(resp[2..6].try_into().unwrap()) as usize,
        resp.len()
    );
    let start = 10 + 4 * handles;
    if resp[..2] == [0x80, 0x02] {
        let n = u32::from_be_bytes(resp[start..start + 4].try_into().unwrap()) as usize;
        resp[start + 4..start + 4 + n].to_vec()
    } else {
        resp[start..].to_vec()
    }
}

/// Read a TPM2B at `*at`, advancing it.
fn take_b2(buf: &[u8], at: &mut usize) -> Vec<u8> {
    let n = u16::from_be_bytes([buf[*at], buf[*at + 1]]) as usize;
    let v = buf[*at + 2..*at + 2 + n].to_vec();
    *at += 2 + n;
    v
}

fn started() -> Tpm {
    let mut t = Tpm::manufacture(&[9u8; 32]);
    t.init();
    assert_eq!(rc(&t.execute(0, &cmd(0x144, &[], &[], &[0, 0]))), 0);
    t
}

/// StartAuthSession without salt or bind: returns the handle and nonceTPM.
fn start(t: &mut Tpm, kind: u8, alg: u16) -> (u32, Vec<u8>) {
    let mut prm = b2(&[0x11; 16]);
    prm.extend_from_slice(&b2(&[]));
    prm.push(kind);
    prm.extend_from_slice(&0x0010u16.to_be_bytes());
    prm.extend_from_slice(&alg.to_be_bytes());
    let resp = t.execute(0, &cmd(CC_START_AUTH_SESSION, &[NULL, NULL], &[], &prm));
    let out = out_params(&resp, 1);
    let handle = u32::from_be_bytes(resp[10..14].try_into().unwrap());
    let mut at = 0;
    (handle, take_b2(&out, &mut at))
}

fn digest(t: &mut Tpm, session: u32) -> Vec<u8> {
    let out = out_params(
        &t.execute(0, &cmd(CC_POLICY_GET_DIGEST, &[session], &[], &[])),
        0,
    );
    let mut at = 0;
    take_b2(&out, &mut at)
}

/// Run a policy command on `session` (its last handle) and return the response code.
fn run(t: &mut Tpm, code: u32, handles: &[u32], auths: &[Auth], params: &[u8]) -> u32 {
    rc(&t.execute(0, &cmd(code, handles, auths, params)))
}

fn ok(t: &mut Tpm, code: u32, handles: &[u32], auths: &[Auth], params: &[u8]) {
    let r = run(t, code, handles, auths, params);
    assert_eq!(r, 0, "command {code:#x} failed: {r:#x}");
}

fn command_code(t: &mut Tpm, session: u32, code: u32) -> u32 {
    run(
        t,
        CC_POLICY_COMMAND_CODE,
        &[session],
        &[],
        &code.to_be_bytes(),
    )
}

/// PolicySecret parameters: nonceTPM, cpHashA, policyRef, expiration.
fn secret_params(nonce: &[u8], cp_hash: &[u8], policy_ref: &[u8], expiration: i32) -> Vec<u8> {
    let mut v = b2(nonce);
    v.extend_from_slice(&b2(cp_hash));
    v.extend_from_slice(&b2(policy_ref));
    v.extend_from_slice(&expiration.to_be_bytes());
    v
}

/// TPML_PCR_SELECTION from (bank, PCR list) pairs.
fn pcr_selection(banks: &[(u16, &[usize])]) -> Vec<u8> {
    let mut v = (banks.len() as u32).to_be_bytes().to_vec();
    for (alg, pcrs) in banks {
        v.extend_from_slice(&alg.to_be_bytes());
        v.push(3);
        let mut sel = [0u8; 3];
        for pcr in *pcrs {
            sel[pcr / 8] |= 1 << (pcr % 8);
        }
        v.extend_from_slice(&sel);
    }
    v
}

fn policy_pcr_params(pcr_digest: &[u8], banks: &[(u16, &[usize])]) -> Vec<u8> {
    let mut v = b2(pcr_digest);
    v.extend_from_slice(&pcr_selection(banks));
    v
}

fn tpml_digest(digests: &[&[u8]]) -> Vec<u8> {
    let mut v = (digests.len() as u32).to_be_bytes().to_vec();
    for d in digests {
        v.extend_from_slice(&b2(d));
    }
    v
}

/// NV_DefineSpace by the owner (empty owner password): sha256 name, given attributes.
fn define_nv(t: &mut Tpm, index: u32, attrs: u32, auth: &[u8], policy: &[u8], size: u16) {
    let mut public = index.to_be_bytes().to_vec();
    public.extend_from_slice(&SHA256.to_be_bytes());
    public.extend_from_slice(&attrs.to_be_bytes());
    public.extend_from_slice(&b2(policy));
    public.extend_from_slice(&size.to_be_bytes());
    let mut prm = b2(auth);
    prm.extend_from_slice(&b2(&public));
    ok(t, CC_NV_DEFINE, &[OWNER], &[pw(b"")], &prm);
}

fn nv_write_owner(t: &mut Tpm, index: u32, data: &[u8]) {
    let mut prm = b2(data);
    prm.extend_from_slice(&0u16.to_be_bytes());
    ok(t, CC_NV_WRITE, &[OWNER, index], &[pw(b"")], &prm);
}

fn nv_name(t: &mut Tpm, index: u32) -> Vec<u8> {
    let out = out_params(
        &t.execute(0, &cmd(CC_NV_READ_PUBLIC, &[index], &[], &[])),
        0,
    );
    let mut at = 0;
    take_b2(&out, &mut at);
    take_b2(&out, &mut at)
}

fn nv_read_params(size: u16, offset: u16) -> Vec<u8> {
    let mut v = size.to_be_bytes().to_vec();
    v.extend_from_slice(&offset.to_be_bytes());
    v
}

/// NV_Read of the whole index authorized by the index itself with `auth`.
fn nv_read(t: &mut Tpm, index: u32, size: u16, auth: Auth) -> Result<Vec<u8>, u32> {
    let resp = t.execute(
        0,
        &cmd(
            CC_NV_READ,
            &[index, index],
            &[auth],
            &nv_read_params(size, 0),
        ),
    );
    if rc(&resp) != 0 {
        return Err(rc(&resp));
    }
    let out = out_params(&resp, 0);
    let mut at = 0;
    Ok(take_b2(&out, &mut at))
}

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().to_vec()
}

// ---------------------------------------------------------------------------------------
// (1) Known digests.

/// One trial-session policy: the steps and the digest swtpm 0.x (libtpms) computed for the
/// same tpm2-tools invocation (`tpm2_startauthsession -g ALG -S s.ctx` then the tools named
/// in the comments), or the TCG specification value where noted.
struct Known {
    alg: u16,
    name: &'static str,
    hex: &'static str,
}

/// Run the named policy steps on a fresh trial session of `alg` and return its digest.
fn trial(t: &mut Tpm, alg: u16, name: &str) -> Vec<u8> {
    let (sess, _) = start(t, TRIAL, alg);
    let x32 = [b'x'; 32];
    let mut key_name = SHA256.to_be_bytes().to_vec();
    key_name.extend_from_slice(&x32);
    let steps: Vec<(u32, Vec<u32>, bool, Vec<u8>)> = match name {
        // tpm2_policycommandcode TPM2_CC_NV_Read
        "commandcode-nvread" => vec![(
            CC_POLICY_COMMAND_CODE,
            vec![],
            false,
            CC_NV_READ.to_be_bytes().to_vec(),
        )],
        // tpm2_policypassword
        "password" => vec![(CC_POLICY_PASSWORD, vec![], false, vec![])],
        // tpm2_policyauthvalue
        "authvalue" => vec![(CC_POLICY_AUTH_VALUE, vec![], false, vec![])],
        // tpm2_policysecret -c e
        "secret-endorsement" => vec![(
            CC_POLICY_SECRET,
            vec![ENDORSEMENT],
            true,
            secret_params(&[], &[], &[], 0),
        )],
        // tpm2_policysecret -c o
        "secret-owner" => vec![(
            CC_POLICY_SECRET,
            vec![OWNER],
            true,
            secret_params(&[], &[], &[], 0),
        )],
        // tpm2_policysecret -c o -q ref.bin ("abc")
        "secret-owner-ref" => vec![(
            CC_POLICY_SECRET,
            vec![OWNER],
            true,
            secret_params(&[], &[], b"abc", 0),
        )],
        // tpm2_policypcr -l sha256:0,1,2,3,4,5,6,7
        "pcr-sha256-0-7" => vec![(
            CC_POLICY_PCR,
            vec![],
            false,
            policy_pcr_params(&[], &[(SHA256, &[0, 1, 2, 3, 4, 5, 6, 7])]),
        )],
        // tpm2_policypcr -l sha1:16,23
        "pcr-sha1-16-23" => vec![(
            CC_POLICY_PCR,
            vec![],
            false,
            policy_pcr_params(&[], &[(SHA1, &[16, 23])]),
        )],
        // tpm2_policypcr -l sha256:0+sha1:1,17 (PCR 17 is all ones after Startup)
        "pcr-two-banks" => vec![(
            CC_POLICY_PCR,
            vec![],
            false,
            policy_pcr_params(&[], &[(SHA256, &[0]), (SHA1, &[1, 17])]),
        )],
        // tpm2_policypassword; tpm2_policycommandcode TPM2_CC_NV_Read
        "password-then-commandcode" => vec![
            (CC_POLICY_PASSWORD, vec![], false, vec![]),
            (
                CC_POLICY_COMMAND_CODE,
                vec![],
                false,
                CC_NV_READ.to_be_bytes().to_vec(),
            ),
        ],
        // tpm2_policyauthvalue; tpm2_policypcr -l sha256:0
        "authvalue-then-pcr" => vec![
            (CC_POLICY_AUTH_VALUE, vec![], false, vec![]),
            (
                CC_POLICY_PCR,
                vec![],
                false,
                policy_pcr_params(&[], &[(SHA256, &[0])]),
            ),
        ],
        // tpm2_policyauthorize -i approved.dig (32 zero bytes) -n key.name (000b || "x"*32)
        "authorize" => {
            let mut prm = b2(&[0; 32]);
            prm.extend_from_slice(&b2(&[]));
            prm.extend_from_slice(&b2(&key_name));
            prm.extend_from_slice(&[0x80, 0x22, 0x40, 0, 0, 1, 0, 0]);
            vec![(CC_POLICY_AUTHORIZE, vec![], false, prm)]
        }
        // ... -q ref.bin ("xyz")
        "authorize-ref" => {
            let mut prm = b2(&[0; 32]);
            prm.extend_from_slice(&b2(b"xyz"));
            prm.extend_from_slice(&b2(&key_name));
            prm.extend_from_slice(&[0x80, 0x22, 0x40, 0, 0, 1, 0, 0]);
            vec![(CC_POLICY_AUTHORIZE, vec![], false, prm)]
        }
        // tpm2_policycphash --cphash ("c"*32)
        "cphash" => vec![(CC_POLICY_CP_HASH, vec![], false, b2(&[b'c'; 32]))],
        // tpm2_policynamehash -n ("c"*32)
        "namehash" => vec![(CC_POLICY_NAME_HASH, vec![], false, b2(&[b'c'; 32]))],
        other => panic!("unknown step {other}"),
    };
    for (code, mut handles, auth, prm) in steps {
        handles.push(sess);
        let auths = if auth { vec![pw(b"")] } else { vec![] };
        ok(t, code, &handles, &auths, &prm);
    }
    digest(t, sess)
}

#[test]
fn trial_digests_match_swtpm_and_the_tcg_values() {
    let known = [
        Known { alg: SHA256, name: "commandcode-nvread", hex: "47ce3032d8bad1f3089cb0c09088de43501491d460402b90cd1b7fc0b68ca92f" },
        // PolicyAuthValue and PolicyPassword extend the same value.
        Known { alg: SHA256, name: "password", hex: "8fcd2169ab92694e0c633f1ab772842b8241bbc20288981fc7ac1eddc1fddb0e" },
        Known { alg: SHA256, name: "authvalue", hex: "8fcd2169ab92694e0c633f1ab772842b8241bbc20288981fc7ac1eddc1fddb0e" },
        // TCG EK Credential Profile 2.0, B.3.3: the EK's authPolicy PolicySecret(TPM_RH_ENDORSEMENT).
        Known { alg: SHA256, name: "secret-endorsement", hex: "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa" },
        Known { alg: SHA256, name: "secret-owner", hex: "0d84f55daf6e43ac97966e62c9bb989d3397777d25c5f749868055d65394f952" },
        Known { alg: SHA256, name: "secret-owner-ref", hex: "f4cd243008a2b3b05fb958608e5c92747932d4a7fbd08c683c9ba6e7e4ca784a" },
        Known { alg: SHA256, name: "pcr-sha256-0-7", hex: "9a72c2e06a93c453a86efb47532e9c7a91dcab018e675919910c58d6a1a5aa78" },
        Known { alg: SHA256, name: "pcr-sha1-16-23", hex: "aa1fde078437ef4f7447b045ae04519c681da89e6ee2d64e75a13157c88ad5d5" },
        Known { alg: SHA256, name: "pcr-two-banks", hex: "17340e96f8c40cc7491003e53f201fae72ba5ac4ce3dc625d98da3c47d950570" },
        Known { alg: SHA256, name: "password-then-commandcode", hex: "da3aa62b14e08f7b0080da325d01836991866c5396dc84905c4528192f509244" },
        Known { alg: SHA256, name: "authvalue-then-pcr", hex: "1c6d075793d10cde6dc4a5ebad2853c43c4cdcf28e14f5994d6874e2a8553742" },
        Known { alg: SHA256, name: "authorize", hex: "c722f7e64c6117af072479bb94743ad11398159a04d7b09ce13596e55ecd3e9f" },
        Known { alg: SHA256, name: "authorize-ref", hex: "86401ba22507c33a543253501763b5315072b1960c6d3cc048936205957a4457" },
        Known { alg: SHA256, name: "cphash", hex: "c423176d1d50b6c9335f0a983b738620644b48040007287a1ad5a8f568ab7837" },
        Known { alg: SHA256, name: "namehash", hex: "6d8c346169caf674a3714b86e4c5f746388480e20a7e5f6fdf611b46e26de759" },
        Known { alg: SHA1, name: "commandcode-nvread", hex: "fd38a8922a78017b4782955bff1e632ec9bbaa90" },
        Known { alg: SHA1, name: "password", hex: "af6038c78c5c962d37127e319124e3a8dc582e9b" },
        Known { alg: SHA1, name: "secret-endorsement", hex: "a721411a819a07ebcee9c6f1b19da385ce165910" },
        Known { alg: SHA1, name: "secret-owner-ref", hex: "517aa54818212e96608a859566d98e225b357553" },
        Known { alg: SHA1, name: "pcr-sha256-0-7", hex: "9293705feb511a6e1f72de6b795aec3ab642f620" },
        Known { alg: SHA1, name: "pcr-two-banks", hex: "21ebfcdcefb05964658c4b583cbb0a96c3553949" },
        Known { alg: SHA384, name: "commandcode-nvread", hex: "fbdd14921c8bd95c9f359679d2bf7578b147e8298321f8e9eac44c11772ffa6ee591784347839beff122f2144dd0b0f0" },
        Known { alg: SHA384, name: "password", hex: "0eb13321e885c9603d394e1c33976d4660517111f440d377585f66a94a0eee0a7f73d10b68edc48f61bd3c8385dcddf5" },
        Known { alg: SHA384, name: "secret-endorsement", hex: "8bbf2266537c171cb56e403c4dc1d4b64f432611dc386e6f532050c3278c930e143e8bb1133824ccb431053871c6db53" },
        Known { alg: SHA384, name: "secret-owner", hex: "2d3c5744c2486b112cfb9c129d54df3dce15eb917a7006ee5cd51a75c733cb731b6a0a474f6ad906be61e18263adef92" },
        Known { alg: SHA384, name: "pcr-sha1-16-23", hex: "112b4eb4d9207ab96ad86fe4a5093d94870ae52c8fa9ca6cc2bd056f3c672f74ba23ff1840725aa92851d383cc343027" },
    ];
    let mut t = started();
    for k in &known {
        assert_eq!(
            hex::encode(trial(&mut t, k.alg, k.name)),
            k.hex,
            "{} ({:#06x})",
            k.name,
            k.alg
        );
    }
}

#[test]
fn policy_or_of_two_branches_matches_swtpm() {
    let mut t = started();
    let a = trial(&mut t, SHA256, "password");
    let b = trial(&mut t, SHA256, "commandcode-nvread");
    // tpm2_policyor -l sha256:a.dig,b.dig, on swtpm.
    const OR: &str = "cdb0a5edb0d18614179ea1754c0ea2536ec352e1aa3677512bf2d1d584b9cb59";
    let (sess, _) = start(&mut t, TRIAL, SHA256);
    ok(&mut t, CC_POLICY_OR, &[sess], &[], &tpml_digest(&[&a, &b]));
    assert_eq!(hex::encode(digest(&mut t, sess)), OR);
    // A trial session accepts the OR from any digest: swtpm gives the same after PolicySecret.
    let (sess, _) = start(&mut t, TRIAL, SHA256);
    ok(
        &mut t,
        CC_POLICY_SECRET,
        &[ENDORSEMENT, sess],
        &[pw(b"")],
        &secret_params(&[], &[], &[], 0),
    );
    ok(&mut t, CC_POLICY_OR, &[sess], &[], &tpml_digest(&[&a, &b]));
    assert_eq!(hex::encode(digest(&mut t, sess)), OR);
    // The definition: H(0...0 || TPM_CC_PolicyOR || a || b).
    assert_eq!(
        hex::encode(sha256(&[&[0; 32], &CC_POLICY_OR.to_be_bytes(), &a, &b])),
        OR
    );
}

#[test]
fn ek_policy_in_a_real_session_returns_a_null_ticket() {
    let mut t = started();
    let (sess, _) = start(&mut t, POLICY, SHA256);
    let resp = t.execute(
        0,
        &cmd(
            CC_POLICY_SECRET,
            &[ENDORSEMENT, sess],
            &[pw(b"")],
            &secret_params(&[], &[], &[], 0),
        ),
    );
    let out = out_params(&resp, 0);
    // timeout: empty; policyTicket: TPM_ST_AUTH_SECRET, TPM_RH_NULL, empty digest.
    assert_eq!(hex::encode(&out), "0000802340000007".to_owned() + "0000");
    assert_eq!(
        hex::encode(digest(&mut t, sess)),
        "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa"
    );
}

// ---------------------------------------------------------------------------------------
// (2) Policy sessions authorizing NV reads.

const INDEX: u32 = 0x0150_0020;

/// An index readable with its authValue or its policy, written by the owner.
fn policy_index(t: &mut Tpm, policy: &[u8], auth: &[u8]) {
    define_nv(
        t,
        INDEX,
        NV_OWNERWRITE | NV_AUTHWRITE | NV_AUTHREAD | NV_POLICYREAD | NV_OWNERREAD | NV_NO_DA,
        auth,
        policy,
        8,
    );
    nv_write_owner(t, INDEX, b"policy!!");
}

#[test]
fn the_right_policy_reads_nv_and_a_wrong_one_fails() {
    let mut t = started();
    let policy = trial(&mut t, SHA256, "commandcode-nvread");
    policy_index(&mut t, &policy, b"");
    let (sess, _) = start(&mut t, POLICY, SHA256);
    assert_eq!(command_code(&mut t, sess, CC_NV_READ), 0);
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"")).unwrap(),
        b"policy!!"
    );
    // The digest was reset after the use: the same session now fails.
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"")),
        Err(s(FMT1_POLICY_FAIL, 1))
    );
    // A different policy: TPM_RC_POLICY_FAIL on session 1.
    ok(&mut t, CC_POLICY_PASSWORD, &[sess], &[], &[]);
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"")),
        Err(s(FMT1_POLICY_FAIL, 1))
    );
    // The right digest from a SHA-1 session: the algorithm differs.
    let (sess1, _) = start(&mut t, POLICY, SHA1);
    assert_eq!(command_code(&mut t, sess1, CC_NV_READ), 0);
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess1, b"")),
        Err(s(FMT1_POLICY_FAIL, 1))
    );
    // A trial session never authorizes.
    let (trial_sess, _) = start(&mut t, TRIAL, SHA256);
    assert_eq!(command_code(&mut t, trial_sess, CC_NV_READ), 0);
    assert!(nv_read(&mut t, INDEX, 8, ps(trial_sess, b"")).is_err());
}

#[test]
fn policy_command_code_binds_the_command() {
    let mut t = started();
    let policy = trial(&mut t, SHA256, "commandcode-nvread");
    define_nv(
        &mut t,
        INDEX,
        NV_OWNERWRITE | NV_AUTHREAD | NV_POLICYREAD | NV_NO_DA | NV_READ_STCLEAR,
        b"",
        &policy,
        8,
    );
    nv_write_owner(&mut t, INDEX, b"12345678");
    let (sess, _) = start(&mut t, POLICY, SHA256);
    assert_eq!(command_code(&mut t, sess, CC_NV_READ), 0);
    // Repeating the same code is allowed; another code is TPM_RC_VALUE on parameter 1.
    let again = digest(&mut t, sess);
    assert_eq!(
        command_code(&mut t, sess, CC_NV_READ_LOCK),
        p(FMT1_VALUE, 1)
    );
    assert_eq!(
        digest(&mut t, sess),
        again,
        "a failed command changes nothing"
    );
    // The digest matches, the command does not: TPM_RC_POLICY_CC on session 1.
    let r = run(
        &mut t,
        CC_NV_READ_LOCK,
        &[INDEX, INDEX],
        &[ps(sess, b"")],
        &[],
    );
    assert_eq!(r, s(FMT1_POLICY_CC, 1));
    // A command this TPM does not implement: TPM_RC_POLICY_CC on parameter 1.
    let (sess, _) = start(&mut t, TRIAL, SHA256);
    assert_eq!(
        command_code(&mut t, sess, 0x0000_01FF),
        p(FMT1_POLICY_CC, 1)
    );
}

#[test]
fn policy_password_sends_the_auth_value_in_the_clear() {
    let mut t = started();
    let policy = trial(&mut t, SHA256, "password");
    policy_index(&mut t, &policy, b"sesame");
    let (sess, _) = start(&mut t, POLICY, SHA256);
    ok(&mut t, CC_POLICY_PASSWORD, &[sess], &[], &[]);
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"wrong")),
        Err(s(FMT1_BAD_AUTH, 1))
    );
    // A failed authorization leaves the session's policy as it was.
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"sesame")).unwrap(),
        b"policy!!"
    );
}

#[test]
fn policy_auth_value_keys_the_hmac_with_the_auth_value() {
    let mut t = started();
    let policy = trial(&mut t, SHA256, "authvalue");
    policy_index(&mut t, &policy, b"sesame");
    let name = nv_name(&mut t, INDEX);
    let (sess, nonce_tpm) = start(&mut t, POLICY, SHA256);
    ok(&mut t, CC_POLICY_AUTH_VALUE, &[sess], &[], &[]);
    // Part 1, 19.6.5: HMAC(sessionKey || authValue, cpHash || nonceCaller || nonceTPM || attrs);
    // the session is unbound and unsalted, so its key is empty.
    let prm = nv_read_params(8, 0);
    let cp_hash = sha256(&[&CC_NV_READ.to_be_bytes(), &name, &name, &prm]);
    let hmac_with = |key: &[u8]| {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(&cp_hash);
        m.update(&[0xA5; 16]);
        m.update(&nonce_tpm);
        m.update(&[1]);
        m.finalize().into_bytes().to_vec()
    };
    let wrong = hmac_with(b"not it");
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, &wrong)),
        Err(s(FMT1_BAD_AUTH, 1))
    );
    let right = hmac_with(b"sesame");
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, &right)).unwrap(),
        b"policy!!"
    );
}

/// PolicyCpHash: the digest, its rules, and its enforcement. (An index cannot bind a cpHash
/// of its own reads: the cpHash covers its Name, which covers its authPolicy. So the
/// enforcement is shown by a session whose digest equals the index's authPolicy and which
/// still fails because the command is not the bound one.)
#[test]
fn policy_cp_hash_digest_rules_and_enforcement() {
    let mut t = started();
    let bound = sha256(&[b"some other command"]);
    let (trial_sess, _) = start(&mut t, TRIAL, SHA256);
    ok(&mut t, CC_POLICY_CP_HASH, &[trial_sess], &[], &b2(&bound));
    let policy = digest(&mut t, trial_sess);
    assert_eq!(
        policy,
        sha256(&[&[0; 32], &CC_POLICY_CP_HASH.to_be_bytes(), &bound])
    );
    policy_index(&mut t, &policy, b"");
    let (sess, _) = start(&mut t, POLICY, SHA256);
    ok(&mut t, CC_POLICY_CP_HASH, &[sess], &[], &b2(&bound));
    assert_eq!(digest(&mut t, sess), policy);
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"")),
        Err(s(FMT1_POLICY_FAIL, 1))
    );
    // The same cpHash twice is fine; a different one is TPM_RC_CPHASH; a short one SIZE.
    let (sess, _) = start(&mut t, POLICY, SHA256);
    ok(&mut t, CC_POLICY_CP_HASH, &[sess], &[], &b2(&bound));
    ok(&mut t, CC_POLICY_CP_HASH, &[sess], &[], &b2(&bound));
    assert_eq!(
        run(&mut t, CC_POLICY_CP_HASH, &[sess], &[], &b2(&[1; 32])),
        RC_CPHASH
    );
    assert_eq!(
        run(&mut t, CC_POLICY_CP_HASH, &[sess], &[], &b2(&[1; 31])),
        p(FMT1_SIZE, 1)
    );
    // A nameHash cannot join a cpHash, nor be set twice.
    assert_eq!(
        run(&mut t, CC_POLICY_NAME_HASH, &[sess], &[], &b2(&[1; 32])),
        RC_CPHASH
    );
    let (sess, _) = start(&mut t, POLICY, SHA256);
    ok(&mut t, CC_POLICY_NAME_HASH, &[sess], &[], &b2(&[1; 32]));
    assert_eq!(
        run(&mut t, CC_POLICY_NAME_HASH, &[sess], &[], &b2(&[1; 32])),
        RC_CPHASH
    );
    assert_eq!(
        run(&mut t, CC_POLICY_CP_HASH, &[sess], &[], &b2(&bound)),
        RC_CPHASH
    );
    // PolicySecret's cpHashA must agree with the recorded one too.
    let (sess, nonce) = start(&mut t, POLICY, SHA256);
    ok(&mut t, CC_POLICY_CP_HASH, &[sess], &[], &b2(&bound));
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_SECRET,
            &[OWNER, sess],
            &[pw(b"")],
            &secret_params(&nonce, &[2; 32], &[], 0)
        ),
        RC_CPHASH
    );
    ok(
        &mut t,
        CC_POLICY_SECRET,
        &[OWNER, sess],
        &[pw(b"")],
        &secret_params(&nonce, &bound, &[], 0),
    );
}

// ---------------------------------------------------------------------------------------
// (3) PolicyPCR and PCR changes.

fn extend_pcr(t: &mut Tpm, pcr: u32, data: &[u8; 32]) {
    let mut prm = 1u32.to_be_bytes().to_vec();
    prm.extend_from_slice(&SHA256.to_be_bytes());
    prm.extend_from_slice(data);
    ok(t, CC_PCR_EXTEND, &[pcr], &[pw(b"")], &prm);
}

#[test]
fn policy_pcr_fails_after_a_pcr_extend() {
    let mut t = started();
    let sel: &[(u16, &[usize])] = &[(SHA256, &[0, 1])];
    let (trial_sess, _) = start(&mut t, TRIAL, SHA256);
    ok(
        &mut t,
        CC_POLICY_PCR,
        &[trial_sess],
        &[],
        &policy_pcr_params(&[], sel),
    );
    let policy = digest(&mut t, trial_sess);
    // Independently: PCR 0 and 1 are zero after Startup at locality 0.
    let pcr_digest = sha256(&[&[0; 64]]);
    assert_eq!(
        policy,
        sha256(&[
            &[0; 32],
            &CC_POLICY_PCR.to_be_bytes(),
            &pcr_selection(sel),
            &pcr_digest
        ])
    );
    policy_index(&mut t, &policy, b"");

    // The PCRs are unchanged: the read succeeds, with or without the expected pcrDigest.
    let (sess, _) = start(&mut t, POLICY, SHA256);
    ok(
        &mut t,
        CC_POLICY_PCR,
        &[sess],
        &[],
        &policy_pcr_params(&[], sel),
    );
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"")).unwrap(),
        b"policy!!"
    );
    ok(
        &mut t,
        CC_POLICY_PCR,
        &[sess],
        &[],
        &policy_pcr_params(&pcr_digest, sel),
    );
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"")).unwrap(),
        b"policy!!"
    );

    // PolicyPCR, then an extend of PCR 16 (in TPM_PT_PCR_NO_INCREMENT, as swtpm reports it):
    // the session stays valid.
    ok(
        &mut t,
        CC_POLICY_PCR,
        &[sess],
        &[],
        &policy_pcr_params(&[], sel),
    );
    extend_pcr(&mut t, 16, &[7; 32]);
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"")).unwrap(),
        b"policy!!"
    );
    // PolicyPCR, then an extend of a counted PCR: TPM_RC_PCR_CHANGED at use.
    ok(
        &mut t,
        CC_POLICY_PCR,
        &[sess],
        &[],
        &policy_pcr_params(&[], sel),
    );
    extend_pcr(&mut t, 15, &[7; 32]);
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"")),
        Err(RC_PCR_CHANGED)
    );
    // The failure kept the session's state: a second PolicyPCR in it fails at once.
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_PCR,
            &[sess],
            &[],
            &policy_pcr_params(&[], sel)
        ),
        RC_PCR_CHANGED
    );
    // So does one after a restart and another extend.
    ok(&mut t, CC_POLICY_RESTART, &[sess], &[], &[]);
    ok(
        &mut t,
        CC_POLICY_PCR,
        &[sess],
        &[],
        &policy_pcr_params(&[], sel),
    );
    extend_pcr(&mut t, 15, &[7; 32]);
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_PCR,
            &[sess],
            &[],
            &policy_pcr_params(&[], sel)
        ),
        RC_PCR_CHANGED
    );

    // A selected PCR changes: the old pcrDigest is TPM_RC_VALUE, the new digest differs.
    extend_pcr(&mut t, 1, &[1; 32]);
    let (sess, _) = start(&mut t, POLICY, SHA256);
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_PCR,
            &[sess],
            &[],
            &policy_pcr_params(&pcr_digest, sel)
        ),
        p(FMT1_VALUE, 1)
    );
    ok(
        &mut t,
        CC_POLICY_PCR,
        &[sess],
        &[],
        &policy_pcr_params(&[], sel),
    );
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"")),
        Err(s(FMT1_POLICY_FAIL, 1))
    );
    // A trial session takes the given pcrDigest as is and reproduces the policy.
    let (trial_sess, _) = start(&mut t, TRIAL, SHA256);
    ok(
        &mut t,
        CC_POLICY_PCR,
        &[trial_sess],
        &[],
        &policy_pcr_params(&pcr_digest, sel),
    );
    assert_eq!(digest(&mut t, trial_sess), policy);
}

#[test]
fn policy_pcr_in_a_real_session_matches_swtpm() {
    let mut t = started();
    // tpm2_startauthsession --policy-session; tpm2_policypcr -l sha256:0,17 (swtpm).
    let (sess, _) = start(&mut t, POLICY, SHA256);
    ok(
        &mut t,
        CC_POLICY_PCR,
        &[sess],
        &[],
        &policy_pcr_params(&[], &[(SHA256, &[0, 17])]),
    );
    assert_eq!(
        hex::encode(digest(&mut t, sess)),
        "d0c627f04cb7389556c1288b99a690dd0001deea27070b942be2f1a6c2e2cde4"
    );
    // An unallocated bank (SHA-512) selects nothing: it is filtered out of the digest.
    let (a, _) = start(&mut t, TRIAL, SHA256);
    ok(
        &mut t,
        CC_POLICY_PCR,
        &[a],
        &[],
        &policy_pcr_params(&[], &[(0x000D, &[0, 1])]),
    );
    let (b, _) = start(&mut t, TRIAL, SHA256);
    ok(
        &mut t,
        CC_POLICY_PCR,
        &[b],
        &[],
        &policy_pcr_params(&[], &[(0x000D, &[])]),
    );
    assert_eq!(digest(&mut t, a), digest(&mut t, b));
}

// ---------------------------------------------------------------------------------------
// (4) PolicyOR.

#[test]
fn policy_or_branches_each_authorize() {
    let mut t = started();
    let a = trial(&mut t, SHA256, "commandcode-nvread");
    let b = trial(&mut t, SHA256, "secret-owner");
    let (trial_sess, _) = start(&mut t, TRIAL, SHA256);
    ok(
        &mut t,
        CC_POLICY_OR,
        &[trial_sess],
        &[],
        &tpml_digest(&[&a, &b]),
    );
    let policy = digest(&mut t, trial_sess);
    policy_index(&mut t, &policy, b"");

    // Branch A.
    let (sess, _) = start(&mut t, POLICY, SHA256);
    assert_eq!(command_code(&mut t, sess, CC_NV_READ), 0);
    ok(&mut t, CC_POLICY_OR, &[sess], &[], &tpml_digest(&[&a, &b]));
    assert_eq!(digest(&mut t, sess), policy);
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"")).unwrap(),
        b"policy!!"
    );
    // Branch B, the list in the other order gives another digest: it must be the same list.
    ok(
        &mut t,
        CC_POLICY_SECRET,
        &[OWNER, sess],
        &[pw(b"")],
        &secret_params(&[], &[], &[], 0),
    );
    ok(&mut t, CC_POLICY_OR, &[sess], &[], &tpml_digest(&[&b, &a]));
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"")),
        Err(s(FMT1_POLICY_FAIL, 1))
    );
    ok(&mut t, CC_POLICY_RESTART, &[sess], &[], &[]);
    ok(
        &mut t,
        CC_POLICY_SECRET,
        &[OWNER, sess],
        &[pw(b"")],
        &secret_params(&[], &[], &[], 0),
    );
    ok(&mut t, CC_POLICY_OR, &[sess], &[], &tpml_digest(&[&a, &b]));
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"")).unwrap(),
        b"policy!!"
    );
    // A digest in no branch: TPM_RC_VALUE on parameter 1, and the digest is kept.
    ok(&mut t, CC_POLICY_PASSWORD, &[sess], &[], &[]);
    let before = digest(&mut t, sess);
    assert_eq!(
        run(&mut t, CC_POLICY_OR, &[sess], &[], &tpml_digest(&[&a, &b])),
        p(FMT1_VALUE, 1)
    );
    assert_eq!(digest(&mut t, sess), before);
    // 1 or 9 digests: TPM_RC_SIZE on parameter 1.
    assert_eq!(
        run(&mut t, CC_POLICY_OR, &[sess], &[], &tpml_digest(&[&before])),
        p(FMT1_SIZE, 1)
    );
    let nine: Vec<&[u8]> = vec![&before; 9];
    assert_eq!(
        run(&mut t, CC_POLICY_OR, &[sess], &[], &tpml_digest(&nine)),
        p(FMT1_SIZE, 1)
    );
    // Eight are fine.
    let eight: Vec<&[u8]> = vec![&before; 8];
    ok(&mut t, CC_POLICY_OR, &[sess], &[], &tpml_digest(&eight));
}

// ---------------------------------------------------------------------------------------
// (5) PolicyNV.

const NV_OPS: u32 = 0x0150_0016;

fn policy_nv_params(operand_b: &[u8], offset: u16, op: u16) -> Vec<u8> {
    let mut v = b2(operand_b);
    v.extend_from_slice(&offset.to_be_bytes());
    v.extend_from_slice(&op.to_be_bytes());
    v
}

fn policy_nv(t: &mut Tpm, auth: u32, index: u32, sess: u32, prm: &[u8]) -> u32 {
    run(t, CC_POLICY_NV, &[auth, index, sess], &[pw(b"")], prm)
}

#[test]
fn policy_nv_digests_match_swtpm() {
    let mut t = started();
    // tpm2_nvdefine -C o -s 8 -a "ownerread|ownerwrite|authread|authwrite|no_da" 0x1500016
    let attrs = NV_OWNERREAD | NV_OWNERWRITE | NV_AUTHREAD | NV_AUTHWRITE | NV_NO_DA;
    define_nv(&mut t, NV_OPS, attrs, b"", &[], 8);
    let five = [0, 0, 0, 0, 0, 0, 0, 5];
    // Trial session, index unwritten: tpm2_policynv -C o -i (00..05) 0x1500016 ugt
    let (sess, _) = start(&mut t, TRIAL, SHA256);
    assert_eq!(
        policy_nv(&mut t, OWNER, NV_OPS, sess, &policy_nv_params(&five, 0, 3)),
        0
    );
    let unwritten = digest(&mut t, sess);
    assert_eq!(
        hex::encode(&unwritten),
        "b98b02d5ac6947d8e8d3d79ca236f91f19b6016b486b9b43e8f4c3951931c4bf"
    );
    // The definition: H(0 || TPM_CC_PolicyNV || H(operandB || offset || operation) || name).
    let name = nv_name(&mut t, NV_OPS);
    let args = sha256(&[&five, &[0, 0], &[0, 3]]);
    assert_eq!(
        unwritten,
        sha256(&[&[0; 32], &CC_POLICY_NV.to_be_bytes(), &args, &name])
    );
    // Written with 9 (the Name now has TPMA_NV_WRITTEN), policy sessions:
    nv_write_owner(&mut t, NV_OPS, &[0, 0, 0, 0, 0, 0, 0, 9]);
    let (sess, _) = start(&mut t, POLICY, SHA256);
    assert_eq!(
        policy_nv(&mut t, OWNER, NV_OPS, sess, &policy_nv_params(&five, 0, 3)),
        0
    );
    assert_eq!(
        hex::encode(digest(&mut t, sess)),
        "977a9f695f90eb2d3fb84dcfc43e9ba91fcbdf3c69917a6e9e968508c61e9b16"
    );
    // tpm2_policynv -C o -i (00 01) --offset 6 0x1500016 bs
    let (sess, _) = start(&mut t, POLICY, SHA256);
    assert_eq!(
        policy_nv(
            &mut t,
            OWNER,
            NV_OPS,
            sess,
            &policy_nv_params(&[0, 1], 6, 10)
        ),
        0
    );
    assert_eq!(
        hex::encode(digest(&mut t, sess)),
        "6f9c46b8656f6120623a2f004ff705ef70d9e7644ba51e48e260904f49b6df4c"
    );
    // tpm2_policynv ... eq: swtpm answers TPM_RC_POLICY (0x126).
    let (sess, _) = start(&mut t, POLICY, SHA256);
    assert_eq!(
        policy_nv(&mut t, OWNER, NV_OPS, sess, &policy_nv_params(&five, 0, 0)),
        RC_POLICY
    );
}

#[test]
fn policy_nv_comparison_operators() {
    let mut t = started();
    let attrs = NV_OWNERREAD | NV_OWNERWRITE | NV_AUTHREAD | NV_AUTHWRITE | NV_NO_DA;
    define_nv(&mut t, NV_OPS, attrs, b"", &[], 8);
    // A = 0x0000_0009 at offset 0 and 0xFFFF_FFFE (-2 signed) at offset 4.
    nv_write_owner(&mut t, NV_OPS, &[0, 0, 0, 9, 0xFF, 0xFF, 0xFF, 0xFE]);
    let nine = [0u8, 0, 0, 9];
    let (eq, neq, sgt, ugt, slt, ult, sge, uge, sle, ule, bs, bc) =
        (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11);
    // (operation, offset, operandB, holds)
    let cases: &[(u16, u16, [u8; 4], bool)] = &[
        (eq, 0, nine, true),
        (eq, 0, [0, 0, 0, 8], false),
        (neq, 0, [0, 0, 0, 8], true),
        (neq, 0, nine, false),
        (ugt, 0, [0, 0, 0, 8], true),
        (ugt, 0, nine, false),
        (sgt, 0, [0xFF, 0, 0, 0], true), // 9 > negative
        (ugt, 0, [0xFF, 0, 0, 0], false),
        (ult, 0, [0, 0, 0, 10], true),
        (ult, 0, nine, false),
        (slt, 4, [0, 0, 0, 0], true), // -2 < 0
        (ult, 4, [0, 0, 0, 0], false),
        (slt, 4, [0xFF, 0xFF, 0xFF, 0xFF], true), // -2 < -1
        (sgt, 4, [0xFF, 0xFF, 0xFF, 0xFD], true), // -2 > -3
        (uge, 0, nine, true),
        (uge, 0, [0, 0, 0, 10], false),
        (sge, 4, [0xFF, 0xFF, 0xFF, 0xFE], true),
        (sge, 4, [0, 0, 0, 1], false),
        (ule, 0, nine, true),
        (ule, 0, [0, 0, 0, 8], false),
        (sle, 4, [0, 0, 0, 0], true),
        (sle, 0, [0xFF, 0xFF, 0xFF, 0xFF], false),
        (bs, 0, [0, 0, 0, 8], true), // 0b1001 has bit 3
        (bs, 0, [0, 0, 0, 6], false),
        (bc, 0, [0, 0, 0, 6], true),
        (bc, 0, [0, 0, 0, 1], false),
    ];
    let name = nv_name(&mut t, NV_OPS);
    for (op, offset, b, holds) in cases {
        let (sess, _) = start(&mut t, POLICY, SHA256);
        let r = policy_nv(
            &mut t,
            NV_OPS,
            NV_OPS,
            sess,
            &policy_nv_params(b, *offset, *op),
        );
        if *holds {
            assert_eq!(r, 0, "op {op} offset {offset} b {b:?}");
            let args = sha256(&[b, &offset.to_be_bytes(), &op.to_be_bytes()]);
            assert_eq!(
                digest(&mut t, sess),
                sha256(&[&[0; 32], &CC_POLICY_NV.to_be_bytes(), &args, &name])
            );
        } else {
            assert_eq!(r, RC_POLICY, "op {op} offset {offset} b {b:?}");
            assert_eq!(digest(&mut t, sess), vec![0; 32]);
        }
        let flush = cmd(0x165, &[], &[], &sess.to_be_bytes());
        assert_eq!(rc(&t.execute(0, &flush)), 0);
    }
}

#[test]
fn policy_nv_access_checks_and_ranges() {
    let mut t = started();
    let attrs = NV_OWNERREAD | NV_OWNERWRITE | NV_AUTHREAD | NV_NO_DA;
    define_nv(&mut t, NV_OPS, attrs, b"", &[], 8);
    let (sess, _) = start(&mut t, POLICY, SHA256);
    let prm = policy_nv_params(&[0; 4], 0, 0);
    // Not written yet.
    assert_eq!(
        policy_nv(&mut t, OWNER, NV_OPS, sess, &prm),
        RC_NV_UNINITIALIZED
    );
    // A trial session checks nothing.
    let (trial_sess, _) = start(&mut t, TRIAL, SHA256);
    assert_eq!(policy_nv(&mut t, OWNER, NV_OPS, trial_sess, &prm), 0);
    nv_write_owner(&mut t, NV_OPS, &[0; 8]);
    assert_eq!(policy_nv(&mut t, OWNER, NV_OPS, sess, &prm), 0);
    // The platform may not read this index (no PPREAD).
    const PLATFORM: u32 = 0x4000_000C;
    assert_eq!(
        policy_nv(&mut t, PLATFORM, NV_OPS, sess, &prm),
        RC_NV_AUTHORIZATION
    );
    // offset beyond the data: TPM_RC_VALUE on parameter 2; operandB past the end: SIZE on 1.
    assert_eq!(
        policy_nv(
            &mut t,
            OWNER,
            NV_OPS,
            sess,
            &policy_nv_params(&[0; 1], 9, 0)
        ),
        p(FMT1_VALUE, 2)
    );
    assert_eq!(
        policy_nv(
            &mut t,
            OWNER,
            NV_OPS,
            sess,
            &policy_nv_params(&[0; 5], 4, 0)
        ),
        p(FMT1_SIZE, 1)
    );
    // offset == size with an empty operand compares nothing: true.
    assert_eq!(
        policy_nv(&mut t, OWNER, NV_OPS, sess, &policy_nv_params(&[], 8, 0)),
        0
    );
    // An operation that is not a TPM_EO: TPM_RC_VALUE on parameter 3.
    assert_eq!(
        policy_nv(
            &mut t,
            OWNER,
            NV_OPS,
            sess,
            &policy_nv_params(&[0; 4], 0, 12)
        ),
        p(FMT1_VALUE, 3)
    );
    // No such index: TPM_RC_HANDLE on handle 2, trial or not.
    assert_eq!(
        policy_nv(&mut t, OWNER, 0x0150_0999, sess, &prm),
        h(FMT1_HANDLE, 2)
    );
    assert_eq!(
        policy_nv(&mut t, OWNER, 0x0150_0999, trial_sess, &prm),
        h(FMT1_HANDLE, 2)
    );
}

// ---------------------------------------------------------------------------------------
// PolicySecret: nonces, expiration and tickets.

#[test]
fn policy_secret_nonce_expiration_and_tickets() {
    let mut t = started();
    let (sess, nonce) = start(&mut t, POLICY, SHA256);
    let secret = |t: &mut Tpm, sess: u32, prm: &[u8]| {
        t.execute(0, &cmd(CC_POLICY_SECRET, &[OWNER, sess], &[pw(b"")], prm))
    };
    // A nonce that is not the session's: TPM_RC_NONCE on parameter 1.
    let resp = secret(&mut t, sess, &secret_params(&[1; 32], &[], &[], 0));
    assert_eq!(rc(&resp), p(FMT1_NONCE, 1));
    // A cpHashA of the wrong size: TPM_RC_SIZE on parameter 2.
    let resp = secret(&mut t, sess, &secret_params(&nonce, &[1; 20], &[], 0));
    assert_eq!(rc(&resp), p(FMT1_SIZE, 2));
    // A positive expiration: no ticket.
    let resp = secret(&mut t, sess, &secret_params(&nonce, &[], &[], 100));
    assert_eq!(hex::encode(out_params(&resp, 0)), "00008023400000070000");
    // A negative expiration with the session's nonce: an 8-byte timeout and a ticket from
    // the owner hierarchy.
    let resp = secret(&mut t, sess, &secret_params(&nonce, &[], b"ref", -100));
    let out = out_params(&resp, 0);
    let mut at = 0;
    let timeout = take_b2(&out, &mut at);
    assert_eq!(timeout.len(), 8);
    assert_eq!(
        timeout[0] & 0x80,
        0,
        "bound to the session: survives no reset flag"
    );
    assert_eq!(&out[at..at + 6], &[0x80, 0x23, 0x40, 0, 0, 1]);
    at += 6;
    assert_eq!(take_b2(&out, &mut at).len(), 32);
    assert_eq!(at, out.len());
    // Without a nonce: the timeout carries the expires-on-reset flag.
    let resp = secret(&mut t, sess, &secret_params(&[], &[], &[], -100));
    let out = out_params(&resp, 0);
    assert_eq!(&out[..2], &[0, 8]);
    assert_eq!(out[2] & 0x80, 0x80);
    // Trial sessions check nothing and return NULL tickets.
    let (trial_sess, _) = start(&mut t, TRIAL, SHA256);
    let resp = secret(&mut t, trial_sess, &secret_params(&[1; 32], &[], &[], -100));
    assert_eq!(hex::encode(out_params(&resp, 0)), "00008023400000070000");
    // PolicySecret needs the entity's authorization (the engine checks it first).
    let resp = t.execute(
        0,
        &cmd(
            CC_POLICY_SECRET,
            &[OWNER, sess],
            &[],
            &secret_params(&[], &[], &[], 0),
        ),
    );
    assert_eq!(rc(&resp), 0x125); // TPM_RC_AUTH_MISSING
}

// ---------------------------------------------------------------------------------------
// PolicyRestart, PolicyGetDigest, session handles.

#[test]
fn policy_restart_and_session_handles() {
    let mut t = started();
    let (sess, _) = start(&mut t, POLICY, SHA1);
    assert_eq!(digest(&mut t, sess), vec![0; 20]);
    ok(&mut t, CC_POLICY_PASSWORD, &[sess], &[], &[]);
    assert_eq!(command_code(&mut t, sess, CC_NV_READ), 0);
    assert_ne!(digest(&mut t, sess), vec![0; 20]);
    ok(&mut t, CC_POLICY_RESTART, &[sess], &[], &[]);
    assert_eq!(digest(&mut t, sess), vec![0; 20]);
    // The recorded command code is gone too: another code is accepted.
    assert_eq!(command_code(&mut t, sess, CC_NV_READ_LOCK), 0);
    // A policy session handle that is not loaded: TPM_RC_REFERENCE_H0 (+ its position).
    assert_eq!(
        run(&mut t, CC_POLICY_GET_DIGEST, &[0x0300_0030], &[], &[]),
        RC_REFERENCE_H0
    );
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_SECRET,
            &[OWNER, 0x0300_0030],
            &[pw(b"")],
            &secret_params(&[], &[], &[], 0)
        ),
        RC_REFERENCE_H0 + 1
    );
    // An HMAC session is no policy session: TPM_RC_VALUE on handle 1.
    let (hmac_sess, _) = start(&mut t, 0x00, SHA256);
    assert_eq!(
        run(&mut t, CC_POLICY_GET_DIGEST, &[hmac_sess], &[], &[]),
        h(FMT1_VALUE, 1)
    );
    // Parameters where none belong: TPM_RC_SIZE.
    assert_eq!(run(&mut t, CC_POLICY_RESTART, &[sess], &[], &[0]), RC_SIZE);
}

// ---------------------------------------------------------------------------------------
// PolicyAuthorize.

#[test]
fn policy_authorize_checks_its_parameters_and_ticket() {
    let mut t = started();
    let mut key_name = SHA256.to_be_bytes().to_vec();
    key_name.extend_from_slice(&[b'x'; 32]);
    let params = |approved: &[u8], name: &[u8], ticket: &[u8]| {
        let mut v = b2(approved);
        v.extend_from_slice(&b2(b""));
        v.extend_from_slice(&b2(name));
        v.extend_from_slice(ticket);
        v
    };
    let null_ticket = [0x80, 0x22, 0x40, 0, 0, 7, 0, 0];
    let (sess, _) = start(&mut t, POLICY, SHA256);
    // approvedPolicy is not the session's digest: TPM_RC_VALUE on parameter 1.
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_AUTHORIZE,
            &[sess],
            &[],
            &params(&[1; 32], &key_name, &null_ticket)
        ),
        p(FMT1_VALUE, 1)
    );
    // A NULL ticket, or a made-up one, does not verify: TPM_RC_VALUE on parameter 4.
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_AUTHORIZE,
            &[sess],
            &[],
            &params(&[0; 32], &key_name, &null_ticket)
        ),
        p(FMT1_VALUE, 4)
    );
    let mut forged = vec![0x80, 0x22, 0x40, 0, 0, 1];
    forged.extend_from_slice(&b2(&[0x55; 32]));
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_AUTHORIZE,
            &[sess],
            &[],
            &params(&[0; 32], &key_name, &forged)
        ),
        p(FMT1_VALUE, 4)
    );
    // keySign with an unknown or mis-sized hash: TPM_RC_HASH / TPM_RC_SIZE on parameter 3.
    let mut bad_alg = key_name.clone();
    bad_alg[1] = 0x99;
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_AUTHORIZE,
            &[sess],
            &[],
            &params(&[0; 32], &bad_alg, &null_ticket)
        ),
        p(FMT1_HASH, 3)
    );
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_AUTHORIZE,
            &[sess],
            &[],
            &params(&[0; 32], &key_name[..33], &null_ticket)
        ),
        p(FMT1_SIZE, 3)
    );
    // A ticket of the wrong type or hierarchy: TPM_RC_TAG / TPM_RC_VALUE on parameter 4.
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_AUTHORIZE,
            &[sess],
            &[],
            &params(&[0; 32], &key_name, &[0x80, 0x21, 0x40, 0, 0, 7, 0, 0])
        ),
        p(FMT1_TAG, 4)
    );
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_AUTHORIZE,
            &[sess],
            &[],
            &params(&[0; 32], &key_name, &[0x80, 0x22, 0x40, 0, 0, 2, 0, 0])
        ),
        p(FMT1_VALUE, 4)
    );
    assert_eq!(digest(&mut t, sess), vec![0; 32], "failures change nothing");
}

// ---------------------------------------------------------------------------------------
// PolicySigned with an ECDSA P-256 key loaded by LoadExternal.

/// TPMT_PUBLIC of an ECDSA-SHA256 P-256 signing key with this public point.
fn ecc_public(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut v = 0x0023u16.to_be_bytes().to_vec(); // TPM_ALG_ECC
    v.extend_from_slice(&SHA256.to_be_bytes());
    // sign | userWithAuth | noDA
    v.extend_from_slice(&((1u32 << 18) | (1 << 6) | (1 << 10)).to_be_bytes());
    v.extend_from_slice(&b2(&[]));
    v.extend_from_slice(&0x0010u16.to_be_bytes()); // symmetric: NULL
    v.extend_from_slice(&0x0018u16.to_be_bytes()); // scheme: ECDSA
    v.extend_from_slice(&SHA256.to_be_bytes());
    v.extend_from_slice(&0x0003u16.to_be_bytes()); // NIST P-256
    v.extend_from_slice(&0x0010u16.to_be_bytes()); // kdf: NULL
    v.extend_from_slice(&b2(x));
    v.extend_from_slice(&b2(y));
    v
}

fn signed_params(nonce: &[u8], policy_ref: &[u8], sig: &[u8]) -> Vec<u8> {
    let mut v = secret_params(nonce, &[], policy_ref, 0);
    v.extend_from_slice(sig);
    v
}

/// Load the public part of a fixed P-256 key with LoadExternal in the owner hierarchy:
/// returns its handle, its Name (checked against nameAlg || H(TPMT_PUBLIC)) and the key.
fn load_ecc_key(t: &mut Tpm) -> (u32, Vec<u8>, p256::ecdsa::SigningKey) {
    let key = p256::ecdsa::SigningKey::from_bytes(&[0x42u8; 32].into()).unwrap();
    let point = key.verifying_key().to_encoded_point(false);
    let public = ecc_public(point.x().unwrap(), point.y().unwrap());
    let mut prm = b2(&[]); // no sensitive area
    prm.extend_from_slice(&b2(&public));
    prm.extend_from_slice(&OWNER.to_be_bytes());
    let resp = t.execute(0, &cmd(CC_LOAD_EXTERNAL, &[], &[], &prm));
    let out = out_params(&resp, 1);
    let handle = u32::from_be_bytes(resp[10..14].try_into().unwrap());
    let mut at = 0;
    let name = take_b2(&out, &mut at);
    // Part 1, 16: Name = nameAlg || H(TPMT_PUBLIC).
    let mut expected_name = SHA256.to_be_bytes().to_vec();
    expected_name.extend_from_slice(&sha256(&[&public]));
    assert_eq!(name, expected_name);
    (handle, name, key)
}

/// TPMT_SIGNATURE: ECDSA with SHA-256 over a digest.
fn ecdsa_sig(key: &p256::ecdsa::SigningKey, digest: &[u8]) -> Vec<u8> {
    let sig: p256::ecdsa::Signature = key.sign_prehash(digest).unwrap();
    let (r, s_) = sig.split_bytes();
    let mut v = 0x0018u16.to_be_bytes().to_vec();
    v.extend_from_slice(&SHA256.to_be_bytes());
    v.extend_from_slice(&b2(&r));
    v.extend_from_slice(&b2(&s_));
    v
}

#[test]
fn policy_signed_with_an_external_ecdsa_key() {
    let mut t = started();
    let (handle, name, key) = load_ecc_key(&mut t);

    // The policy, from a trial session (no signature needed: TPM_ALG_NULL).
    let (trial_sess, _) = start(&mut t, TRIAL, SHA256);
    ok(
        &mut t,
        CC_POLICY_SIGNED,
        &[handle, trial_sess],
        &[],
        &signed_params(&[], b"ref", &0x0010u16.to_be_bytes()),
    );
    let policy = digest(&mut t, trial_sess);
    let inner = sha256(&[&[0; 32], &CC_POLICY_SIGNED.to_be_bytes(), &name]);
    assert_eq!(policy, sha256(&[&inner, b"ref"]));
    policy_index(&mut t, &policy, b"");

    // aHash := H(nonceTPM || expiration || cpHashA || policyRef), signed with ECDSA.
    let (sess, nonce) = start(&mut t, POLICY, SHA256);
    let a_hash = sha256(&[&nonce, &0i32.to_be_bytes(), b"", b"ref"]);
    let good = ecdsa_sig(&key, &a_hash);
    // A signature over something else: TPM_RC_SIGNATURE on parameter 5.
    let bad = ecdsa_sig(&key, &sha256(&[b"other"]));
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_SIGNED,
            &[handle, sess],
            &[],
            &signed_params(&nonce, b"ref", &bad)
        ),
        p(FMT1_SIGNATURE, 5)
    );
    // The NULL signature authorizes nothing in a real session: TPM_RC_SCHEME on parameter 5.
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_SIGNED,
            &[handle, sess],
            &[],
            &signed_params(&nonce, b"ref", &0x0010u16.to_be_bytes())
        ),
        p(FMT1_SCHEME, 5)
    );
    ok(
        &mut t,
        CC_POLICY_SIGNED,
        &[handle, sess],
        &[],
        &signed_params(&nonce, b"ref", &good),
    );
    assert_eq!(digest(&mut t, sess), policy);
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"")).unwrap(),
        b"policy!!"
    );
    // No object at the handle: TPM_RC_HANDLE on handle 1.
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_SIGNED,
            &[0x80FF_FFFF, sess],
            &[],
            &signed_params(&nonce, b"ref", &good)
        ),
        h(FMT1_HANDLE, 1)
    );
}

#[test]
fn policy_authorize_with_a_verify_signature_ticket() {
    let mut t = started();
    let (handle, name, key) = load_ecc_key(&mut t);
    let approved = trial(&mut t, SHA256, "commandcode-nvread");
    let policy_ref = b"release 7";
    // The authority signs aHash := H(approvedPolicy || policyRef); VerifySignature turns
    // the signature into a TPMT_TK_VERIFIED.
    let verify = |t: &mut Tpm, digest: &[u8]| {
        let mut prm = b2(digest);
        prm.extend_from_slice(&ecdsa_sig(&key, digest));
        out_params(&t.execute(0, &cmd(0x177, &[handle], &[], &prm)), 0)
    };
    let ticket = verify(&mut t, &sha256(&[&approved, policy_ref]));
    assert_eq!(&ticket[..6], &[0x80, 0x22, 0x40, 0, 0, 1]);

    // The index's policy: PolicyAuthorize(keyName, policyRef), from a trial session.
    let authorize = |approved: &[u8], ticket: &[u8]| {
        let mut v = b2(approved);
        v.extend_from_slice(&b2(policy_ref));
        v.extend_from_slice(&b2(&name));
        v.extend_from_slice(ticket);
        v
    };
    let (trial_sess, _) = start(&mut t, TRIAL, SHA256);
    ok(
        &mut t,
        CC_POLICY_AUTHORIZE,
        &[trial_sess],
        &[],
        &authorize(&[0; 32], &ticket),
    );
    let policy = digest(&mut t, trial_sess);
    let inner = sha256(&[&[0; 32], &CC_POLICY_AUTHORIZE.to_be_bytes(), &name]);
    assert_eq!(policy, sha256(&[&inner, policy_ref]));
    policy_index(&mut t, &policy, b"");

    // Satisfy the approved policy, then PolicyAuthorize: the NV read is authorized.
    let (sess, _) = start(&mut t, POLICY, SHA256);
    assert_eq!(command_code(&mut t, sess, CC_NV_READ), 0);
    ok(
        &mut t,
        CC_POLICY_AUTHORIZE,
        &[sess],
        &[],
        &authorize(&approved, &ticket),
    );
    assert_eq!(digest(&mut t, sess), policy);
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"")).unwrap(),
        b"policy!!"
    );
    // A ticket for another policy does not authorize this one: TPM_RC_VALUE on parameter 4.
    let other = verify(&mut t, &sha256(&[&[7; 32], policy_ref]));
    assert_eq!(command_code(&mut t, sess, CC_NV_READ), 0);
    assert_eq!(
        run(
            &mut t,
            CC_POLICY_AUTHORIZE,
            &[sess],
            &[],
            &authorize(&approved, &other)
        ),
        p(FMT1_VALUE, 4)
    );
}

// ---------------------------------------------------------------------------------------
// (6) Malformed parameters.

/// What, command code, handles, with a password session, parameters, expected code.
type Case = (&'static str, u32, Vec<u32>, bool, Vec<u8>, u32);

#[test]
fn malformed_parameters_get_numbered_format_one_errors() {
    let mut t = started();
    let (sess, nonce) = start(&mut t, POLICY, SHA256);
    let cases: Vec<Case> = vec![
        (
            "CommandCode short",
            CC_POLICY_COMMAND_CODE,
            vec![sess],
            false,
            vec![0, 0],
            p(FMT1_INSUFFICIENT, 1),
        ),
        (
            "CommandCode trailing",
            CC_POLICY_COMMAND_CODE,
            vec![sess],
            false,
            vec![0, 0, 1, 0x4E, 0],
            RC_SIZE,
        ),
        (
            "PCR digest too big",
            CC_POLICY_PCR,
            vec![sess],
            false,
            {
                let mut v = vec![0, 65];
                v.extend_from_slice(&[0; 65]);
                v.extend_from_slice(&pcr_selection(&[(SHA256, &[0])]));
                v
            },
            p(FMT1_SIZE, 1),
        ),
        (
            "PCR sizeofSelect 4",
            CC_POLICY_PCR,
            vec![sess],
            false,
            {
                let mut v = b2(&[]);
                v.extend_from_slice(&[0, 0, 0, 1, 0, 0x0B, 4, 1, 0, 0, 0]);
                v
            },
            p(FMT1_VALUE, 2),
        ),
        (
            "PCR five banks",
            CC_POLICY_PCR,
            vec![sess],
            false,
            {
                let mut v = b2(&[]);
                v.extend_from_slice(&[0, 0, 0, 5]);
                v
            },
            p(FMT1_SIZE, 2),
        ),
        (
            "PCR unknown bank",
            CC_POLICY_PCR,
            vec![sess],
            false,
            policy_pcr_params(&[], &[(0x0099, &[0])]),
            p(FMT1_HASH, 2),
        ),
        (
            "PCR truncated",
            CC_POLICY_PCR,
            vec![sess],
            false,
            {
                let mut v = b2(&[]);
                v.extend_from_slice(&[0, 0, 0, 1, 0, 0x0B, 3, 1]);
                v
            },
            p(FMT1_INSUFFICIENT, 2),
        ),
        (
            "OR truncated",
            CC_POLICY_OR,
            vec![sess],
            false,
            vec![0, 0, 0, 2, 0, 32, 1],
            p(FMT1_INSUFFICIENT, 1),
        ),
        (
            "OR digest too big",
            CC_POLICY_OR,
            vec![sess],
            false,
            {
                let mut v = vec![0, 0, 0, 2, 0, 65];
                v.extend_from_slice(&[0; 65]);
                v
            },
            p(FMT1_SIZE, 1),
        ),
        (
            "CpHash empty",
            CC_POLICY_CP_HASH,
            vec![sess],
            false,
            b2(&[]),
            p(FMT1_SIZE, 1),
        ),
        (
            "NameHash 31",
            CC_POLICY_NAME_HASH,
            vec![sess],
            false,
            b2(&[0; 31]),
            p(FMT1_SIZE, 1),
        ),
        (
            "Secret no expiration",
            CC_POLICY_SECRET,
            vec![OWNER, sess],
            true,
            {
                let mut v = b2(&nonce);
                v.extend_from_slice(&b2(&[]));
                v.extend_from_slice(&b2(&[]));
                v
            },
            p(FMT1_INSUFFICIENT, 4),
        ),
        (
            "Secret nonce too big",
            CC_POLICY_SECRET,
            vec![OWNER, sess],
            true,
            {
                let mut v = vec![0, 65];
                v.extend_from_slice(&[0; 65]);
                v
            },
            p(FMT1_SIZE, 1),
        ),
        (
            "NV op 12",
            CC_POLICY_NV,
            vec![OWNER, NV_OPS, sess],
            true,
            policy_nv_params(&[], 0, 12),
            p(FMT1_VALUE, 3),
        ),
        (
            "NV no operation",
            CC_POLICY_NV,
            vec![OWNER, NV_OPS, sess],
            true,
            vec![0, 0, 0, 0],
            p(FMT1_INSUFFICIENT, 3),
        ),
        (
            "Signed unknown scheme",
            CC_POLICY_SIGNED,
            vec![0x80FF_FFFF, sess],
            false,
            signed_params(&nonce, b"", &[0, 0x99, 0, 0x0B]),
            p(FMT1_SCHEME, 5),
        ),
        (
            "Signed unknown hash",
            CC_POLICY_SIGNED,
            vec![0x80FF_FFFF, sess],
            false,
            signed_params(&nonce, b"", &[0, 0x18, 0, 0x99]),
            p(FMT1_HASH, 5),
        ),
        (
            "Authorize no ticket",
            CC_POLICY_AUTHORIZE,
            vec![sess],
            false,
            {
                let mut v = b2(&[0; 32]);
                v.extend_from_slice(&b2(&[]));
                v.extend_from_slice(&b2(&[0, 0x0B]));
                v
            },
            p(FMT1_INSUFFICIENT, 4),
        ),
    ];
    for (what, code, handles, auth, prm, want) in cases {
        let auths = if auth { vec![pw(b"")] } else { vec![] };
        let resp = t.execute(0, &cmd(code, &handles, &auths, &prm));
        assert_eq!(rc(&resp), want, "{what}: got {:#x}", rc(&resp));
        assert_eq!(resp.len(), 10, "{what}");
    }
    assert_eq!(
        digest(&mut t, sess),
        vec![0; 32],
        "no failure changed the digest"
    );
}

const POLICY_COMMANDS: [u32; 13] = [
    CC_POLICY_NV,
    CC_POLICY_SECRET,
    CC_POLICY_SIGNED,
    CC_POLICY_AUTHORIZE,
    CC_POLICY_AUTH_VALUE,
    CC_POLICY_COMMAND_CODE,
    CC_POLICY_CP_HASH,
    CC_POLICY_NAME_HASH,
    CC_POLICY_OR,
    CC_POLICY_PCR,
    CC_POLICY_RESTART,
    CC_POLICY_GET_DIGEST,
    CC_POLICY_PASSWORD,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any parameter bytes, on a policy or trial session, give a well-formed response.
    #[test]
    fn random_parameters_never_panic(
        which in 0usize..POLICY_COMMANDS.len(),
        kind in prop_oneof![Just(POLICY), Just(TRIAL)],
        alg in prop_oneof![Just(SHA1), Just(SHA256), Just(SHA384)],
        prm in proptest::collection::vec(any::<u8>(), 0..160),
    ) {
        let mut t = started();
        define_nv(&mut t, NV_OPS, NV_OWNERREAD | NV_OWNERWRITE | NV_NO_DA, b"", &[], 8);
        nv_write_owner(&mut t, NV_OPS, &[1; 8]);
        let (sess, _) = start(&mut t, kind, alg);
        let code = POLICY_COMMANDS[which];
        let (handles, auth) = match code {
            CC_POLICY_NV => (vec![OWNER, NV_OPS, sess], true),
            CC_POLICY_SECRET => (vec![OWNER, sess], true),
            CC_POLICY_SIGNED => (vec![0x8000_0000, sess], false),
            _ => (vec![sess], false),
        };
        let auths = if auth { vec![pw(b"")] } else { vec![] };
        let resp = t.execute(0, &cmd(code, &handles, &auths, &prm));
        prop_assert!(resp.len() >= 10);
        prop_assert_eq!(u32::from_be_bytes(resp[2..6].try_into().unwrap()) as usize, resp.len());
        // The session survives and still answers.
        let d = digest(&mut t, sess);
        prop_assert!(d.len() == 20 || d.len() == 32 || d.len() == 48);
    }
}

/// An index readable only through its policy (TPMA_NV_POLICYREAD without AUTHREAD). Needs
/// the engine and NV_Read to tell policy sessions from password/HMAC ones (Part 1, 19.7.4:
/// POLICYREAD admits policy sessions; AUTHREAD password and HMAC sessions).
#[test]
fn a_policy_read_only_index_reads_through_its_policy() {
    let mut t = started();
    let policy = trial(&mut t, SHA256, "commandcode-nvread");
    define_nv(
        &mut t,
        INDEX,
        NV_OWNERWRITE | NV_POLICYREAD | NV_NO_DA,
        b"",
        &policy,
        8,
    );
    nv_write_owner(&mut t, INDEX, b"policy!!");
    let (sess, _) = start(&mut t, POLICY, SHA256);
    assert_eq!(command_code(&mut t, sess, CC_NV_READ), 0);
    assert_eq!(
        nv_read(&mut t, INDEX, 8, ps(sess, b"")).unwrap(),
        b"policy!!"
    );
    // The authValue may not read it: TPM_RC_AUTH_UNAVAILABLE.
    assert_eq!(nv_read(&mut t, INDEX, 8, pw(b"")), Err(0x12F));
}
