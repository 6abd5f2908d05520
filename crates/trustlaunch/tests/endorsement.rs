//! Endorsement as a verifier sees it, with real tools only: `trustlaunch vtpm socket` (and
//! `mssim`) manufacture a TPM whose EK certificates `tpm2_nvread -C o` and
//! `tpm2_getekcertificate` read from NV, whose public keys are the ones `tpm2_createek`
//! derives, and which `openssl verify` accepts against `trustlaunch vtpm ca export`.
//!
//! No extra `openssl verify` flags are needed: the exported CA certificate is a
//! self-signed root (so no `-partial_chain`, which is only for trust anchors that are not
//! self-signed), and the EK certificates' critical extensions (subjectAltName,
//! basicConstraints, keyUsage) are all ones OpenSSL processes (so no `-ignore_critical`,
//! which EK certificates with critical extensions unknown to OpenSSL need). The empty
//! subject is allowed because the subjectAltName is critical (RFC 5280, 4.1.2.6), which
//! even `-x509_strict` checks.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

mod ports;
use ports::free_port_pair;

const BIN: &str = env!("CARGO_BIN_EXE_trustlaunch");
/// Longest a server may take to write its pid file (provisioning included).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest any tool invocation may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
const RSA_EK_CERT: &str = "0x01c00002";
const ECC_EK_CERT: &str = "0x01c0000a";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    Swtpm,
    Mssim,
}

/// One `trustlaunch vtpm` server with its own state directory; killed on drop.
struct Server {
    protocol: Protocol,
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
    /// From spawn to the pid file: manufacture (and provisioning) included.
    startup: Duration,
}

impl Server {
    /// Start on free ports with a fresh state directory; `ca_dir` None is `--no-ek-cert`.
    fn start(protocol: Protocol, ca_dir: Option<&Path>) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("trustlaunch-endorsement-")
            .tempdir()
            .expect("tempdir");
        fs::create_dir(dir.path().join("state")).expect("mkdir state");
        let mut last = String::new();
        for _ in 0..8 {
            let port = free_port_pair();
            let pid = dir.path().join("pid");
            let log = dir.path().join("server.log");
            let mut cmd = Command::new(BIN);
            cmd.arg("vtpm");
            let tpmstate = format!("dir={}", dir.path().join("state").display());
            match protocol {
                Protocol::Swtpm => {
                    cmd.args(["socket", "--tpm2"])
                        .args(["--server", &format!("type=tcp,port={port}")])
                        .args(["--ctrl", &format!("type=tcp,port={}", port + 1)])
                        .args(["--flags", "not-need-init,startup-clear"]);
                }
                Protocol::Mssim => {
                    cmd.args(["mssim", "--port", &port.to_string()]);
                }
            }
            cmd.args(["--tpmstate", &tpmstate])
                .args(["--pid", &format!("file={}", pid.display())])
                .args(["--log", &format!("file={},level=2", log.display())]);
            match ca_dir {
                Some(ca) => cmd.arg("--ca-dir").arg(ca),
                None => cmd.arg("--no-ek-cert"),
            };
            let started = Instant::now();
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn trustlaunch");
            loop {
                if pid.exists() {
                    let server = Server {
                        protocol,
                        port,
                        child,
                        dir,
                        startup: started.elapsed(),
                    };
                    if protocol == Protocol::Mssim {
                        // mssim has no --flags: power on and start up as a platform would.
                        server.tool(&["tpm2_startup", "-c"]);
                    }
                    return server;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut err);
                    }
                    last = format!("exited {status}: {err}");
                    break;
                }
                if started.elapsed() > START_TIMEOUT {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("server not ready within {START_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("server did not start: {last}");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn tcti(&self) -> String {
        let kind = match self.protocol {
            Protocol::Swtpm => "swtpm",
            Protocol::Mssim => "mssim",
        };
        format!("{kind}:host=127.0.0.1,port={}", self.port)
    }

    /// Run a tpm2-tools command against this server; panics unless it succeeds.
    fn tool(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(args[0]);
        cmd.args(&args[1..])
            .env("TPM2TOOLS_TCTI", self.tcti())
            .env_remove("TSS2_LOG")
            .current_dir(self.dir.path());
        let out = run(cmd, &args.join(" "));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `tpm2_nvread -C o INDEX` as a file in the test directory.
    fn read_cert(&self, index: &str) -> PathBuf {
        let path = self.path(&format!("{index}.der"));
        self.tool(&[
            "tpm2_nvread",
            "-C",
            "o",
            index,
            "-o",
            &path.display().to_string(),
        ]);
        path
    }

    /// `tpm2_createek -G alg -f pem`: the EK public key (PEM); the EK is flushed again.
    fn createek(&self, alg: &str, name: &str) -> String {
        let public = self.path(&format!("{name}.pem"));
        let ctx = self.path(&format!("{name}.ctx"));
        self.tool(&[
            "tpm2_createek",
            "-G",
            alg,
            "-c",
            &ctx.display().to_string(),
            "-f",
            "pem",
            "-u",
            &public.display().to_string(),
        ]);
        self.tool(&["tpm2_flushcontext", "-t"]);
        fs::read_to_string(public).expect("EK public key")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `cmd` with a timeout; panics with its output unless it exits 0.
fn run(mut cmd: Command, what: &str) -> Output {
    let out_file = tempfile::tempfile().expect("tempfile");
    let err_file = tempfile::tempfile().expect("tempfile");
    cmd.stdin(Stdio::null())
        .stdout(out_file.try_clone().expect("dup"))
        .stderr(err_file.try_clone().expect("dup"));
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot run {what}: {e} (are tpm2-tools and openssl installed?)")
    });
    let status = match child.wait_timeout(TOOL_TIMEOUT) {
        Ok(Some(s)) => s,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {TOOL_TIMEOUT:?}");
        }
    };
    let read = |mut f: fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        let _ = f.rewind();
        let _ = f.read_to_end(&mut v);
        v
    };
    let out = Output {
        status,
        stdout: read(out_file),
        stderr: read(err_file),
    };
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn openssl(args: &[&str]) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    String::from_utf8_lossy(&run(cmd, &format!("openssl {}", args.join(" "))).stdout).into_owned()
}

