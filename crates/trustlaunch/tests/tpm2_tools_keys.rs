//! Acceptance tests for "vTPM 2/3": keys, attestation, credentials, policies, sessions and
//! hierarchy authorization, driven by the real tpm2-tools (5.x, tpm2-tss underneath) against
//! `trustlaunch vtpm socket` (swtpm socket protocol, TCTI `swtpm:`).
//!
//! Every step runs in its own tpm2-tools process, as an operator's script would, passing
//! objects and sessions between processes in `.ctx` files. The very same steps also run
//! against real swtpm (libtpms), the peer: that shows the expectations encode TPM 2.0
//! behaviour, not quirks of our implementation. swtpm keeps only three transient objects
//! loaded, so, as tpm2-tools' own test suite does, every step is followed by
//! `tpm2_flushcontext -t` (objects come back from their `.ctx` files when needed).
//!
//! Independent truths used here: signatures are checked with OpenSSL as well as with the TPM;
//! quotes with `tpm2_checkquote` (OpenSSL underneath); object names and the PolicyPCR digest
//! are recomputed with the sha2 crate from the TPM 2.0 Library's definitions; EK
//! certificates are parsed and verified with OpenSSL; response codes are the ones real swtpm
//! returns for the same step.
//!
//! EK certificates are checked against ours only (`--ca-dir` and `trustlaunch vtpm ca
//! export`): swtpm has them only after swtpm_setup provisioning.
//!
//! Each test starts its own server on its own free loopback ports in its own temporary
//! directory, so tests run in parallel; a Drop guard always kills the server.

use sha2::Digest;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wait_timeout::ChildExt;

/// Longest any single tool invocation may take (RSA key generation in a debug build included).
mod ports;
mod server_process;
use ports::{free_port_pair, random_u64};
use server_process::ServerProcess;

const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

// Response codes (TPM 2.0 Part 2, 6.6), as tpm2-tools prints them; each one is what swtpm
// returns for the same step.
/// TPM_RC_AUTH_FAIL for session 1 (0x08E + TPM_RC_S + TPM_RC_1): wrong password on a
/// DA-protected entity, DA counter incremented.
const RC_AUTH_FAIL_SESSION1: u32 = 0x98E;
/// TPM_RC_BAD_AUTH for session 1 (0x0A2 + TPM_RC_S + TPM_RC_1): wrong password on an entity
/// without DA implications (a hierarchy's authValue other than lockoutAuth).
const RC_BAD_AUTH_SESSION1: u32 = 0x9A2;
/// TPM_RC_POLICY_FAIL for session 1 (0x09D + TPM_RC_S + TPM_RC_1).
const RC_POLICY_FAIL_SESSION1: u32 = 0x99D;
/// TPM_RC_LOCKOUT (warning): the TPM is in DA lockout mode.
const RC_LOCKOUT: u32 = 0x921;
/// TPM_RC_INTEGRITY for parameter 1 (0x05F + TPM_RC_P + TPM_RC_1).
const RC_INTEGRITY_PARAM1: u32 = 0x1DF;
/// TPM_RC_HANDLE for handle 1 (0x08B + TPM_RC_H + TPM_RC_1).
const RC_HANDLE_1: u32 = 0x18B;
/// TPM_RC_VALUE for parameter 1.
const RC_VALUE_PARAM1: u32 = 0x1C4;
/// TPM_RC_FAILURE.
const RC_FAILURE: u32 = 0x101;
/// TPM_RC_SIGNATURE for parameter 2 (0x09B + TPM_RC_P + TPM_RC_2).
const RC_SIGNATURE_PARAM2: u32 = 0x2DB;
/// TPM_RC_AUTH_UNAVAILABLE: authValue use is not available (userWithAuth is clear).
const RC_AUTH_UNAVAILABLE: u32 = 0x12F;

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// Real swtpm (libtpms) over the swtpm socket protocol: the reference peer.
    SwtpmPeer,
    /// `trustlaunch vtpm socket`: our engine over the swtpm socket protocol.
    Ours,
}

/// The output of one finished process.
struct Run {
    cmdline: String,
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// One server process (restartable on the same ports and state) and the client side.
struct Fixture {
    backend: Backend,
    port: u16,
    server: ServerProcess,
    runs: AtomicU64,
    /// Our server's `--ca-dir` (EK certificate authority), when the test uses one.
    ca_dir: Option<PathBuf>,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// Start a server on fresh ports with an empty state directory.
    fn start(backend: Backend) -> Fixture {
        Fixture::start_with(backend, false)
    }

    /// Start our server with `--ca-dir` pointing at a CA directory of the test's own.
    fn start_with_ca() -> Fixture {
        Fixture::start_with(Backend::Ours, true)
    }

    fn start_with(backend: Backend, with_ca: bool) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("trustlaunch-tpm2-keys-")
            .tempdir()
            .expect("create temporary directory");
        fs::create_dir(dir.path().join("state")).expect("create state directory");
        fs::create_dir(dir.path().join("files")).expect("create files directory");
        let ca_dir = with_ca.then(|| {
            let ca = dir.path().join("ca");
            fs::create_dir(&ca).expect("create CA directory");
            ca
        });
        let mut fixture = Fixture {
            backend,
            port: 0,
            server: ServerProcess::default(),
            runs: AtomicU64::new(0),
            ca_dir,
            dir,
        };
        let mut last_error = String::new();
        // A port found free may be taken by a parallel test before the server binds it:
        // pick other ports then.
        for _ in 0..8 {
            fixture.port = free_port_pair();
            match fixture.spawn() {
                Ok(()) => return fixture,
                Err(e) => last_error = e,
            }
        }
        panic!(
            "{backend:?} server did not start: {last_error}\n{}",
            fixture.server_log()
        );
    }

