//! The state at rest encrypted with `--key file=PATH`, through `trustlaunch vtpm socket`:
//! a round trip with the right key, the plaintext never on disk, a wrong key, no key
//! and a tampered file refused with the file untouched, `--restore-previous`, the key
//! file's permissions, and the upgrade of a plaintext state.

mod raw_tpm;
use raw_tpm::*;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A value that cannot appear in the file by chance.
const SECRET: u64 = u64::from_be_bytes(*b"S3CR3T!!");

fn write_key(path: &Path, bytes: &[u8], mode: u32) {
    std::fs::write(path, bytes).expect("key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn key_args(key: &Path) -> Vec<String> {
    vec!["--key".into(), format!("file={}", key.display())]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Define the index and write `values` in turn (one save each).
fn define_and_write(dir: &Path, extra: &[String], values: &[u64]) {
    let mut server = start_with(dir, extra);
    let mut s = server.connect(dir);
    assert_eq!(rc(&transact(&mut s, &nv_define()).expect("define")), 0);
    for v in values {
        assert_eq!(rc(&transact(&mut s, &nv_write(*v)).expect("write")), 0);
    }
    drop(s);
    server.kill();
}

fn read_value(dir: &Path, extra: &[String]) -> u64 {
    let mut server = start_with(dir, extra);
    let mut s = server.connect(dir);
    let rsp = transact(&mut s, &nv_read()).unwrap_or_else(|e| {
        let _ = server.child.kill();
        let _ = server.child.wait();
        let err = std::fs::read_to_string(dir.with_extension("stderr")).unwrap_or_default();
        panic!("NV_Read: {e}; server stderr: {err}")
    });
    assert_eq!(rc(&rsp), 0, "NV_Read");
    drop(s);
    server.kill();
    u64::from_be_bytes(rsp[16..24].try_into().expect("8 bytes"))
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    key: PathBuf,
    tmp: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("state");
    std::fs::create_dir(&dir).expect("mkdir");
    let key = tmp.path().join("key");
    let hex: String = (0..32).map(|i| format!("{:02x}", i * 5 + 3)).collect();
    write_key(&key, format!("{hex}\n").as_bytes(), 0o600);
    Setup {
        dir,
        key,
        tmp: tmp.path().to_path_buf(),
        _tmp: tmp,
    }
}

#[test]
fn encrypted_state_round_trip_and_refusals() {
    let t = setup();
    let state = t.dir.join("tpm2-state.bin");
    let prev = t.dir.join("tpm2-state.bin.prev");
    define_and_write(&t.dir, &key_args(&t.key), &[SECRET - 1, SECRET]);

    // Round trip with the right key (hex key file).
    assert_eq!(read_value(&t.dir, &key_args(&t.key)), SECRET);
    // The value is not on disk in the clear, in the state file or its previous copy.
    for path in [&state, &prev] {
        let bytes = std::fs::read(path).expect("read");
        assert_eq!(bytes[12..16], [0, 0, 0, 1], "encrypted flag");
        assert!(
            !contains(&bytes, &SECRET.to_be_bytes()),
            "{}",
            path.display()
        );
    }

    // Wrong key: refused, file untouched.
    let before = std::fs::read(&state).expect("read");
    let wrong = t.tmp.join("wrong");
    write_key(&wrong, &[0x11; 32], 0o600);
    let err = refused(&t.dir, &key_args(&wrong));
    assert!(
        err.contains("state does not decrypt with this key: wrong key or corrupt file"),
        "{err}"
    );
    // No key: refused, file untouched; also with --restore-previous (.prev is encrypted).
    let err = refused(&t.dir, &[]);
    assert!(err.contains("state is encrypted; no key given"), "{err}");
    let err = refused(&t.dir, &["--restore-previous".into()]);
    assert!(err.contains("state is encrypted; no key given"), "{err}");
    assert_eq!(std::fs::read(&state).expect("read"), before, "untouched");

    // Tampered ciphertext: refused, file untouched.
    let mut tampered = before.clone();
    let i = tampered.len() - 20;
    tampered[i] ^= 0x80;
    std::fs::write(&state, &tampered).expect("write");
    let err = refused(&t.dir, &key_args(&t.key));
    assert!(
        err.contains("corrupt") && err.contains("--restore-previous"),
        "{err}"
    );
    assert_eq!(std::fs::read(&state).expect("read"), tampered, "untouched");

    // Recovery: the state before the last save is restored. The last save was the
    // restart's TPM2_Startup (it counts a reset), so that state holds SECRET.
    let mut args = key_args(&t.key);
    args.push("--restore-previous".into());
    assert_eq!(read_value(&t.dir, &args), SECRET);
    assert_eq!(
        std::fs::read(t.dir.join("tpm2-state.bin.bad")).expect("bad"),
        tampered,
        "the bad file is kept aside"
    );
    // --restore-previous on a good state changes nothing.
    assert_eq!(read_value(&t.dir, &args), SECRET);
}

#[test]
fn plaintext_state_is_on_disk_in_the_clear_and_upgraded_only_on_request() {
    let t = setup();
    let state = t.dir.join("tpm2-state.bin");
    define_and_write(&t.dir, &[], &[SECRET]);
    // Without --key the value is visible: the check above is meaningful.
    assert!(contains(
        &std::fs::read(&state).expect("read"),
        &SECRET.to_be_bytes()
    ));
    let before = std::fs::read(&state).expect("read");
    let err = refused(&t.dir, &key_args(&t.key));
    assert!(err.contains("--encrypt-existing-state"), "{err}");
    assert_eq!(std::fs::read(&state).expect("read"), before, "untouched");

    let mut args = key_args(&t.key);
    args.push("--encrypt-existing-state".into());
    assert_eq!(read_value(&t.dir, &args), SECRET);
    for name in ["tpm2-state.bin", "tpm2-state.bin.prev"] {
        let bytes = std::fs::read(t.dir.join(name)).expect("read");
        assert_eq!(bytes[12..16], [0, 0, 0, 1], "{name} encrypted");
        assert!(!contains(&bytes, &SECRET.to_be_bytes()), "{name}");
    }
    assert_eq!(read_value(&t.dir, &key_args(&t.key)), SECRET);
}

#[test]
fn key_file_and_option_checks() {
    let t = setup();
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&t.key, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let err = refused(&t.dir, &key_args(&t.key));
        assert!(err.contains("chmod 600"), "{mode:o}: {err}");
    }
    std::fs::set_permissions(&t.key, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    for (opt, why) in [
        (
            format!("file={},mode=aes-256-cbc", t.key.display()),
            "aes-256-gcm",
        ),
        (format!("pwdfile={}", t.key.display()), "not supported"),
        (
            format!("file={},format=binary", t.key.display()),
            "32 bytes",
        ),
    ] {
        let err = refused(&t.dir, &["--key".into(), opt.clone()]);
        assert!(err.contains(why), "{opt}: {err}");
    }
    let err = refused(&t.dir, &["--encrypt-existing-state".into()]);
    assert!(err.contains("needs --key"), "{err}");
    // Nothing was created by the refusals.
    assert!(!t.dir.join("tpm2-state.bin").exists());
    // swtpm's spelling with mode=aes-256-gcm and format=hex is accepted.
    let args = vec![
        "--key".into(),
        format!("file={},format=hex,mode=aes-256-gcm", t.key.display()),
    ];
    define_and_write(&t.dir, &args, &[SECRET]);
    assert_eq!(read_value(&t.dir, &args), SECRET);
}