/// `trustlaunch vtpm ca export --ca-dir DIR`, written to `out`.
fn export_ca(ca_dir: &Path, out: &Path) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["vtpm", "ca", "export", "--ca-dir"]).arg(ca_dir);
    let pem = String::from_utf8(run(cmd, "trustlaunch vtpm ca export").stdout).expect("UTF-8");
    fs::File::create(out)
        .and_then(|mut f| f.write_all(pem.as_bytes()))
        .expect("write CA");
    pem
}

fn cert_pubkey(der: &Path) -> String {
    openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        &der.display().to_string(),
        "-noout",
        "-pubkey",
    ])
}

/// `openssl verify -CAfile ca.pem` (plain, then `-x509_strict`) on a DER certificate.
fn verify(ca_pem: &Path, der: &Path) {
    let pem = der.with_extension("pem");
    openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        &der.display().to_string(),
        "-out",
        &pem.display().to_string(),
    ]);
    let (ca, cert) = (ca_pem.display().to_string(), pem.display().to_string());
    let out = openssl(&["verify", "-CAfile", &ca, &cert]);
    assert_eq!(out.trim(), format!("{cert}: OK"));
    let out = openssl(&["verify", "-x509_strict", "-CAfile", &ca, &cert]);
    assert_eq!(out.trim(), format!("{cert}: OK"));
}

fn issuer(der: &Path) -> String {
    openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        &der.display().to_string(),
        "-noout",
        "-issuer",
    ])
}

#[test]
fn ek_certificates_match_tpm2_createek_and_verify_against_the_exported_ca() {
    let ca = tempfile::tempdir().expect("tempdir");
    let ca_dir = ca.path().join("vtpm-ca");
    let tpm = Server::start(Protocol::Swtpm, Some(&ca_dir));
    eprintln!("server start with EK provisioning: {:?}", tpm.startup);
    let ca_pem = tpm.path("ca.pem");
    export_ca(&ca_dir, &ca_pem);
    let nv = tpm.tool(&["tpm2_getcap", "handles-nv-index"]);
    assert!(
        nv.contains("0x1C00002") && nv.contains("0x1C0000A"),
        "{nv}\n{}",
        tpm.log()
    );
    for (alg, index) in [("rsa", RSA_EK_CERT), ("ecc", ECC_EK_CERT)] {
        let der = tpm.read_cert(index);
        let cert_key = cert_pubkey(&der);
        let ek = tpm.createek(alg, &format!("ek-{alg}"));
        assert_eq!(
            cert_key, ek,
            "{alg}: the certificate certifies tpm2_createek's EK"
        );
        assert_eq!(
            tpm.createek(alg, &format!("ek-{alg}-again")),
            ek,
            "{alg}: the EK is derived, the same every time"
        );
        verify(&ca_pem, &der);
        let text = openssl(&[
            "x509",
            "-inform",
            "DER",
            "-in",
            &der.display().to_string(),
            "-noout",
            "-text",
        ]);
        for want in [
            "DirName:/2.23.133.2.1=id:544C4348/2.23.133.2.2=",
            "X509v3 Subject Alternative Name: critical",
            "X509v3 Basic Constraints: critical",
            "CA:FALSE",
            "X509v3 Key Usage: critical",
            "2.23.133.8.1",
            "Not After : Dec 31 23:59:59 9999 GMT",
        ] {
            assert!(text.contains(want), "{alg}: no {want:?} in\n{text}");
        }
        let usage = if alg == "rsa" {
            "Key Encipherment"
        } else {
            "Key Agreement"
        };
        assert!(text.contains(usage), "{text}");
    }
    // tpm2_getekcertificate finds both where a verifier's tooling looks (RSA, then ECC).
    let (rsa, ecc) = (tpm.path("getek-rsa.der"), tpm.path("getek-ecc.der"));
    tpm.tool(&[
        "tpm2_getekcertificate",
        "-o",
        &rsa.display().to_string(),
        "-o",
        &ecc.display().to_string(),
    ]);
    assert_eq!(
        fs::read(&rsa).expect("rsa"),
        fs::read(tpm.path(&format!("{RSA_EK_CERT}.der"))).expect("nv rsa")
    );
    assert_eq!(
        fs::read(&ecc).expect("ecc"),
        fs::read(tpm.path(&format!("{ECC_EK_CERT}.der"))).expect("nv ecc")
    );
}