    /// The server command line, as an operator would type it. Port N carries TPM commands,
    /// N+1 the control channel.
    fn command(&self) -> Command {
        let server = format!("type=tcp,port={}", self.port);
        let ctrl = format!("type=tcp,port={}", self.port + 1);
        let tpmstate = format!("dir={}", self.dir.path().join("state").display());
        let mut cmd = match self.backend {
            Backend::SwtpmPeer => Command::new("swtpm"),
            Backend::Ours => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_trustlaunch"));
                c.arg("vtpm");
                c
            }
        };
        cmd.args(["socket", "--tpm2", "--server", &server, "--ctrl", &ctrl]);
        cmd.args(["--tpmstate", &tpmstate]);
        cmd.args(["--flags", "not-need-init,startup-clear"]);
        if let Some(ca) = &self.ca_dir {
            cmd.arg("--ca-dir").arg(ca);
        }
        cmd
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The end of the server's output (all starts), for failure messages.
    fn server_log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(4000)));
            let _ = f.read_to_string(&mut text);
        }
        format!("--- server log ({:?}, tail) ---\n{text}", self.backend)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let cmd = self.command();
        self.server.spawn(cmd, &self.log_path(), self.port)
    }

    /// Stop the server as a service manager does (SIGTERM, wait) and start it again on the
    /// same ports and state directory.
    fn restart(&mut self) {
        if let Err(e) = self.server.stop() {
            panic!("{e}\n{}", self.server_log());
        }
        if let Err(e) = self.spawn() {
            panic!("server did not restart: {e}\n{}", self.server_log());
        }
    }

    /// Path of a work file of this test (created by the tools, or by `write`).
    fn path(&self, name: &str) -> String {
        self.dir
            .path()
            .join("files")
            .join(name)
            .display()
            .to_string()
    }

    fn write(&self, name: &str, contents: &[u8]) {
        fs::write(self.path(name), contents).expect("write data file");
    }

    fn read(&self, name: &str) -> Vec<u8> {
        let path = self.path(name);
        fs::read(&path).unwrap_or_else(|e| panic!("[{:?}] read {path}: {e}", self.backend))
    }

    /// Run one program (a tpm2 tool talking to this server, openssl, ...) with a timeout.
    /// Run one command line (a tpm2 tool talking to this server, openssl, ...) in the test's
    /// work directory, with a timeout. Arguments are separated by whitespace (work files are
    /// named relative to the work directory, so no argument needs quoting).
    fn exec(&self, cmdline: &str) -> Run {
        let args: Vec<&str> = cmdline.split_whitespace().collect();
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        let out_path = self.dir.path().join(format!("run-{n}.out"));
        let err_path = self.dir.path().join(format!("run-{n}.err"));
        let mut cmd = Command::new(args[0]);
        cmd.args(&args[1..])
            .current_dir(self.dir.path().join("files"))
            .env(
                "TPM2TOOLS_TCTI",
                format!("swtpm:host=127.0.0.1,port={}", self.port),
            )
            .env_remove("TSS2_LOG")
            .stdin(Stdio::null())
            .stdout(File::create(&out_path).expect("create stdout file"))
            .stderr(File::create(&err_path).expect("create stderr file"));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e} (is it installed?)"));
        let status = match child.wait_timeout(TOOL_TIMEOUT) {
            Ok(Some(status)) => status,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "[{:?}] {cmdline} did not finish within {TOOL_TIMEOUT:?}\n{}",
                    self.backend,
                    self.server_log()
                );
            }
        };
        let run = Run {
            cmdline: cmdline.to_string(),
            code: status.code(),
            stdout: fs::read(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        };
        let _ = fs::remove_file(&out_path);
        let _ = fs::remove_file(&err_path);
        run
    }

    fn explain(&self, what: &str, run: &Run) -> String {
        format!(
            "[{:?}] step: {what}\n$ {}\nexit: {:?}\nstdout:\n{}\nstderr:\n{}\n{}",
            self.backend,
            run.cmdline,
            run.code,
            String::from_utf8_lossy(&run.stdout),
            run.stderr,
            self.server_log()
        )
    }

    /// Flush every transient object, as tpm2-tools' test suite does between steps (swtpm
    /// has three object slots; tools reload objects from their `.ctx` files).
    fn flush_transient(&self, after: &str) {
        let run = self.exec("tpm2_flushcontext -t");
        assert_eq!(
            run.code,
            Some(0),
            "flushing transient objects failed\n{}",
            self.explain(&format!("tpm2_flushcontext -t after: {after}"), &run)
        );
    }

    /// Run a program that must succeed; return its stdout.
    fn ok(&self, what: &str, cmdline: &str) -> String {
        let run = self.exec(cmdline);
        assert_eq!(
            run.code,
            Some(0),
            "step failed: {what}\n{}",
            self.explain(what, &run)
        );
        run.stdout_text()
    }

    /// Run a tpm2 tool that must succeed, then flush transient objects; return its stdout.
    /// An ECC primary in the owner hierarchy (prim.ctx) and a key under it made with
    /// `tpm2_create CREATE` and loaded (k.ctx), its public half in PEM (k.pem).
    fn child_key(&self, create: &str) {
        self.step(
            "tpm2_createprimary -C o -G ecc",
            "tpm2_createprimary -C o -g sha256 -G ecc -c prim.ctx",
        );
        self.step(
            &format!("tpm2_create {create}"),
            &format!("tpm2_create -C prim.ctx {create} -u k.pub -r k.priv"),
        );
        self.step(
            "tpm2_load",
            "tpm2_load -C prim.ctx -u k.pub -r k.priv -c k.ctx",
        );
        self.step(
            "tpm2_readpublic -f pem",
            "tpm2_readpublic -c k.ctx -f pem -o k.pem",
        );
    }

    fn step(&self, what: &str, cmdline: &str) -> String {
        let out = self.ok(what, cmdline);
        self.flush_transient(what);
        out
    }

    /// Run a tpm2 tool that the TPM must refuse with response code `rc` (as tpm2-tools
    /// prints it, e.g. "Esys_Unseal(0x99D)"), then flush transient objects.
    fn refused(&self, what: &str, cmdline: &str, rc: u32) {
        let run = self.exec(cmdline);
        self.flush_transient(what);
        assert_refused(rc, &run, || self.explain(what, &run));
    }

    /// Run a program that must fail (exit code not 0) with `needle` in its output.
    fn fails(&self, what: &str, cmdline: &str, needle: &str) {
        let run = self.exec(cmdline);
        assert!(
            run.code.is_some_and(|c| c != 0)
                && (run.stderr.contains(needle) || run.stdout_text().contains(needle)),
            "step: {what}: expected a failure mentioning {needle:?}\n{}",
            self.explain(what, &run)
        );
    }

    /// `tpm2_getcap properties-variable`: a "NAME: value" or nested "  name: value" entry.
    fn variable_property(&self, name: &str) -> u64 {
        let out = self.ok(&format!("read {name}"), "tpm2_getcap properties-variable");
        out.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .and_then(|(_, v)| parse_u64(v))
            .unwrap_or_else(|| {
                panic!(
                    "[{:?}] properties-variable lacks a numeric {name}\n{out}",
                    self.backend
                )
            })
    }

    /// Handles listed by `tpm2_getcap handles-KIND` (transient objects are not flushed).
    fn handles(&self, kind: &str) -> Vec<u32> {
        let out = self.ok(
            &format!("list {kind} handles"),
            &format!("tpm2_getcap handles-{kind}"),
        );
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("- 0x"))
            .map(|h| u32::from_str_radix(h, 16).expect("hex handle"))
            .collect()
    }

    /// A PEM public key (SubjectPublicKeyInfo) normalised by OpenSSL to DER.
    fn spki_der(&self, pem: &str) -> Vec<u8> {
        let der = format!("{pem}.spki.der");
        self.ok(
            &format!("normalise the public key in {pem} with openssl"),
            &format!("openssl pkey -pubin -in {pem} -outform DER -out {der}"),
        );
        self.read(&der)
    }

    /// OpenSSL's description of a PEM public key.
    fn key_text(&self, pem: &str) -> String {
        self.ok(
            &format!("describe the public key in {pem} with openssl"),
            &format!("openssl pkey -pubin -in {pem} -text -noout"),
        )
    }
}

/// The run failed with TPM response code `rc` as tpm2-tools prints it ("Esys_X(0x99D)").
fn assert_refused(rc: u32, run: &Run, explain: impl Fn() -> String) {
    let code = format!("(0x{rc:x})");
    assert!(
        run.code.is_some_and(|c| c != 0) && run.stderr.to_lowercase().contains(&code),
        "expected a failure with TPM response code 0x{rc:X}\n{}",
        explain()
    );
}

// ---------------------------------------------------------------------------------------------
// Independent computations
// ---------------------------------------------------------------------------------------------

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn sha256(data: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(data).to_vec()
}

/// Name of an object whose nameAlg is SHA-256 (TPM 2.0 Part 1, 16):
/// TPM_ALG_SHA256 || SHA-256(TPMT_PUBLIC), from a TPM2B_PUBLIC as `tpm2_create -u` writes it.
fn object_name(tpm2b_public: &[u8]) -> Vec<u8> {
    assert!(tpm2b_public.len() > 2, "TPM2B_PUBLIC too short");
    let size = u16::from_be_bytes([tpm2b_public[0], tpm2b_public[1]]) as usize;
    assert_eq!(size + 2, tpm2b_public.len(), "TPM2B_PUBLIC size field");
    [&[0x00, 0x0B][..], &sha256(&tpm2b_public[2..])].concat()
}

