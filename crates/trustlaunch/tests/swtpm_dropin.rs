//! The drop-in executables `swtpm` and `swtpm_setup`, run the way tpm2-tools' test harness,
//! QEMU and libvirt run swtpm's, and driven by real clients: tpm2-tools (tpm2-tss's swtpm
//! TCTI) on the data channel and swtpm's own `swtpm_ioctl` on the control channel.
//!
//! Independent truths: PCR values are recomputed with the sha1/sha2 crates; the feature
//! names we print are checked against those real swtpm prints; EK certificates are read
//! back with tpm2-tools and parsed with OpenSSL, their keys compared with the persistent
//! EKs' public areas.
//!
//! Each test runs its own servers on free loopback ports in its own temporary directories.

use sha2::Digest;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

mod ports;
use ports::{free_port_pair, random_u64};

const SWTPM: &str = env!("CARGO_BIN_EXE_swtpm");
const SWTPM_SETUP: &str = env!("CARGO_BIN_EXE_swtpm_setup");
const TRUSTLAUNCH: &str = env!("CARGO_BIN_EXE_trustlaunch");
/// Longest any one client command may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a server may take to write its pid file (all sockets bound).
const START_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temporary directory")
}

/// Run a command with a timeout and collect its output.
fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    // Drain both pipes on threads so a chatty command cannot block on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = match child.wait_timeout(TOOL_TIMEOUT) {
        Ok(Some(s)) => s,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {TOOL_TIMEOUT:?}");
        }
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