#[test]
fn second_instance_on_the_same_ca_has_its_own_ek() {
    let ca = tempfile::tempdir().expect("tempdir");
    let ca_dir = ca.path().join("vtpm-ca");
    let a = Server::start(Protocol::Swtpm, Some(&ca_dir));
    let b = Server::start(Protocol::Swtpm, Some(&ca_dir));
    let ca_pem = ca.path().join("ca.pem");
    export_ca(&ca_dir, &ca_pem);
    for index in [RSA_EK_CERT, ECC_EK_CERT] {
        let (ca_cert, cb_cert) = (a.read_cert(index), b.read_cert(index));
        assert_ne!(cert_pubkey(&ca_cert), cert_pubkey(&cb_cert), "{index}");
        assert_eq!(issuer(&ca_cert), issuer(&cb_cert), "{index}");
        verify(&ca_pem, &ca_cert);
        verify(&ca_pem, &cb_cert);
    }
    assert_ne!(a.createek("rsa", "ek"), b.createek("rsa", "ek"));
}

#[test]
fn mssim_instance_is_endorsed_too() {
    let ca = tempfile::tempdir().expect("tempdir");
    let ca_dir = ca.path().join("vtpm-ca");
    let tpm = Server::start(Protocol::Mssim, Some(&ca_dir));
    let ca_pem = tpm.path("ca.pem");
    export_ca(&ca_dir, &ca_pem);
    let der = tpm.read_cert(ECC_EK_CERT);
    assert_eq!(cert_pubkey(&der), tpm.createek("ecc", "ek"));
    verify(&ca_pem, &der);
}

#[test]
fn no_ek_cert_manufactures_a_bare_tpm() {
    let tpm = Server::start(Protocol::Swtpm, None);
    eprintln!("server start without EK provisioning: {:?}", tpm.startup);
    let nv = tpm.tool(&["tpm2_getcap", "handles-nv-index"]);
    assert!(nv.trim().is_empty(), "no NV indices on a bare TPM: {nv}");
}

#[test]
fn ca_export_creates_the_ca_once_with_a_private_key() {
    let ca = tempfile::tempdir().expect("tempdir");
    let ca_dir = ca.path().join("nested/vtpm-ca");
    let first = export_ca(&ca_dir, &ca.path().join("1.pem"));
    let second = export_ca(&ca_dir, &ca.path().join("2.pem"));
    assert_eq!(first, second, "the CA is created once, then kept");
    assert!(
        first.starts_with("-----BEGIN CERTIFICATE-----\n"),
        "{first}"
    );
    let mode = |p: PathBuf| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(ca_dir.join("ca-key.pem")), 0o600);
    assert_eq!(mode(ca_dir.clone()), 0o700);
    let pem = ca.path().join("1.pem").display().to_string();
    let subject = openssl(&["x509", "-in", &pem, "-noout", "-subject"]);
    assert!(
        subject.contains("trustlaunch vTPM Manufacturer CA"),
        "{subject}"
    );
    // A self-signed root: it verifies against itself with no extra flags.
    let out = openssl(&[
        "verify",
        "-x509_strict",
        "-check_ss_sig",
        "-CAfile",
        &pem,
        &pem,
    ]);
    assert_eq!(out.trim(), format!("{pem}: OK"));
}