/// TPM2_PolicyPCR's policyDigest update from an empty digest (TPM 2.0 Part 3, 23.7):
/// H(0…0 || TPM_CC_PolicyPCR || TPML_PCR_SELECTION || H(PCR values)), for one SHA-256 PCR.
fn policy_pcr_digest(pcr: u32, pcr_value: &[u8]) -> Vec<u8> {
    let mut select = [0u8; 3];
    select[(pcr / 8) as usize] |= 1 << (pcr % 8);
    let mut data = vec![0u8; 32];
    data.extend(0x0000_017Fu32.to_be_bytes()); // TPM_CC_PolicyPCR
    data.extend(1u32.to_be_bytes()); // TPML_PCR_SELECTION.count
    data.extend(0x000Bu16.to_be_bytes()); // TPM_ALG_SHA256
    data.push(3); // sizeofSelect
    data.extend(select);
    data.extend(sha256(pcr_value));
    sha256(&data)
}

/// The value of a fresh (all-zero) SHA-256 PCR after `tpm2_pcrextend N:sha256=digest`.
fn extended_once(digest: &[u8]) -> Vec<u8> {
    sha256(&[&[0u8; 32][..], digest].concat())
}

/// Deterministic, non-repetitive test data.
fn test_data(label: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = 0u32;
    while out.len() < len {
        out.extend(sha256(&[label.as_bytes(), &block.to_be_bytes()].concat()));
        block += 1;
    }
    out.truncate(len);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// The steps (each run against every backend)
// ---------------------------------------------------------------------------------------------

mod steps {
    use super::*;

    /// Item 1: tpm2_createek gives the same EK every time: twice in a row and after a restart of
    /// the server (the endorsement seed is persistent state); another TPM has another EK.
    pub fn createek_is_stable(backend: Backend, alg: &str) {
        let mut tpm = Fixture::start(backend);
        let createek = |tpm: &Fixture, n: u32| -> String {
            tpm.step(
                &format!("tpm2_createek -G {alg} (#{n})"),
                &format!("tpm2_createek -G {alg} -c ek{n}.ctx -u ek{n}.pem -f pem"),
            );
            String::from_utf8_lossy(&tpm.read(&format!("ek{n}.pem"))).into_owned()
        };
        let first = createek(&tpm, 1);
        assert!(
            first.starts_with("-----BEGIN PUBLIC KEY-----"),
            "[{backend:?}] createek -f pem writes a PEM public key, got:\n{first}"
        );
        let expected = if alg == "rsa" {
            "Public-Key: (2048 bit)"
        } else {
            "NIST CURVE: P-256"
        };
        let text = tpm.key_text("ek1.pem");
        assert!(
            text.contains(expected),
            "[{backend:?}] the default {alg} EK template is {expected}; openssl says:\n{text}"
        );
        assert_eq!(
            first,
            createek(&tpm, 2),
            "[{backend:?}] tpm2_createek -G {alg} twice must give the same public key"
        );

        // The TSS-format public (-u without -f) equals what tpm2_readpublic reads back.
        tpm.step(
            &format!("tpm2_createek -G {alg} -u (TSS format)"),
            &format!("tpm2_createek -G {alg} -c ek3.ctx -u ek3.pub"),
        );
        tpm.step(
            "tpm2_readpublic of the EK context",
            "tpm2_readpublic -c ek3.ctx -o ek3.readpublic",
        );
        assert_eq!(
            hex::encode(tpm.read("ek3.pub")),
            hex::encode(tpm.read("ek3.readpublic")),
            "[{backend:?}] createek -u and readpublic -o must write the same TPM2B_PUBLIC"
        );

        tpm.restart();
        assert_eq!(
            first,
            createek(&tpm, 4),
            "[{backend:?}] the {alg} EK must survive a server restart (persistent seed)"
        );

        let other = Fixture::start(backend);
        assert_ne!(
            first,
            createek(&other, 1),
            "[{backend:?}] two TPMs with their own state must have different {alg} EKs"
        );
    }

    /// Item 2: tpm2_createak under the EK, tpm2_quote, tpm2_checkquote with PCR values and nonce;
    /// a wrong nonce and a changed PCR file are both rejected.
    pub fn quote_verifies(backend: Backend, ak_alg: &str) {
        let tpm = Fixture::start(backend);
        tpm.step("tpm2_createek -G rsa", "tpm2_createek -G rsa -c ek.ctx");
        let scheme = if ak_alg == "rsa" { "rsassa" } else { "ecdsa" };
        tpm.step(
            &format!("tpm2_createak -G {ak_alg} under the EK"),
            &format!(
                "tpm2_createak -C ek.ctx -c ak.ctx -G {ak_alg} -g sha256 -s {scheme} \
                 -u ak.pem -f pem -n ak.name"
            ),
        );
        assert_eq!(
            tpm.read("ak.name").len(),
            34,
            "[{backend:?}] an AK name is 2 + 32 bytes (SHA-256 nameAlg)"
        );

        let event = test_data("quote PCR 16", 32);
        let expected16 = extended_once(&event);
        tpm.step(
            "tpm2_pcrextend 16",
            &format!("tpm2_pcrextend 16:sha256={}", hex::encode(&event)),
        );
        let nonce = "5eed0123456789abcdef";
        tpm.step(
            "tpm2_quote sha256:0,16",
            &format!(
                "tpm2_quote -c ak.ctx -l sha256:0,16 -q {nonce} -m quote.msg -s quote.sig \
                 -o quote.pcrs -g sha256"
            ),
        );
        let attest = tpm.read("quote.msg");
        assert!(
            attest.starts_with(&[0xFF, 0x54, 0x43, 0x47, 0x80, 0x18]),
            "[{backend:?}] the quote is a TPMS_ATTEST (TPM_GENERATED_VALUE, \
             TPM_ST_ATTEST_QUOTE): {}",
            hex::encode(&attest)
        );
        assert!(
            find(&attest, &hex::decode(nonce).unwrap()).is_some(),
            "[{backend:?}] the quote carries the nonce as extraData"
        );

        let check = |pcrs: &str, nonce: &str| {
            format!(
                "tpm2_checkquote -u ak.pem -m quote.msg -s quote.sig -f {pcrs} -g sha256 \
                 -q {nonce}"
            )
        };
        let checked = tpm.ok(
            "tpm2_checkquote with the right nonce",
            &check("quote.pcrs", nonce),
        );
        let expected_line = format!("16: 0x{}", hex::encode_upper(&expected16));
        assert!(
            checked.contains(&expected_line),
            "[{backend:?}] checkquote lists PCR 16 = H(0…0 || event), {expected_line}:\n{checked}"
        );
        tpm.fails(
            "tpm2_checkquote with a wrong nonce",
            &check("quote.pcrs", "5eed0123456789abcdee"),
            "Error validating nonce from quote",
        );

        // Change the PCR 16 value in the PCR file: the quoted digest no longer matches.
        let mut changed = tpm.read("quote.pcrs");
        let at = find(&changed, &expected16)
            .unwrap_or_else(|| panic!("[{backend:?}] PCR 16's value is not in the PCR file"));
        changed[at] ^= 0x01;
        tpm.write("changed.pcrs", &changed);
        tpm.fails(
            "tpm2_checkquote with a changed PCR file",
            &check("changed.pcrs", nonce),
            "PCR values failed to match quote's digest",
        );
    }

    /// Item 3: tpm2_makecredential -T none with the EK public and the AK name, then
    /// tpm2_activatecredential with a PolicySecret(endorsement) session returns the secret;
    /// a credential made for another name does not activate.
    pub fn credential_activation(backend: Backend, alg: &str) {
        let tpm = Fixture::start(backend);
        tpm.step(
            &format!("tpm2_createek -G {alg}"),
            &format!("tpm2_createek -G {alg} -c ek.ctx -u ek.pub"),
        );
        let scheme = if alg == "rsa" { "rsassa" } else { "ecdsa" };
        tpm.step(
            &format!("tpm2_createak -G {alg}"),
            &format!(
                "tpm2_createak -C ek.ctx -c ak.ctx -G {alg} -g sha256 -s {scheme} -u ak.pub \
                 -n ak.name"
            ),
        );
        let name = tpm.read("ak.name");
        let secret = test_data("credential secret", 32);
        tpm.write("secret.bin", &secret);

        // tpm2_activatecredential of LABEL.cred with a PolicySecret(endorsement) session.
        let activate_file = |label: &str| -> Run {
            tpm.step(
                &format!("tpm2_startauthsession --policy-session ({label})"),
                &format!("tpm2_startauthsession --policy-session -S {label}.session.ctx"),
            );
            tpm.step(
                &format!("tpm2_policysecret -c e ({label})"),
                &format!("tpm2_policysecret -S {label}.session.ctx -c e"),
            );
            let run = tpm.exec(&format!(
                "tpm2_activatecredential -c ak.ctx -C ek.ctx -i {label}.cred -o {label}.out \
                 -P session:{label}.session.ctx"
            ));
            tpm.flush_transient("tpm2_activatecredential");
            run
        };
        let activate = |label: &str, name: &[u8]| -> Run {
            tpm.step(
                &format!("tpm2_makecredential -T none ({label})"),
                &format!(
                    "tpm2_makecredential -T none -e ek.pub -s secret.bin -n {} -o {label}.cred",
                    hex::encode(name)
                ),
            );
            activate_file(label)
        };

        let run = activate("right", &name);
        assert_eq!(
            run.code,
            Some(0),
            "tpm2_activatecredential of a credential for the AK's name failed\n{}",
            tpm.explain("tpm2_activatecredential", &run)
        );
        assert_eq!(
            hex::encode(tpm.read("right.out")),
            hex::encode(&secret),
            "[{backend:?}] tpm2_activatecredential must return the secret"
        );

        let mut other = name.clone();
        *other.last_mut().unwrap() ^= 0x01;
        let run = activate("other-name", &other);
        assert_refused(RC_INTEGRITY_PARAM1, &run, || {
            tpm.explain(
                "tpm2_activatecredential of a credential made for another name",
                &run,
            )
        });

        // The registrar's own challenge (attest::enroll, no TPM) opens on the TPM exactly as
        // tpm2_makecredential's does, and only for the AK it names.
        let ek = tpm2b_public(&tpm.read("ek.pub"));
        let ak = attest::AkPublic::from_tpm2b_public(&tpm.read("ak.pub")).expect("AK public");
        attest::enroll::check_ak_attributes(&ak).expect("tpm2_createak makes a proper AK");
        let mut rng = |b: &mut [u8]| b.iter_mut().for_each(|x| *x = random_u64() as u8);
        for (label, for_name, opens) in [
            ("registrar", &name, true),
            ("registrar-other", &other, false),
        ] {
            let challenge =
                attest::enroll::make_challenge(&ek, for_name, &mut rng).expect("challenge");
            tpm.write(
                &format!("{label}.cred"),
                &attest::enroll::tpm2_tools_credential_file(&challenge),
            );
            let run = activate_file(label);
            if opens {
                assert_eq!(run.code, Some(0), "{}", tpm.explain(label, &run));
                assert!(
                    attest::enroll::check_activation(
                        &challenge,
                        &tpm.read(&format!("{label}.out"))
                    ),
                    "[{backend:?}] the TPM returns the registrar's secret"
                );
            } else {
                assert_refused(RC_INTEGRITY_PARAM1, &run, || tpm.explain(label, &run));
            }
        }

        // A signing key that is not restricted is no attestation key.
        tpm.step(
            "tpm2_createprimary -C o (parent of a plain signing key)",
            "tpm2_createprimary -C o -g sha256 -G ecc -c plain-parent.ctx",
        );
        tpm.step(
            "tpm2_create an unrestricted signing key",
            "tpm2_create -C plain-parent.ctx -G ecc256 -u plain.pub -r plain.priv",
        );
        tpm.flush_transient("tpm2_create");
        let plain = attest::AkPublic::from_tpm2b_public(&tpm.read("plain.pub")).expect("key");
        let err = attest::enroll::check_ak_attributes(&plain).expect_err("not an AK");
        assert!(err.to_string().contains("lacks restricted"), "{err}");
    }

    /// Item 4a: tpm2_createprimary / tpm2_create / tpm2_load / tpm2_readpublic /
    /// tpm2_flushcontext / tpm2_evictcontrol to 0x81000001 and back out.
    pub fn object_lifecycle(backend: Backend, parent_alg: &str) {
        let tpm = Fixture::start(backend);
        tpm.step(
            &format!("tpm2_createprimary -C o -G {parent_alg}"),
            &format!("tpm2_createprimary -C o -g sha256 -G {parent_alg} -c prim.ctx"),
        );
        tpm.step(
            "tpm2_create an ecc256 signing key",
            "tpm2_create -C prim.ctx -G ecc256 -u k.pub -r k.priv",
        );
        tpm.step(
            "tpm2_load",
            "tpm2_load -C prim.ctx -u k.pub -r k.priv -c k.ctx -n load.name",
        );
        let name = object_name(&tpm.read("k.pub"));
        assert_eq!(
            hex::encode(tpm.read("load.name")),
            hex::encode(&name),
            "[{backend:?}] tpm2_load's name is 000b || SHA-256(TPMT_PUBLIC)"
        );
        let out = tpm.step(
            "tpm2_readpublic",
            "tpm2_readpublic -c k.ctx -n readpublic.name -f pem -o k.pem",
        );
        assert_eq!(
            hex::encode(tpm.read("readpublic.name")),
            hex::encode(&name),
            "[{backend:?}] tpm2_readpublic -n writes the object's name"
        );
        assert!(
            out.contains(&format!("name: {}", hex::encode(&name))),
            "[{backend:?}] tpm2_readpublic prints the object's name:\n{out}"
        );
        let text = tpm.key_text("k.pem");
        assert!(
            text.contains("NIST CURVE: P-256"),
            "[{backend:?}] tpm2_readpublic -f pem of an ecc256 key:\n{text}"
        );

        // tpm2_flushcontext HANDLE: load without flushing, then flush what is listed.
        assert_eq!(
            tpm.handles("transient"),
            Vec::<u32>::new(),
            "[{backend:?}] no transient objects after tpm2_flushcontext -t"
        );
        tpm.ok(
            "tpm2_load (kept loaded)",
            "tpm2_load -C prim.ctx -u k.pub -r k.priv -c k.ctx",
        );
        let loaded = tpm.handles("transient");
        assert!(
            !loaded.is_empty() && loaded.iter().all(|h| h >> 24 == 0x80),
            "[{backend:?}] tpm2_load leaves transient objects loaded: {loaded:x?}"
        );
        for h in &loaded {
            tpm.ok(
                &format!("tpm2_flushcontext 0x{h:x}"),
                &format!("tpm2_flushcontext 0x{h:x}"),
            );
        }
        assert_eq!(
            tpm.handles("transient"),
            Vec::<u32>::new(),
            "[{backend:?}] tpm2_flushcontext HANDLE flushed every listed object"
        );

        let persisted = tpm.step(
            "tpm2_evictcontrol to 0x81000001",
            "tpm2_evictcontrol -C o -c k.ctx 0x81000001",
        );
        assert!(
            persisted.contains("persistent-handle: 0x81000001")
                && persisted.contains("action: persisted"),
            "[{backend:?}] tpm2_evictcontrol reports the persisted handle:\n{persisted}"
        );
        assert!(
            tpm.handles("persistent").contains(&0x8100_0001),
            "[{backend:?}] tpm2_getcap handles-persistent lists 0x81000001"
        );
        tpm.step(
            "tpm2_readpublic 0x81000001",
            "tpm2_readpublic -c 0x81000001 -n persistent.name",
        );
        assert_eq!(
            hex::encode(tpm.read("persistent.name")),
            hex::encode(&name),
            "[{backend:?}] 0x81000001 holds the same object"
        );
        tpm.write("msg.txt", b"signed by a persistent key\n");
        tpm.step(
            "tpm2_sign with 0x81000001",
            "tpm2_sign -c 0x81000001 -g sha256 -o persistent.sig msg.txt",
        );
        tpm.step(
            "tpm2_verifysignature of 0x81000001's signature with the transient context",
            "tpm2_verifysignature -c k.ctx -g sha256 -m msg.txt -s persistent.sig",
        );
        let evicted = tpm.step(
            "tpm2_evictcontrol 0x81000001 out",
            "tpm2_evictcontrol -C o -c 0x81000001",
        );
        assert!(
            evicted.contains("action: evicted"),
            "[{backend:?}] tpm2_evictcontrol reports the eviction:\n{evicted}"
        );
        assert!(
            !tpm.handles("persistent").contains(&0x8100_0001),
            "[{backend:?}] 0x81000001 is gone from handles-persistent"
        );
        tpm.refused(
            "tpm2_readpublic of the evicted 0x81000001",
            "tpm2_readpublic -c 0x81000001",
            RC_HANDLE_1,
        );
    }

    /// Item 4b: tpm2_sign, verified by tpm2_verifysignature and by OpenSSL (tpm2_readpublic -f
    /// pem; tpm2_sign -f plain; openssl dgst -verify); another message fails both.
    pub fn sign_and_verify(backend: Backend, scheme: &str) {
        let tpm = Fixture::start(backend);
        let key_alg = if scheme == "ecdsa" {
            "ecc256"
        } else {
            "rsa2048"
        };
        tpm.child_key(&format!("-G {key_alg}"));
        tpm.write("msg.bin", &test_data("message to sign", 300));
        tpm.write("other.bin", &test_data("another message", 300));
        tpm.step(
            &format!("tpm2_sign -s {scheme} -f plain"),
            &format!("tpm2_sign -c k.ctx -g sha256 -s {scheme} -f plain -o sig.plain msg.bin"),
        );
        tpm.step(
            &format!("tpm2_sign -s {scheme} (TSS format)"),
            &format!("tpm2_sign -c k.ctx -g sha256 -s {scheme} -o sig.tss msg.bin"),
        );
        tpm.step(
            &format!("tpm2_verifysignature ({scheme})"),
            "tpm2_verifysignature -c k.ctx -g sha256 -m msg.bin -s sig.tss -t ticket",
        );
        tpm.refused(
            &format!("tpm2_verifysignature of another message ({scheme})"),
            "tpm2_verifysignature -c k.ctx -g sha256 -m other.bin -s sig.tss",
            RC_SIGNATURE_PARAM2,
        );

        let padding = match scheme {
            "rsapss" => "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:auto",
            _ => "",
        };
        let verify = |file: &str, padding: &str| {
            format!("openssl dgst -sha256 -verify k.pem {padding} -signature sig.plain {file}")
        };
        let out = tpm.ok(
            &format!("openssl dgst -verify ({scheme})"),
            &verify("msg.bin", padding),
        );
        assert!(
            out.contains("Verified OK"),
            "[{backend:?}] openssl verifies the {scheme} signature: {out}"
        );
        tpm.fails(
            &format!("openssl dgst -verify of another message ({scheme})"),
            &verify("other.bin", padding),
            "Verification failure",
        );
        if scheme != "ecdsa" {
            // The padding is the one asked for: PKCS#1 v1.5 does not verify as PSS, nor PSS
            // as PKCS#1 v1.5.
            let swapped = match scheme {
                "rsassa" => "-sigopt rsa_padding_mode:pss",
                _ => "",
            };
            tpm.fails(
                &format!("openssl dgst -verify of the {scheme} signature with the other padding"),
                &verify("msg.bin", swapped),
                "Verification failure",
            );
        }
    }

    /// tpm2_rsadecrypt of what OpenSSL encrypted to the key's public half (tpm2_readpublic -f
    /// pem): OAEP (SHA-256, also with a label), PKCS#1 v1.5 and raw; a damaged ciphertext and a
    /// wrong label are refused.
    pub fn rsa_decrypt(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.child_key(
            "-G rsa2048 -a decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth",
        );
        let msg = test_data("a secret to decrypt", 48);
        tpm.write("msg.bin", &msg);
        let encrypt = |out: &str, opts: &str| {
            tpm.step(
                &format!("openssl pkeyutl -encrypt {opts}"),
                &format!(
                    "openssl pkeyutl -encrypt -pubin -inkey k.pem -in msg.bin -out {out} {opts}"
                ),
            );
        };
        encrypt(
            "ct.oaep",
            "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256",
        );
        encrypt(
            "ct.label",
            "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 \
             -pkeyopt rsa_oaep_label:6c6162656c00",
        );
        encrypt("ct.pkcs1", "-pkeyopt rsa_padding_mode:pkcs1");
        for (what, cmd, out) in [
            (
                "oaep",
                "tpm2_rsadecrypt -c k.ctx -s oaep -o pt.oaep ct.oaep",
                "pt.oaep",
            ),
            (
                "oaep with a label",
                "tpm2_rsadecrypt -c k.ctx -s oaep -l label -o pt.label ct.label",
                "pt.label",
            ),
            (
                "rsaes",
                "tpm2_rsadecrypt -c k.ctx -s rsaes -o pt.pkcs1 ct.pkcs1",
                "pt.pkcs1",
            ),
        ] {
            tpm.step(&format!("tpm2_rsadecrypt ({what})"), cmd);
            assert_eq!(tpm.read(out), msg, "[{backend:?}] tpm2_rsadecrypt ({what})");
        }
        // Raw RSA: the OAEP block itself comes back, key-size octets, and OpenSSL's raw
        // public operation on it gives the ciphertext again.
        tpm.step(
            "tpm2_rsadecrypt (null)",
            "tpm2_rsadecrypt -c k.ctx -s null -o block.raw ct.oaep",
        );
        assert_eq!(tpm.read("block.raw").len(), 256);
        tpm.step(
            "openssl pkeyutl -encrypt (raw)",
            "openssl pkeyutl -encrypt -pubin -inkey k.pem -in block.raw -out ct.again -pkeyopt rsa_padding_mode:none",
        );
        assert_eq!(
            tpm.read("ct.again"),
            tpm.read("ct.oaep"),
            "[{backend:?}] raw RSA"
        );

        // A decryption that fails is TPM_RC_VALUE. libtpms before 0.10 (Debian 12's swtpm peer
        // runs 0.9.2) answered TPM_RC_FAILURE instead, which reads as a TPM in failure mode;
        // libtpms changed it to TPM_RC_VALUE in 2024 (stefanberger/libtpms#444).
        let failed = match backend {
            Backend::Ours => RC_VALUE_PARAM1,
            Backend::SwtpmPeer => RC_FAILURE,
        };
        let mut damaged = tpm.read("ct.oaep");
        damaged[100] ^= 0x10;
        tpm.write("ct.damaged", &damaged);
        tpm.refused(
            "tpm2_rsadecrypt of a damaged ciphertext (oaep)",
            "tpm2_rsadecrypt -c k.ctx -s oaep -o pt.bad ct.damaged",
            failed,
        );
        tpm.refused(
            "tpm2_rsadecrypt with the wrong label (oaep)",
            "tpm2_rsadecrypt -c k.ctx -s oaep -l other -o pt.bad ct.label",
            failed,
        );
        tpm.refused(
            "tpm2_rsadecrypt of an OAEP ciphertext as PKCS#1 v1.5",
            "tpm2_rsadecrypt -c k.ctx -s rsaes -o pt.bad ct.oaep",
            failed,
        );
    }

    /// Item 5: A PolicyPCR policy gates tpm2_unseal, and stops opening it once the PCR changes.
    pub fn policy_pcr_gates_unseal(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.step(
            "tpm2_createprimary -C o -G ecc",
            "tpm2_createprimary -C o -g sha256 -G ecc -c prim.ctx",
        );
        tpm.step(
            "tpm2_createpolicy --policy-pcr -l sha256:16",
            "tpm2_createpolicy --policy-pcr -l sha256:16 -L pcr.policy",
        );
        assert_eq!(
            hex::encode(tpm.read("pcr.policy")),
            hex::encode(policy_pcr_digest(16, &[0u8; 32])),
            "[{backend:?}] the PolicyPCR digest over a fresh PCR 16 (TPM 2.0 Part 3, PolicyPCR)"
        );

        let secret = test_data("sealed secret", 48);
        tpm.write("secret.bin", &secret);
        // Without userwithauth only the policy can authorize the object's use.
        tpm.step(
            "tpm2_create -i secret -L policy (sealed object)",
            "tpm2_create -C prim.ctx -i secret.bin -L pcr.policy -a fixedtpm|fixedparent \
             -u seal.pub -r seal.priv",
        );
        tpm.step(
            "tpm2_load the sealed object",
            "tpm2_load -C prim.ctx -u seal.pub -r seal.priv -c seal.ctx",
        );
        tpm.step(
            "tpm2_unseal -p pcr:sha256:16 (PCR unchanged)",
            "tpm2_unseal -c seal.ctx -p pcr:sha256:16 -o unsealed.bin",
        );
        assert_eq!(
            hex::encode(tpm.read("unsealed.bin")),
            hex::encode(&secret),
            "[{backend:?}] tpm2_unseal under the PCR policy returns the sealed secret"
        );
        tpm.refused(
            "tpm2_unseal with the (empty) password instead of the policy",
            "tpm2_unseal -c seal.ctx -o unsealed-password.bin",
            RC_AUTH_UNAVAILABLE,
        );

        tpm.step(
            "tpm2_pcrextend 16",
            &format!(
                "tpm2_pcrextend 16:sha256={}",
                hex::encode(test_data("PCR 16 changes", 32))
            ),
        );
        tpm.refused(
            "tpm2_unseal -p pcr:sha256:16 after the PCR changed",
            "tpm2_unseal -c seal.ctx -p pcr:sha256:16 -o unsealed-after.bin",
            RC_POLICY_FAIL_SESSION1,
        );
    }

    /// Item 6: A salted HMAC session with parameter encryption both ways: tpm2_getrandom and NV
    /// reads and writes through it agree with plain password sessions.
    pub fn hmac_session_parameter_encryption(backend: Backend, salt_alg: &str) {
        let tpm = Fixture::start(backend);
        tpm.step(
            &format!("tpm2_createprimary -C o -G {salt_alg} (the salt key)"),
            &format!("tpm2_createprimary -C o -g sha256 -G {salt_alg} -c salt.ctx"),
        );
        tpm.step(
            "tpm2_startauthsession --hmac-session -c KEY (salted)",
            "tpm2_startauthsession --hmac-session -c salt.ctx -S s.ctx",
        );
        tpm.step(
            "tpm2_sessionconfig --enable-encrypt --enable-decrypt",
            "tpm2_sessionconfig s.ctx --enable-encrypt --enable-decrypt",
        );
        let config = tpm.step("tpm2_sessionconfig (show)", "tpm2_sessionconfig s.ctx");
        assert!(
            config.contains("decrypt") && config.contains("encrypt"),
            "[{backend:?}] the session has decrypt and encrypt set:\n{config}"
        );
        // The session lives on between tools as a saved context: it keeps its handle, which
        // GetCapability lists and no other session may take (tools start sessions of their
        // own, e.g. tpm2_nvread -S below authorizes with a second HMAC session).
        let handle = config
            .lines()
            .find_map(|l| l.trim().strip_prefix("Session-Handle:"))
            .and_then(parse_u64)
            .unwrap_or_else(|| panic!("[{backend:?}] no Session-Handle in:\n{config}"));
        let saved = tpm.handles("saved-session");
        assert!(
            saved.contains(&(handle as u32)),
            "[{backend:?}] tpm2_getcap handles-saved-session lists the context-saved session \
             0x{handle:08x}: {saved:x?}"
        );
        tpm.step(
            "tpm2_startauthsession --hmac-session (another session)",
            "tpm2_startauthsession --hmac-session -S other.ctx",
        );
        let other = tpm.step(
            "tpm2_sessionconfig other.ctx",
            "tpm2_sessionconfig other.ctx",
        );
        assert!(
            !other.contains(&format!("Session-Handle: 0x{handle:08x}")),
            "[{backend:?}] a new session must not take the handle 0x{handle:08x} of a \
             context-saved session:\n{other}"
        );
        tpm.step("tpm2_flushcontext other.ctx", "tpm2_flushcontext other.ctx");

        tpm.step(
            "tpm2_getrandom 16 -S (encrypted response)",
            "tpm2_getrandom 16 -S s.ctx -o r1.bin",
        );
        tpm.step(
            "tpm2_getrandom 16 -S (again)",
            "tpm2_getrandom 16 -S s.ctx -o r2.bin",
        );
        let (r1, r2) = (tpm.read("r1.bin"), tpm.read("r2.bin"));
        assert_eq!(
            r1.len(),
            16,
            "[{backend:?}] tpm2_getrandom 16 gives 16 bytes"
        );
        assert_eq!(
            r2.len(),
            16,
            "[{backend:?}] tpm2_getrandom 16 gives 16 bytes"
        );
        assert_ne!(r1, r2, "[{backend:?}] two random draws differ");

        let index = "0x1500016";
        tpm.step(
            "tpm2_nvdefine",
            &format!("tpm2_nvdefine {index} -C o -s 32 -a ownerread|ownerwrite|authread|authwrite"),
        );
        // Written through the session (command parameter encrypted), read in the clear.
        tpm.write(
            "data1.bin",
            &test_data("NV data via the encrypting session", 32),
        );
        tpm.step(
            "tpm2_nvwrite -P session:s.ctx (encrypted command parameter)",
            &format!("tpm2_nvwrite {index} -C o -P session:s.ctx -i data1.bin"),
        );
        tpm.step(
            "tpm2_nvread with a password session",
            &format!("tpm2_nvread {index} -C o -s 32 -o plain1.bin"),
        );
        assert_eq!(
            hex::encode(tpm.read("plain1.bin")),
            hex::encode(tpm.read("data1.bin")),
            "[{backend:?}] the TPM decrypted the NV data written through the session"
        );
        // Written in the clear, read through the session (response parameter encrypted).
        tpm.write("data2.bin", &test_data("NV data in the clear", 32));
        tpm.step(
            "tpm2_nvwrite with a password session",
            &format!("tpm2_nvwrite {index} -C o -i data2.bin"),
        );
        tpm.step(
            "tpm2_nvread -P session:s.ctx (encrypted response parameter)",
            &format!("tpm2_nvread {index} -C o -s 32 -P session:s.ctx -o via-p.bin"),
        );
        assert_eq!(
            hex::encode(tpm.read("via-p.bin")),
            hex::encode(tpm.read("data2.bin")),
            "[{backend:?}] NV read through the session (-P session:) returns the data"
        );
        tpm.step(
            "tpm2_nvread -S s.ctx (auxiliary encrypting session)",
            &format!("tpm2_nvread {index} -C o -s 32 -S s.ctx -o via-s.bin"),
        );
        assert_eq!(
            hex::encode(tpm.read("via-s.bin")),
            hex::encode(tpm.read("data2.bin")),
            "[{backend:?}] NV read with the session as auxiliary session (-S) returns the data"
        );
        tpm.step("tpm2_flushcontext s.ctx", "tpm2_flushcontext s.ctx");
    }

    /// Item 7a: tpm2_changeauth -c o, operations with -P; tpm2_clear with the lockout auth resets
    /// owner and lockout auth, evicts the owner's persistent objects and changes the storage
    /// seed but not the endorsement seed.
    pub fn owner_auth_and_clear(backend: Backend) {
        let tpm = Fixture::start(backend);
        let primary = |label: &str, auth: &str| -> String {
            tpm.step(
                &format!("tpm2_createprimary -C o {auth} ({label})"),
                &format!("tpm2_createprimary -C o {auth} -g sha256 -G ecc -c {label}.ctx"),
            );
            tpm.step(
                &format!("tpm2_readpublic ({label})"),
                &format!("tpm2_readpublic -c {label}.ctx -f pem -o {label}.pem"),
            );
            String::from_utf8_lossy(&tpm.read(&format!("{label}.pem"))).into_owned()
        };
        let ek = |label: &str| -> String {
            tpm.step(
                &format!("tpm2_createek ({label})"),
                &format!("tpm2_createek -G ecc -c {label}.ctx -u {label}.pem -f pem"),
            );
            String::from_utf8_lossy(&tpm.read(&format!("{label}.pem"))).into_owned()
        };

        let before = primary("before", "");
        let ek_before = ek("ek-before");
        tpm.step(
            "tpm2_evictcontrol of the owner primary to 0x81000002",
            "tpm2_evictcontrol -C o -c before.ctx 0x81000002",
        );

        tpm.step(
            "tpm2_changeauth -c o newpass",
            "tpm2_changeauth -c o newpass",
        );
        assert_eq!(
            tpm.variable_property("ownerAuthSet"),
            1,
            "[{backend:?}] TPMA_PERMANENT.ownerAuthSet after tpm2_changeauth -c o"
        );
        tpm.refused(
            "tpm2_createprimary -C o without the new owner password",
            "tpm2_createprimary -C o -c x.ctx",
            RC_BAD_AUTH_SESSION1,
        );
        assert_eq!(
            primary("with-password", "-P newpass"),
            before,
            "[{backend:?}] the owner password does not change the storage seed: same primary"
        );
        tpm.step(
            "tpm2_changeauth -c o -p newpass newerpass",
            "tpm2_changeauth -c o -p newpass newerpass",
        );
        tpm.refused(
            "tpm2_createprimary -C o -P newpass (the old password)",
            "tpm2_createprimary -C o -P newpass -c x.ctx",
            RC_BAD_AUTH_SESSION1,
        );

        tpm.step(
            "tpm2_changeauth -c l lockpass",
            "tpm2_changeauth -c l lockpass",
        );
        assert_eq!(
            tpm.variable_property("lockoutAuthSet"),
            1,
            "[{backend:?}] TPMA_PERMANENT.lockoutAuthSet after tpm2_changeauth -c l"
        );
        tpm.step("tpm2_clear -c l lockpass", "tpm2_clear -c l lockpass");
        assert_eq!(
            tpm.variable_property("ownerAuthSet"),
            0,
            "[{backend:?}] TPM2_Clear resets ownerAuth"
        );
        assert_eq!(
            tpm.variable_property("lockoutAuthSet"),
            0,
            "[{backend:?}] TPM2_Clear resets lockoutAuth"
        );
        assert!(
            !tpm.handles("persistent").contains(&0x8100_0002),
            "[{backend:?}] TPM2_Clear evicts the owner's persistent objects"
        );
        assert_ne!(
            primary("after", ""),
            before,
            "[{backend:?}] TPM2_Clear changes the storage primary seed"
        );
        assert_eq!(
            ek("ek-after"),
            ek_before,
            "[{backend:?}] TPM2_Clear keeps the endorsement primary seed"
        );
    }

    /// Item 7b: Dictionary-attack lockout: after maxTries bad passwords on a DA-protected NV index
    /// the TPM is in lockout (TPM_RC_LOCKOUT even with the right password, while a noDA index
    /// still works); tpm2_dictionarylockout -c ends it; a bad lockout password then locks the
    /// lockout hierarchy itself for lockoutRecovery.
    pub fn dictionary_attack_lockout(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.step(
            "tpm2_changeauth -c l lockpass",
            "tpm2_changeauth -c l lockpass",
        );
        tpm.step(
            "tpm2_dictionarylockout -s -n 3 -t 1000 -l 1000",
            "tpm2_dictionarylockout -s -n 3 -t 1000 -l 1000 -p lockpass",
        );
        for (name, value) in [
            ("TPM2_PT_MAX_AUTH_FAIL", 3),
            ("TPM2_PT_LOCKOUT_INTERVAL", 1000),
            ("TPM2_PT_LOCKOUT_RECOVERY", 1000),
            ("TPM2_PT_LOCKOUT_COUNTER", 0),
            ("inLockout", 0),
        ] {
            assert_eq!(
                tpm.variable_property(name),
                value,
                "[{backend:?}] {name} after tpm2_dictionarylockout -s -n 3 -t 1000 -l 1000"
            );
        }

        let (da, noda) = ("0x1500020", "0x1500021");
        let attrs = "ownerread|ownerwrite|authread|authwrite";
        tpm.step(
            "tpm2_nvdefine a DA-protected index with a password",
            &format!("tpm2_nvdefine {da} -C o -s 8 -a {attrs} -p nvpass"),
        );
        tpm.step(
            "tpm2_nvdefine a no_da index with a password",
            &format!("tpm2_nvdefine {noda} -C o -s 8 -a {attrs}|no_da -p nodapass"),
        );
        tpm.write("data.bin", b"12345678");
        for index in [da, noda] {
            tpm.step(
                &format!("tpm2_nvwrite {index}"),
                &format!("tpm2_nvwrite {index} -C o -i data.bin"),
            );
        }
        for attempt in 1..=3 {
            tpm.refused(
                &format!("tpm2_nvread {da} with a bad password (attempt {attempt})"),
                &format!("tpm2_nvread {da} -C {da} -P wrong -s 8"),
                RC_AUTH_FAIL_SESSION1,
            );
        }
        assert_eq!(
            tpm.variable_property("TPM2_PT_LOCKOUT_COUNTER"),
            3,
            "[{backend:?}] three authorization failures counted"
        );
        assert_eq!(
            tpm.variable_property("inLockout"),
            1,
            "[{backend:?}] failedTries reached maxTries: TPMA_PERMANENT.inLockout"
        );
        tpm.refused(
            "tpm2_nvread of the DA index with the right password during lockout",
            &format!("tpm2_nvread {da} -C {da} -P nvpass -s 8"),
            RC_LOCKOUT,
        );
        tpm.step(
            "tpm2_nvread of the no_da index during lockout",
            &format!("tpm2_nvread {noda} -C {noda} -P nodapass -s 8 -o noda.bin"),
        );
        assert_eq!(
            tpm.read("noda.bin"),
            b"12345678",
            "[{backend:?}] no_da index data"
        );

        tpm.step(
            "tpm2_dictionarylockout -c (with the lockout password)",
            "tpm2_dictionarylockout -c -p lockpass",
        );
        assert_eq!(
            tpm.variable_property("TPM2_PT_LOCKOUT_COUNTER"),
            0,
            "[{backend:?}] DictionaryAttackLockReset zeroes the counter"
        );
        assert_eq!(
            tpm.variable_property("inLockout"),
            0,
            "[{backend:?}] DictionaryAttackLockReset ends the lockout"
        );
        tpm.step(
            "tpm2_nvread of the DA index after tpm2_dictionarylockout -c",
            &format!("tpm2_nvread {da} -C {da} -P nvpass -s 8 -o da.bin"),
        );
        assert_eq!(
            tpm.read("da.bin"),
            b"12345678",
            "[{backend:?}] DA index data"
        );

        // A bad lockout password disables lockoutAuth for lockoutRecovery seconds.
        tpm.refused(
            "tpm2_dictionarylockout -c with a bad lockout password",
            "tpm2_dictionarylockout -c -p wrong",
            RC_AUTH_FAIL_SESSION1,
        );
        tpm.refused(
            "tpm2_dictionarylockout -c with the right password within lockoutRecovery",
            "tpm2_dictionarylockout -c -p lockpass",
            RC_LOCKOUT,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// EK certificates (ours only: swtpm has them only after swtpm_setup provisioning)
// ---------------------------------------------------------------------------------------------

/// Item 1b: The key in the EK certificate at the TCG-defined NV index is the key tpm2_createek
/// makes, and the certificate verifies against `trustlaunch vtpm ca export` (and not
/// against another CA).
fn ek_certificate(alg: &str, nv_index: u32) {
    let tpm = Fixture::start_with_ca();
    let ca_dir = tpm.ca_dir.clone().expect("CA directory");
    tpm.step(
        &format!("tpm2_createek -G {alg} -f pem"),
        &format!("tpm2_createek -G {alg} -c ek.ctx -u ek.pem -f pem"),
    );
    assert!(
        tpm.handles("nv-index").contains(&nv_index),
        "[Ours] the {alg} EK certificate index 0x{nv_index:08x} is defined"
    );
    tpm.step(
        &format!("tpm2_nvread -C o 0x{nv_index:08x}"),
        &format!("tpm2_nvread -C o 0x{nv_index:08x} -o ekcert.der"),
    );
    let cert_key = tpm.ok(
        "openssl x509 -inform DER -pubkey -noout",
        "openssl x509 -inform DER -in ekcert.der -pubkey -noout",
    );
    tpm.write("ekcert.pubkey.pem", cert_key.as_bytes());
    assert_eq!(
        hex::encode(tpm.spki_der("ekcert.pubkey.pem")),
        hex::encode(tpm.spki_der("ek.pem")),
        "[Ours] the {alg} EK certificate at 0x{nv_index:08x} certifies tpm2_createek's key"
    );

    let ca = tpm.ok(
        "trustlaunch vtpm ca export",
        &format!(
            "{} vtpm ca export --ca-dir {}",
            env!("CARGO_BIN_EXE_trustlaunch"),
            ca_dir.display()
        ),
    );
    assert!(
        ca.contains("-----BEGIN CERTIFICATE-----"),
        "[Ours] trustlaunch vtpm ca export prints a PEM certificate:\n{ca}"
    );
    tpm.write("ca.pem", ca.as_bytes());
    tpm.ok(
        "openssl x509: the EK certificate to PEM",
        "openssl x509 -inform DER -in ekcert.der -out ekcert.pem",
    );
    let verified = tpm.ok(
        "openssl verify of the EK certificate against the exported CA",
        "openssl verify -partial_chain -CAfile ca.pem ekcert.pem",
    );
    assert!(
        verified.contains(": OK"),
        "[Ours] openssl verify: {verified}"
    );

    // Not vacuous: an unrelated CA does not verify it.
    tpm.ok(
        "openssl req: make an unrelated CA",
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
         -keyout other.key -out other.pem -subj /CN=unrelated -days 2",
    );
    tpm.fails(
        "openssl verify of the EK certificate against an unrelated CA",
        "openssl verify -partial_chain -CAfile other.pem ekcert.pem",
        "error",
    );

    // The registrar agrees with openssl verify, and checks the certificate names this EK.
    tpm.step(
        "tpm2_readpublic -c ek.ctx -o ek.pub",
        "tpm2_readpublic -c ek.ctx -o ek.pub",
    );
    let ek = tpm2b_public(&tpm.read("ek.pub"));
    let der = tpm.read("ekcert.der");
    let mut trusted = attest::enroll::TrustedRoots::new();
    trusted.add(&tpm.read("ca.pem")).expect("CA certificate");
    let verified = attest::enroll::verify_ek_certificate(&der, &[], &trusted)
        .unwrap_or_else(|e| panic!("[Ours] registrar refuses the {alg} EK certificate: {e}"));
    verified.check_certifies(&ek).expect("certifies the EK");
    let mut other_ek = ek.clone();
    match &mut other_ek.parms {
        tpm::object::PublicParms::Rsa { modulus, .. } => modulus[10] ^= 1,
        tpm::object::PublicParms::Ecc { x, .. } => x[10] ^= 1,
        _ => unreachable!("an EK is RSA or ECC"),
    }
    assert!(
        !verified.certifies(&other_ek),
        "another key is not certified"
    );
    let mut unrelated = attest::enroll::TrustedRoots::new();
    unrelated
        .add(&tpm.read("other.pem"))
        .expect("CA certificate");
    let err = attest::enroll::verify_ek_certificate(&der, &[], &unrelated)
        .expect_err("an unrelated CA does not vouch for the EK");
    assert!(
        err.to_string()
            .starts_with("EK certificate from an unknown CA"),
        "{err}"
    );
}

/// A TPM2B_PUBLIC file (tpm2-tools' default `-u`/`-o` format) as a TPMT_PUBLIC.
fn tpm2b_public(bytes: &[u8]) -> tpm::object::TpmtPublic {
    use tpm::codec::Unmarshal;
    tpm::object::TpmtPublic::from_bytes(bytes.get(2..).expect("TPM2B size")).expect("TPMT_PUBLIC")
}

// ---------------------------------------------------------------------------------------------
// The suites
// ---------------------------------------------------------------------------------------------

macro_rules! suite {
    ($name:ident, $backend:expr) => {
        mod $name {
            use super::{steps, Backend};
            #[test]
            fn createek_rsa_is_stable() {
                steps::createek_is_stable($backend, "rsa")
            }
            #[test]
            fn createek_ecc_is_stable() {
                steps::createek_is_stable($backend, "ecc")
            }
            #[test]
            fn quote_ecc_ak() {
                steps::quote_verifies($backend, "ecc")
            }
            #[test]
            fn quote_rsa_ak() {
                steps::quote_verifies($backend, "rsa")
            }
            #[test]
            fn credential_activation_rsa() {
                steps::credential_activation($backend, "rsa")
            }
            #[test]
            fn credential_activation_ecc() {
                steps::credential_activation($backend, "ecc")
            }
            #[test]
            fn object_lifecycle_rsa_parent() {
                steps::object_lifecycle($backend, "rsa")
            }
            #[test]
            fn object_lifecycle_ecc_parent() {
                steps::object_lifecycle($backend, "ecc")
            }
            #[test]
            fn sign_rsassa() {
                steps::sign_and_verify($backend, "rsassa")
            }
            #[test]
            fn sign_rsapss() {
                steps::sign_and_verify($backend, "rsapss")
            }
            #[test]
            fn sign_ecdsa() {
                steps::sign_and_verify($backend, "ecdsa")
            }
            #[test]
            fn rsa_decrypt() {
                steps::rsa_decrypt($backend)
            }
            #[test]
            fn policy_pcr_gates_unseal() {
                steps::policy_pcr_gates_unseal($backend)
            }
            #[test]
            fn hmac_session_encryption_rsa_salt() {
                steps::hmac_session_parameter_encryption($backend, "rsa")
            }
            #[test]
            fn hmac_session_encryption_ecc_salt() {
                steps::hmac_session_parameter_encryption($backend, "ecc")
            }
            #[test]
            fn owner_auth_and_clear() {
                steps::owner_auth_and_clear($backend)
            }
            #[test]
            fn dictionary_attack_lockout() {
                steps::dictionary_attack_lockout($backend)
            }
        }
    };
}

// The peer: real swtpm, proving the expectations are TPM truth.
suite!(swtpm_peer, Backend::SwtpmPeer);
// Ours, over the swtpm socket protocol.
suite!(ours, Backend::Ours);

mod ours_ek_certificates {
    #[test]
    fn ek_certificate_rsa() {
        super::ek_certificate("rsa", 0x01c0_0002)
    }
    #[test]
    fn ek_certificate_ecc() {
        super::ek_certificate("ecc", 0x01c0_000a)
    }
}