fn explain(what: &str, o: &Output) -> String {
    format!(
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn must(what: &str, o: Output) -> Output {
    assert!(o.status.success(), "{}", explain(what, &o));
    o
}

/// One `swtpm socket` process (ours, or the real one) on ports N (data) and N+1 (control).
struct Swtpm {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    _work: tempfile::TempDir,
}

impl Swtpm {
    /// `swtpm socket --tpm2 --server port=N --ctrl type=tcp,port=N+1 --seccomp action=none
    /// --flags not-need-init --tpmstate dir=D`, as tpm2-tools' test harness starts it.
    fn start(state: &Path) -> Swtpm {
        Swtpm::start_with(SWTPM, state, &["--flags", "not-need-init"])
    }

    /// As `start`, with `extra` instead of `--flags not-need-init`.
    fn start_with(exe: &str, state: &Path, extra: &[&str]) -> Swtpm {
        let work = tempdir("trustlaunch-dropin-run-");
        let log = work.path().join("swtpm.log");
        let pid = work.path().join("swtpm.pid");
        let mut last = String::new();
        for _ in 0..8 {
            let port = free_port_pair();
            let mut cmd = Command::new(exe);
            cmd.arg("socket")
                .arg("--tpm2")
                .args(["--server", &format!("port={port}")])
                .args(["--ctrl", &format!("type=tcp,port={}", port + 1)])
                .args(["--seccomp", "action=none"])
                .args(extra)
                .args(["--tpmstate", &format!("dir={}", state.display())])
                .args(["--pid", &format!("file={}", pid.display())])
                .args(["--log", &format!("file={},level=2", log.display())])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
            let deadline = Instant::now() + START_TIMEOUT;
            let started = loop {
                if pid.exists() {
                    break true;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break false;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            if started {
                return Swtpm {
                    child: Some(child),
                    port,
                    log,
                    _work: work,
                };
            }
            last = fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("{exe} socket did not start:\n{last}");
    }

    fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    fn server_log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A tpm2-tools command against this server.
    fn tool(&self, args: &[&str]) -> Output {
        run(Command::new(args[0])
            .args(&args[1..])
            .env("TPM2TOOLS_TCTI", self.tcti())
            .env_remove("TSS2_LOG"))
    }

    /// A tpm2-tools command that must succeed.
    fn must(&self, args: &[&str]) -> Output {
        let o = self.tool(args);
        assert!(
            o.status.success(),
            "{}\n--- server log ---\n{}",
            explain(&args.join(" "), &o),
            self.server_log()
        );
        o
    }

    /// swtpm's own control client against this server's control channel.
    fn ioctl(&self, args: &[&str]) -> Output {
        run(Command::new("swtpm_ioctl")
            .args(["--tcp", &format!("127.0.0.1:{}", self.port + 1)])
            .args(args))
    }

    fn must_ioctl(&self, args: &[&str]) -> Output {
        let o = self.ioctl(args);
        assert!(
            o.status.success(),
            "{}\n--- server log ---\n{}",
            explain(&format!("swtpm_ioctl {}", args.join(" ")), &o),
            self.server_log()
        );
        o
    }

    /// CMD_SHUTDOWN, then wait for the process to exit.
    fn shutdown(mut self) {
        self.must_ioctl(&["-s"]);
        let mut child = self.child.take().expect("child");
        match child.wait_timeout(Duration::from_secs(20)) {
            Ok(Some(status)) => assert!(status.success(), "exit status {status}"),
            _ => {
                let _ = child.kill();
                panic!("server did not exit after CMD_SHUTDOWN");
            }
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// PCR extend result: H(old || digest).
fn extend_sha256(old: &[u8], digest: &[u8]) -> Vec<u8> {
    let mut h = sha2::Sha256::new();
    h.update(old);
    h.update(digest);
    h.finalize().to_vec()
}

fn extend_sha1(old: &[u8], digest: &[u8]) -> Vec<u8> {
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(old);
    h.update(digest);
    h.finalize().to_vec()
}

/// `tpm2_pcrread BANK:PCR -o FILE`: the raw value.
fn pcr_value(tpm: &Swtpm, dir: &Path, bank: &str, pcr: u32) -> Vec<u8> {
    let out = dir.join(format!("pcr-{bank}-{pcr}-{}", random_u64()));
    let o = out.display().to_string();
    tpm.must(&["tpm2_pcrread", &format!("{bank}:{pcr}"), "-o", &o]);
    fs::read(&out).expect("read pcr value")
}

// ---------------------------------------------------------------------------------------
// The data channel, version and capabilities
// ---------------------------------------------------------------------------------------

#[test]
fn serves_tpm2_tools_started_like_the_tpm2_tools_harness() {
    let dir = tempdir("trustlaunch-dropin-");
    let tpm = Swtpm::start(dir.path());
    tpm.must(&["tpm2_startup", "-c"]);
    let rand = dir.path().join("rand");
    tpm.must(&["tpm2_getrandom", "-o", &rand.display().to_string(), "32"]);
    let bytes = fs::read(&rand).expect("read random");
    assert_eq!(bytes.len(), 32);
    assert!(bytes.iter().any(|b| *b != 0));

    let digest = [0x5au8; 32];
    let before = pcr_value(&tpm, dir.path(), "sha256", 23);
    assert_eq!(before, vec![0u8; 32]);
    tpm.must(&[
        "tpm2_pcrextend",
        &format!("23:sha256={}", hex::encode(digest)),
    ]);
    assert_eq!(
        pcr_value(&tpm, dir.path(), "sha256", 23),
        extend_sha256(&before, &digest)
    );
    // A new TPM made by `swtpm socket` is bare, as swtpm's: no EK certificates in NV.
    let nv = tpm.must(&["tpm2_getcap", "handles-nv-index"]);
    assert!(
        !String::from_utf8_lossy(&nv.stdout).contains("0x1c00002"),
        "unexpected EK certificate"
    );
    tpm.shutdown();
}

#[test]
fn version_and_print_capabilities() {
    let v = must("swtpm --version", run(Command::new(SWTPM).arg("--version")));
    let line = String::from_utf8_lossy(&v.stdout);
    assert!(
        line.starts_with(&format!(
            "TPM emulator version {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{line}"
    );

    let caps = must(
        "swtpm socket --print-capabilities",
        run(Command::new(SWTPM).args(["socket", "--print-capabilities"])),
    );
    let text = String::from_utf8(caps.stdout).expect("utf8");
    let features = parse_capabilities(&text, "swtpm");
    for expected in ["tpm-2.0", "tpm-send-command-header", "flags-opt-startup"] {
        assert!(features.contains(&expected.to_string()), "{text}");
    }
    assert!(!features.contains(&"tpm-1.2".to_string()), "{text}");
    // Every name we print is one real swtpm uses.
    if let Ok(o) = Command::new("swtpm")
        .args(["socket", "--print-capabilities"])
        .output()
    {
        let real = parse_capabilities(&String::from_utf8_lossy(&o.stdout), "swtpm");
        for f in &features {
            assert!(
                real.contains(f),
                "{f} is not a feature swtpm knows: {real:?}"
            );
        }
    }

    let caps = must(
        "swtpm_setup --print-capabilities",
        run(Command::new(SWTPM_SETUP).arg("--print-capabilities")),
    );
    let text = String::from_utf8(caps.stdout).expect("utf8");
    let features = parse_capabilities(&text, "swtpm_setup");
    assert!(features.contains(&"tpm-2.0".to_string()), "{text}");
    if let Ok(o) = Command::new("swtpm_setup")
        .arg("--print-capabilities")
        .output()
    {
        let real = parse_capabilities(&String::from_utf8_lossy(&o.stdout), "swtpm_setup");
        for f in &features {
            assert!(real.contains(f), "{f} is not a feature swtpm_setup knows");
        }
    }
}

/// Check `text` is a JSON object `{"type": TYPE, "features": [strings], "version": string}`
/// (with python3's JSON parser when available, and structurally here) and return the
/// features.
fn parse_capabilities(text: &str, kind: &str) -> Vec<String> {
    if let Ok(mut child) = Command::new("python3")
        .args([
            "-c",
            "import json,sys; d=json.load(sys.stdin); \
             assert set(d)=={'type','features','version'}, d; \
             assert isinstance(d['features'], list) and all(isinstance(f,str) for f in d['features']); \
             print(d['type'])",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        let o = child.wait_with_output().expect("python3");
        assert!(o.status.success(), "not the expected JSON: {text}");
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), kind);
    }
    let t = text.trim();
    assert!(t.starts_with('{') && t.ends_with('}'), "{t}");
    assert!(t.contains(&format!("\"type\": \"{kind}\"")), "{t}");
    assert!(t.contains("\"version\": \""), "{t}");
    let start = t.find('[').expect("features list") + 1;
    let end = t.find(']').expect("features list");
    t[start..end]
        .split(',')
        .map(|f| f.trim().trim_matches('"').to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------------------
// State blobs through swtpm_ioctl
// ---------------------------------------------------------------------------------------

#[test]
fn permanent_blob_carries_nv_into_a_fresh_instance() {
    let a_dir = tempdir("trustlaunch-dropin-a-");
    let b_dir = tempdir("trustlaunch-dropin-b-");
    let work = tempdir("trustlaunch-dropin-files-");
    let blob = work.path().join("permanent.bin");
    let blob_s = blob.display().to_string();
    let secret = b"carried across!!";
    let secret_file = work.path().join("secret");
    fs::write(&secret_file, secret).expect("write");

    let a = Swtpm::start(a_dir.path());
    // STATEBLOB capabilities are advertised (bits 8 and 9), as QEMU needs to migrate.
    let caps = a.must_ioctl(&["-c"]);
    let caps = String::from_utf8_lossy(&caps.stdout);
    let value = caps
        .trim()
        .rsplit("0x")
        .next()
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .expect("capability value");
    assert_eq!(value & 0x300, 0x300, "{caps}");
    a.must(&["tpm2_startup", "-c"]);
    a.must(&[
        "tpm2_nvdefine",
        "0x1500020",
        "-C",
        "o",
        "-s",
        "16",
        "-a",
        "ownerread|ownerwrite",
    ]);
    a.must(&[
        "tpm2_nvwrite",
        "0x1500020",
        "-C",
        "o",
        "-i",
        &secret_file.display().to_string(),
    ]);
    a.must_ioctl(&["--save", "permanent", &blob_s]);
    a.shutdown();

    let b = Swtpm::start(b_dir.path());
    b.must(&["tpm2_startup", "-c"]);
    assert!(
        !b.tool(&["tpm2_nvread", "0x1500020", "-C", "o", "-s", "16"])
            .status
            .success(),
        "a fresh TPM has no such index"
    );
    // Setting state needs a stopped TPM, as with swtpm.
    let refused = b.ioctl(&["--load", "permanent", &blob_s]);
    assert!(!refused.status.success(), "{}", explain("load", &refused));
    b.must_ioctl(&["--stop"]);
    b.must_ioctl(&["--load", "permanent", &blob_s]);
    b.must_ioctl(&["-i"]);
    b.must(&["tpm2_startup", "-c"]);
    let read = b.must(&["tpm2_nvread", "0x1500020", "-C", "o", "-s", "16"]);
    assert_eq!(read.stdout, secret);
    b.shutdown();

    // The loaded state was saved: a restarted server has it too.
    let b = Swtpm::start(b_dir.path());
    b.must(&["tpm2_startup", "-c"]);
    let read = b.must(&["tpm2_nvread", "0x1500020", "-C", "o", "-s", "16"]);
    assert_eq!(read.stdout, secret);
    b.shutdown();
}

#[test]
fn volatile_blob_resumes_pcrs_and_objects_without_startup() {
    let a_dir = tempdir("trustlaunch-dropin-a-");
    let b_dir = tempdir("trustlaunch-dropin-b-");
    let work = tempdir("trustlaunch-dropin-files-");
    let perm = work.path().join("permanent.bin").display().to_string();
    let vol = work.path().join("volatile.bin").display().to_string();
    let save = work.path().join("savestate.bin").display().to_string();

    let a = Swtpm::start(a_dir.path());
    a.must(&["tpm2_startup", "-c"]);
    let d256 = [0x11u8; 32];
    let d1 = [0x22u8; 20];
    a.must(&[
        "tpm2_pcrextend",
        &format!("16:sha256={},sha1={}", hex::encode(d256), hex::encode(d1)),
    ]);
    let pcr256 = pcr_value(&a, work.path(), "sha256", 16);
    let pcr1 = pcr_value(&a, work.path(), "sha1", 16);
    assert_eq!(pcr256, extend_sha256(&[0; 32], &d256));
    assert_eq!(pcr1, extend_sha1(&[0; 20], &d1));
    // A loaded transient key travels too.
    let ctx = work.path().join("primary.ctx").display().to_string();
    a.must(&["tpm2_createprimary", "-C", "o", "-c", &ctx]);
    let handles = a.must(&["tpm2_getcap", "handles-transient"]);
    let handles = String::from_utf8_lossy(&handles.stdout).to_string();
    assert!(handles.contains("0x80"), "{handles}");

    for (kind, file) in [
        ("permanent", &perm),
        ("volatile", &vol),
        ("savestate", &save),
    ] {
        a.must_ioctl(&["--save", kind, file]);
    }
    assert_eq!(fs::metadata(&save).expect("savestate").len(), 0);
    a.shutdown();

    // The destination starts powered off, as QEMU's does for an incoming migration.
    let b = Swtpm::start_with(SWTPM, b_dir.path(), &[]);
    for (kind, file) in [
        ("permanent", &perm),
        ("volatile", &vol),
        ("savestate", &save),
    ] {
        b.must_ioctl(&["--load", kind, file]);
    }
    b.must_ioctl(&["-i"]);
    // No TPM2_Startup: the TPM resumed started.
    assert_eq!(pcr_value(&b, work.path(), "sha256", 16), pcr256);
    assert_eq!(pcr_value(&b, work.path(), "sha1", 16), pcr1);
    let after = b.must(&["tpm2_getcap", "handles-transient"]);
    assert_eq!(String::from_utf8_lossy(&after.stdout), handles);
    // The volatile blob is used once: the next _TPM_Init is a plain reset.
    b.must_ioctl(&["--stop"]);
    b.must_ioctl(&["-i"]);
    let o = b.tool(&["tpm2_pcrread", "sha256:16"]);
    assert!(!o.status.success(), "TPM2_Startup must be needed again");
    b.must(&["tpm2_startup", "-c"]);
    assert_eq!(pcr_value(&b, work.path(), "sha256", 16), vec![0u8; 32]);
    b.shutdown();
}

#[test]
fn our_blobs_are_refused_by_real_swtpm_and_theirs_by_us() {
    // Blobs are each implementation's own format: a clean refusal, not a misread.
    // swtpm is the peer here; the test command installs it, and its absence is a failure.
    assert!(
        Command::new("swtpm").arg("--version").output().is_ok(),
        "swtpm is not installed (scripts/test.sh installs it)"
    );
    let ours_dir = tempdir("trustlaunch-dropin-ours-");
    let real_dir = tempdir("trustlaunch-dropin-real-");
    let work = tempdir("trustlaunch-dropin-files-");
    let ours_blob = work.path().join("ours.bin").display().to_string();
    let real_blob = work.path().join("real.bin").display().to_string();

    let ours = Swtpm::start(ours_dir.path());
    ours.must_ioctl(&["--save", "permanent", &ours_blob]);
    let real = Swtpm::start_with("swtpm", real_dir.path(), &["--flags", "not-need-init"]);
    real.must_ioctl(&["--save", "permanent", &real_blob]);

    ours.must_ioctl(&["--stop"]);
    let o = ours.ioctl(&["--load", "permanent", &real_blob]);
    assert!(!o.status.success(), "{}", explain("load swtpm's blob", &o));
    assert!(
        ours.server_log().contains("malformed"),
        "{}",
        ours.server_log()
    );
    // Still the same TPM, and it starts.
    ours.must_ioctl(&["-i"]);
    ours.must(&["tpm2_startup", "-c"]);
    ours.shutdown();

    real.must_ioctl(&["--stop"]);
    let o = real.ioctl(&["--load", "permanent", &ours_blob]);
    assert!(
        !o.status.success(),
        "{}",
        explain("swtpm loading our blob", &o)
    );
    real.must_ioctl(&["-s"]);
}

// ---------------------------------------------------------------------------------------
// swtpm_setup
// ---------------------------------------------------------------------------------------

#[test]
fn swtpm_setup_makes_ek_certificates_persistent_eks_and_the_banks_asked_for() {
    let work = tempdir("trustlaunch-dropin-setup-");
    let state = work.path().join("state");
    let ca = work.path().join("ca");
    let log = work.path().join("setup.log");
    let state_s = state.display().to_string();
    let ca_s = ca.display().to_string();
    // libvirt's invocation (plus --ca-dir to keep the CA in the test's directory).
    let o = must(
        "swtpm_setup",
        run(Command::new(SWTPM_SETUP).args([
            "--tpm2",
            "--tpm-state",
            &state_s,
            "--vmid",
            "test-vm:00000000-0000-0000-0000-000000000001",
            "--logfile",
            &log.display().to_string(),
            "--createek",
            "--create-ek-cert",
            "--create-platform-cert",
            "--lock-nvram",
            "--not-overwrite",
            "--pcr-banks",
            "sha1,sha256",
            "--ca-dir",
            &ca_s,
        ])),
    );
    let log_text = fs::read_to_string(&log).expect("setup log");
    assert!(
        log_text.contains("platform certificates are not supported"),
        "{log_text}"
    );
    assert!(
        log_text.contains("Successfully authored TPM state"),
        "{log_text}"
    );
    drop(o);

    let tpm = Swtpm::start(&state);
    tpm.must(&["tpm2_startup", "-c"]);
    let pcrs = tpm.must(&["tpm2_getcap", "pcrs"]);
    let pcrs = String::from_utf8_lossy(&pcrs.stdout).to_string();
    let all =
        "[ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23 ]";
    assert!(pcrs.contains(&format!("sha1: {all}")), "{pcrs}");
    assert!(pcrs.contains(&format!("sha256: {all}")), "{pcrs}");
    assert!(pcrs.contains("sha384: [ ]"), "{pcrs}");
    assert!(pcrs.contains("sha512: [ ]"), "{pcrs}");

    let persistent = tpm.must(&["tpm2_getcap", "handles-persistent"]);
    let persistent = String::from_utf8_lossy(&persistent.stdout).to_string();
    assert!(persistent.contains("0x81010001"), "{persistent}");
    assert!(persistent.contains("0x81010002"), "{persistent}");

    let rsa = work.path().join("ek-rsa.der").display().to_string();
    let ecc = work.path().join("ek-ecc.der").display().to_string();
    tpm.must(&["tpm2_getekcertificate", "-o", &rsa, "-o", &ecc]);
    // The RSA certificate certifies the persistent RSA EK.
    let cert_key = must(
        "openssl x509 -pubkey",
        run(Command::new("openssl")
            .args(["x509", "-inform", "der", "-in", &rsa, "-noout", "-pubkey"])),
    );
    let issuer = must(
        "openssl x509 -issuer",
        run(Command::new("openssl")
            .args(["x509", "-inform", "der", "-in", &rsa, "-noout", "-issuer"])),
    );
    assert!(
        String::from_utf8_lossy(&issuer.stdout).contains("trustlaunch vTPM Manufacturer CA"),
        "{}",
        String::from_utf8_lossy(&issuer.stdout)
    );
    let ek_pem = work.path().join("ek.pem").display().to_string();
    tpm.must(&[
        "tpm2_readpublic",
        "-c",
        "0x81010001",
        "-f",
        "pem",
        "-o",
        &ek_pem,
    ]);
    assert_eq!(
        fs::read_to_string(&ek_pem).expect("ek pem").trim(),
        String::from_utf8_lossy(&cert_key.stdout).trim()
    );
    must(
        "openssl x509 (ECC)",
        run(Command::new("openssl").args(["x509", "-inform", "der", "-in", &ecc, "-noout"])),
    );
    tpm.shutdown();

    // Existing state: refused without a choice, kept with --not-overwrite.
    let before = fs::read(state.join("tpm2-state.bin")).expect("state");
    let o = run(Command::new(SWTPM_SETUP).args(["--tpm2", "--tpm-state", &state_s]));
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--overwrite"),
        "{}",
        explain("setup", &o)
    );
    must(
        "swtpm_setup --not-overwrite",
        run(Command::new(SWTPM_SETUP).args(["--tpm2", "--tpmstate", &state_s, "--not-overwrite"])),
    );
    assert_eq!(
        fs::read(state.join("tpm2-state.bin")).expect("state"),
        before
    );

    // --reconfigure changes the banks and keeps the TPM (its certificates and EKs).
    must(
        "swtpm_setup --reconfigure",
        run(Command::new(SWTPM_SETUP).args([
            "--tpm2",
            "--tpm-state",
            &state_s,
            "--reconfigure",
            "--pcr-banks",
            "sha256,sha384",
        ])),
    );
    let tpm = Swtpm::start(&state);
    tpm.must(&["tpm2_startup", "-c"]);
    let pcrs = tpm.must(&["tpm2_getcap", "pcrs"]);
    let pcrs = String::from_utf8_lossy(&pcrs.stdout).to_string();
    assert!(pcrs.contains("sha1: [ ]"), "{pcrs}");
    assert!(pcrs.contains(&format!("sha384: {all}")), "{pcrs}");
    let rsa2 = work.path().join("ek-rsa2.der").display().to_string();
    let ecc2 = work.path().join("ek-ecc2.der").display().to_string();
    tpm.must(&["tpm2_getekcertificate", "-o", &rsa2, "-o", &ecc2]);
    assert_eq!(fs::read(&rsa).expect("rsa"), fs::read(&rsa2).expect("rsa2"));
    tpm.shutdown();
}

#[test]
fn swtpm_setup_defaults_to_a_bare_tpm_with_the_sha256_bank() {
    let work = tempdir("trustlaunch-dropin-setup-");
    let state = work.path().join("state");
    must(
        "swtpm_setup",
        run(Command::new(SWTPM_SETUP).args([
            "--tpm2",
            "--tpm-state",
            &format!("dir://{}", state.display()),
        ])),
    );
    let tpm = Swtpm::start(&state);
    tpm.must(&["tpm2_startup", "-c"]);
    let pcrs = tpm.must(&["tpm2_getcap", "pcrs"]);
    let pcrs = String::from_utf8_lossy(&pcrs.stdout).to_string();
    assert!(pcrs.contains("sha1: [ ]"), "{pcrs}");
    assert!(pcrs.contains("sha256: [ 0, 1, 2"), "{pcrs}");
    let nv = tpm.must(&["tpm2_getcap", "handles-nv-index"]);
    assert!(String::from_utf8_lossy(&nv.stdout).trim().is_empty());
    let persistent = tpm.must(&["tpm2_getcap", "handles-persistent"]);
    assert!(String::from_utf8_lossy(&persistent.stdout)
        .trim()
        .is_empty());
    tpm.shutdown();

    // `trustlaunch vtpm setup` is the same tool.
    let other = work.path().join("other");
    must(
        "trustlaunch vtpm setup",
        run(Command::new(TRUSTLAUNCH).args([
            "vtpm",
            "setup",
            "--tpm2",
            "--tpmstate",
            &other.display().to_string(),
            "--pcr-banks",
            "-",
        ])),
    );
    assert!(other.join("tpm2-state.bin").exists());
}

// ---------------------------------------------------------------------------------------
// Process options libvirt uses, and refusals
// ---------------------------------------------------------------------------------------

#[test]
fn daemon_pid_log_and_state_mode() {
    let work = tempdir("trustlaunch-dropin-daemon-");
    let state = work.path().join("state");
    fs::create_dir(&state).expect("mkdir");
    let pid = work.path().join("swtpm.pid");
    let log = work.path().join("swtpm.log");
    let port = free_port_pair();
    must(
        "swtpm socket --daemon",
        run(Command::new(SWTPM).args([
            "socket",
            "--tpm2",
            "--daemon",
            "--server",
            &format!("type=tcp,port={port}"),
            "--ctrl",
            &format!("type=tcp,port={}", port + 1),
            "--flags",
            "not-need-init,startup-clear",
            "--tpmstate",
            &format!("dir={},mode=0600", state.display()),
            "--pid",
            &format!("file={}", pid.display()),
            "--log",
            &format!("file={},level=20", log.display()),
        ])),
    );
    // The daemon is serving once --daemon returns.
    let pid_value: u32 = fs::read_to_string(&pid)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(Path::new(&format!("/proc/{pid_value}")).exists());
    let mode = fs::metadata(state.join("tpm2-state.bin"))
        .expect("state file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let tcti = format!("swtpm:host=127.0.0.1,port={port}");
    let o = run(Command::new("tpm2_getrandom")
        .args(["--hex", "8"])
        .env("TPM2TOOLS_TCTI", &tcti));
    assert!(o.status.success(), "{}", explain("getrandom", &o));
    let o =
        run(Command::new("swtpm_ioctl").args(["--tcp", &format!("127.0.0.1:{}", port + 1), "-s"]));
    assert!(o.status.success(), "{}", explain("swtpm_ioctl -s", &o));
    let deadline = Instant::now() + Duration::from_secs(20);
    while Path::new(&format!("/proc/{pid_value}/cmdline")).exists()
        && fs::read_to_string(format!("/proc/{pid_value}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "daemon did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid.exists(), "pid file removed at exit");
    let text = fs::read_to_string(&log).expect("log");
    assert!(text.contains("CMD_SHUTDOWN"), "{text}");
}

#[test]
fn terminate_ends_the_server_when_its_data_connection_closes() {
    let dir = tempdir("trustlaunch-dropin-");
    let mut tpm = Swtpm::start_with(
        SWTPM,
        dir.path(),
        &["--flags", "not-need-init", "--terminate"],
    );
    {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, tpm.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(&[0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x44, 0, 0])
            .expect("write");
        let mut resp = [0u8; 10];
        s.read_exact(&mut resp).expect("read");
        assert_eq!(&resp[6..10], &[0, 0, 0, 0]);
    }
    let mut child = tpm.child.take().expect("child");
    match child.wait_timeout(Duration::from_secs(20)) {
        Ok(Some(status)) => assert!(status.success(), "{status}"),
        _ => {
            let _ = child.kill();
            panic!("--terminate: still running\n{}", tpm.server_log());
        }
    }
}

#[test]
fn unsupported_options_are_refused_clearly() {
    let dir = tempdir("trustlaunch-dropin-");
    let d = format!("dir={}", dir.path().display());
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "socket",
                "--tpm2",
                "--tpmstate",
                &d,
                "--ctrl",
                "type=tcp,port=1",
                "--key",
                "file=/k,mode=aes-256-cbc,format=hex,remove=false",
            ],
            "mode=aes-256-cbc is not supported: CBC gives no integrity protection",
        ),
        (
            &["socket", "--tpmstate", &d, "--ctrl", "type=tcp,port=1"],
            "--tpm2 is required",
        ),
        (&["chardev", "--tpm2"], "only `swtpm socket`"),
        (
            &["socket", "--tpm2", "--tpmstate", &d, "--fd", "5"],
            "--fd: a data channel passed in as a file descriptor is not supported",
        ),
    ];
    for (args, message) in cases {
        let o = run(Command::new(SWTPM).args(*args));
        assert_eq!(o.status.code(), Some(1), "{}", explain(&args.join(" "), &o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(message),
            "{}",
            explain(&args.join(" "), &o)
        );
    }
    // A state directory holding swtpm's (libtpms') state is not silently replaced.
    fs::write(dir.path().join("tpm2-00.permall"), b"libtpms state").expect("write");
    let o = run(Command::new(SWTPM).args([
        "socket",
        "--tpm2",
        "--tpmstate",
        &d,
        "--ctrl",
        "type=tcp,port=1",
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("made by swtpm (libtpms)"),
        "{}",
        explain("foreign state", &o)
    );
    assert!(!dir.path().join("tpm2-state.bin").exists());
}

// ---------------------------------------------------------------------------------------
// QEMU live migration
// ---------------------------------------------------------------------------------------

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// One QMP command on a fresh connection: the first reply that is not an event.
fn qmp(socket: &Path, command: &str) -> String {
    use std::io::BufRead;
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match std::os::unix::net::UnixStream::connect(socket) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("QMP {}: {e}", socket.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut lines = std::io::BufReader::new(stream).lines();
    let mut reply = || loop {
        let line = lines.next().expect("QMP reply").expect("QMP read");
        if !line.contains("\"event\"") {
            return line;
        }
    };
    let _greeting = reply();
    writer
        .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
        .expect("QMP write");
    let _ = reply();
    writer
        .write_all(format!("{command}\n").as_bytes())
        .expect("QMP write");
    reply()
}

/// `swtpm socket` as libvirt starts it for QEMU: a Unix control socket only (QEMU passes
/// the data channel with CMD_SET_DATAFD), `--terminate`.
fn spawn_for_qemu(dir: &Path, name: &str) -> (Child, PathBuf, PathBuf) {
    let state = dir.join(format!("{name}-state"));
    fs::create_dir(&state).expect("mkdir");
    let ctrl = dir.join(format!("{name}.ctrl"));
    let log = dir.join(format!("{name}.swtpm.log"));
    let pid = dir.join(format!("{name}.pid"));
    let child = Command::new(SWTPM)
        .args(["socket", "--tpm2", "--terminate"])
        .args([
            "--ctrl",
            &format!("type=unixio,path={},mode=0600", ctrl.display()),
        ])
        .args(["--tpmstate", &format!("dir={},mode=0600", state.display())])
        .args(["--log", &format!("file={},level=2", log.display())])
        .args(["--pid", &format!("file={}", pid.display())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn swtpm");
    let deadline = Instant::now() + START_TIMEOUT;
    while !pid.exists() {
        assert!(Instant::now() < deadline, "swtpm did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, ctrl, log)
}

fn spawn_qemu(dir: &Path, name: &str, ctrl: &Path, incoming: Option<&Path>) -> (Child, PathBuf) {
    let qmp_path = dir.join(format!("{name}.qmp"));
    let vars = dir.join(format!("{name}.vars.fd"));
    if !vars.exists() {
        fs::copy(OVMF_VARS, &vars).expect("copy OVMF vars");
    }
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-machine", "q35", "-accel", "tcg", "-m", "256"])
        .args(["-display", "none", "-nodefaults"])
        .args([
            "-drive",
            &format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
        ])
        .args([
            "-drive",
            &format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        ])
        .args([
            "-chardev",
            &format!("socket,id=chrtpm,path={}", ctrl.display()),
        ])
        .args(["-tpmdev", "emulator,id=tpm0,chardev=chrtpm"])
        .args(["-device", "tpm-crb,tpmdev=tpm0"])
        .args([
            "-qmp",
            &format!("unix:{},server=on,wait=off", qmp_path.display()),
        ])
        .args([
            "-serial",
            &format!("file:{}", dir.join(format!("{name}.serial")).display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            fs::File::create(dir.join(format!("{name}.qemu.err"))).expect("create"),
        ));
    if let Some(stream) = incoming {
        cmd.args(["-incoming", &format!("exec:cat {}", stream.display())]);
    }
    (cmd.spawn().expect("spawn qemu"), qmp_path)
}

/// The sha256 PCRs 0-7 of a TPM given as permanent and volatile blobs, read by tpm2-tools
/// from a third server that resumed from them.
fn pcrs_from_blobs(perm: &Path, vol: &Path) -> String {
    let dir = tempdir("trustlaunch-dropin-pcrs-");
    let tpm = Swtpm::start_with(SWTPM, dir.path(), &[]);
    tpm.must_ioctl(&["--load", "permanent", &perm.display().to_string()]);
    tpm.must_ioctl(&["--load", "volatile", &vol.display().to_string()]);
    tpm.must_ioctl(&["-i"]);
    let o = tpm.must(&["tpm2_pcrread", "sha256:0,1,2,3,4,5,6,7"]);
    tpm.shutdown();
    String::from_utf8(o.stdout).expect("utf8")
}

struct KillOnDrop(Vec<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn qemu_live_migration_carries_the_tpm() {
    // QEMU and OVMF are installed by the test command; their absence is a failure, not a skip.
    let have_qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have_qemu && Path::new(OVMF_CODE).exists(),
        "QEMU or OVMF is missing (scripts/test.sh installs qemu-system-x86 and ovmf)"
    );
    let work = tempdir("trustlaunch-dropin-qemu-");
    let dir = work.path();
    let mut procs = KillOnDrop(Vec::new());

    // Source: OVMF boots to its shell, measuring the firmware into the TPM.
    let (src_tpm, src_ctrl, src_log) = spawn_for_qemu(dir, "src");
    procs.0.push(src_tpm);
    let (src_qemu, src_qmp) = spawn_qemu(dir, "src", &src_ctrl, None);
    procs.0.push(src_qemu);
    let serial = dir.join("src.serial");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let text = fs::read_to_string(&serial).unwrap_or_default();
        if text.contains("Shell>") || text.contains("startup.nsh") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "OVMF did not reach its shell\n{}\n{}",
            text,
            fs::read_to_string(dir.join("src.qemu.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Migrate into a file; QEMU takes the TPM's blobs with CMD_GET_STATEBLOB.
    let stream = dir.join("migration.bin");
    let r = qmp(
        &src_qmp,
        &format!(
            "{{\"execute\":\"migrate\",\"arguments\":{{\"uri\":\"exec:cat > {}\"}}}}",
            stream.display()
        ),
    );
    assert!(r.contains("\"return\""), "{r}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = qmp(&src_qmp, "{\"execute\":\"query-migrate\"}");
        if r.contains("\"completed\"") {
            break;
        }
        assert!(
            !r.contains("\"failed\"") && Instant::now() < deadline,
            "migration: {r}\n{}",
            fs::read_to_string(dir.join("src.qemu.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Destination: a new, empty TPM; QEMU stops it, sets the blobs and resumes it.
    fs::copy(dir.join("src.vars.fd"), dir.join("dst.vars.fd")).expect("copy vars");
    let (dst_tpm, dst_ctrl, dst_log) = spawn_for_qemu(dir, "dst");
    procs.0.push(dst_tpm);
    let (dst_qemu, dst_qmp) = spawn_qemu(dir, "dst", &dst_ctrl, Some(&stream));
    procs.0.push(dst_qemu);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = qmp(&dst_qmp, "{\"execute\":\"query-status\"}");
        if r.contains("\"running\": true") || r.contains("\"running\":true") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "destination not running: {r}\n{}\n{}",
            fs::read_to_string(dir.join("dst.qemu.err")).unwrap_or_default(),
            fs::read_to_string(&dst_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let dst_text = fs::read_to_string(&dst_log).unwrap_or_default();
    assert!(
        dst_text.contains("resumed from a volatile state blob"),
        "{dst_text}"
    );
    let src_text = fs::read_to_string(&src_log).unwrap_or_default();
    assert!(
        src_text.contains("CMD_GET_STATEBLOB: volatile blob"),
        "{src_text}"
    );

    // The destination's TPM is the source's: same PCRs (firmware measurements, not zero).
    let blobs = |ctrl: &Path, name: &str| -> (PathBuf, PathBuf) {
        let perm = dir.join(format!("{name}.permanent"));
        let vol = dir.join(format!("{name}.volatile"));
        for (kind, file) in [("permanent", &perm), ("volatile", &vol)] {
            must(
                "swtpm_ioctl --save",
                run(Command::new("swtpm_ioctl").args([
                    "--unix",
                    &ctrl.display().to_string(),
                    "--save",
                    kind,
                    &file.display().to_string(),
                ])),
            );
        }
        (perm, vol)
    };
    let (sp, sv) = blobs(&src_ctrl, "src");
    let (dp, dv) = blobs(&dst_ctrl, "dst");
    let src_pcrs = pcrs_from_blobs(&sp, &sv);
    let dst_pcrs = pcrs_from_blobs(&dp, &dv);
    assert_eq!(src_pcrs, dst_pcrs);
    assert!(
        !src_pcrs.contains(&format!("0 : 0x{}", "0".repeat(64))),
        "PCR 0 holds the firmware's measurements: {src_pcrs}"
    );
    for q in [&src_qmp, &dst_qmp] {
        let _ = qmp(q, "{\"execute\":\"quit\"}");
    }
}
