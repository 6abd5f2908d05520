//! The attestation verifier's core (`attest::verify_quote`) on live quotes: tpm2-tools makes an
//! attestation key and a quote on real swtpm (libtpms) and on our vTPM (`trustlaunch vtpm
//! socket`), for ECDSA P-256/SHA-256, ECDSA P-384/SHA-384, RSASSA-SHA256 and RSAPSS-SHA256
//! keys, and the verifier must accept the quote with the AK as TPM2B_PUBLIC and as PEM.
//!
//! Independent truth: `tpm2_checkquote` (tpm2-tools over OpenSSL) gets exactly the same inputs
//! as the verifier, unchanged and tampered (every single byte of the attest and of the
//! signature, another nonce, another PCR value, another TPM's AK), and must reach the same
//! verdict. tpm2_checkquote 5.4 only tries PKCS#1 v1.5 padding for RSA, so for RSAPSS keys the
//! signature verdict comes from `openssl pkeyutl -verify` (PSS, salt length recovered) instead.
//! The quoted PCR values are also recomputed with the sha1/sha2 crates from what was extended.
//!
//! Each test starts its own two TPMs (the second one only makes "another TPM's AK") on free
//! loopback ports in its own temporary directory; a Drop guard always kills them.

use attest::{verify_quote, AkPublic, Error, HashAlg, PcrValues, VerifiedQuote};
use sha2::Digest;
use std::fs;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use wait_timeout::ChildExt;

mod ports;
mod server_process;
use ports::{free_port_pair, random_u64};
use server_process::ServerProcess;

/// Longest any single tool invocation may take (key generation in a debug build included).
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

const NONCE_HEX: &str = "5ca1ab1e0123456789abcdef0011223344556677";
/// What is extended into sha256 PCR 0 and sha1 PCR 0 (as a zero-padded number), and into
/// sha256 PCR 7.
const PCR0_EVENT: u16 = 0x0007;
const PCR7_EVENT: u16 = 0x1007;

// ---------------------------------------------------------------------------------------------
// TPMs
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// Real swtpm (libtpms): the reference peer.
    Swtpm,
    /// `trustlaunch vtpm socket`: our engine.
    Ours,
}

struct Tpm {
    backend: Backend,
    port: u16,
    server: ServerProcess,
    dir: tempfile::TempDir,
}

impl Tpm {
    fn start(backend: Backend) -> Tpm {
        let dir = tempfile::Builder::new()
            .prefix("trustlaunch-attest-")
            .tempdir()
            .expect("create temporary directory");
        fs::create_dir(dir.path().join("state")).expect("create state directory");
        let mut tpm = Tpm {
            backend,
            port: 0,
            server: ServerProcess::default(),
            dir,
        };
        let mut last = String::new();
        for _ in 0..8 {
            tpm.port = free_port_pair();
            match tpm.spawn() {
                Ok(()) => return tpm,
                Err(e) => last = e,
            }
        }
        panic!("{backend:?} did not start: {last}\n{}", tpm.log());
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = match self.backend {
            Backend::Swtpm => Command::new("swtpm"),
            Backend::Ours => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_trustlaunch"));
                c.arg("vtpm");
                c
            }
        };
        cmd.args(["socket", "--tpm2"])
            .args(["--server", &format!("type=tcp,port={}", self.port)])
            .args(["--ctrl", &format!("type=tcp,port={}", self.port + 1)])
            .args([
                "--tpmstate",
                &format!("dir={}", self.dir.path().join("state").display()),
            ])
            .args(["--flags", "not-need-init,startup-clear"]);
        self.server
            .spawn(cmd, &self.dir.path().join("server.log"), self.port)
    }

    fn log(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let tail: String = text
            .chars()
            .rev()
            .take(4000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("--- {:?} server log (tail) ---\n{tail}", self.backend)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_file(&self, name: &str, bytes: &[u8]) {
        fs::write(self.path(name), bytes).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }

    fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    /// Run a tpm2-tools command against this TPM, in its directory; it must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = run(
            self.dir.path(),
            args,
            &[(
                "TPM2TOOLS_TCTI",
                format!("swtpm:host=127.0.0.1,port={}", self.port),
            )],
        );
        assert!(
            out.success,
            "[{:?}] $ {}\nexit: {:?}\nstdout:\n{}\nstderr:\n{}\n{}",
            self.backend,
            args.join(" "),
            out.code,
            out.stdout,
            out.stderr,
            self.log()
        );
        out.stdout
    }

    /// `tpm2_flushcontext -t`: swtpm keeps only three transient objects.
    fn flush(&self) {
        self.ok(&["tpm2_flushcontext", "-t"]);
    }
}

struct Output {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Run a command in `dir` with a timeout.
fn run(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let n = random_u64();
    let out_path = dir.join(format!(".out-{n}"));
    let err_path = dir.join(format!(".err-{n}"));
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .current_dir(dir)
        .env_remove("TSS2_LOG")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot run {}: {e} (are tpm2-tools and openssl installed?)",
            args[0]
        )
    });
    let status = match child.wait_timeout(TOOL_TIMEOUT) {
        Ok(Some(status)) => status,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not finish within {TOOL_TIMEOUT:?}", args.join(" "));
        }
    };
    let out = Output {
        success: status.success(),
        code: status.code(),
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    };
    let _ = fs::remove_file(out_path);
    let _ = fs::remove_file(err_path);
    out
}

// ---------------------------------------------------------------------------------------------
// Attestation keys and quotes
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AkKind {
    EcdsaP256,
    EcdsaP384,
    Rsassa,
    Rsapss,
}

impl AkKind {
    fn createak_args(self) -> [&'static str; 6] {
        match self {
            AkKind::EcdsaP256 => ["-G", "ecc", "-s", "ecdsa", "-g", "sha256"],
            AkKind::EcdsaP384 => ["-G", "ecc384", "-s", "ecdsa", "-g", "sha384"],
            AkKind::Rsassa => ["-G", "rsa", "-s", "rsassa", "-g", "sha256"],
            AkKind::Rsapss => ["-G", "rsa", "-s", "rsapss", "-g", "sha256"],
        }
    }

    fn hash(self) -> &'static str {
        match self {
            AkKind::EcdsaP384 => "sha384",
            _ => "sha256",
        }
    }

    fn hash_alg(self) -> HashAlg {
        match self {
            AkKind::EcdsaP384 => HashAlg::Sha384,
            _ => HashAlg::Sha256,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            AkKind::EcdsaP256 => "ECC NIST P-256",
            AkKind::EcdsaP384 => "ECC NIST P-384",
            AkKind::Rsassa | AkKind::Rsapss => "RSA-2048",
        }
    }
}

/// `tpm2_quote` with ak.ctx over `selection`, the test nonce and `hash`, into q.msg, q.sig
/// and q.pcrs.
fn quote_args<'a>(selection: &'a str, hash: &'a str) -> Vec<&'a str> {
    vec![
        "tpm2_quote",
        "-c",
        "ak.ctx",
        "-l",
        selection,
        "-q",
        NONCE_HEX,
        "-g",
        hash,
        "-m",
        "q.msg",
        "-s",
        "q.sig",
        "-o",
        "q.pcrs",
    ]
}

/// Make an EK and an AK of `kind` on `tpm`: ak.pub (TPM2B_PUBLIC), ak.pem, ak.name, ak.ctx.
fn make_ak(tpm: &Tpm, kind: AkKind) {
    tpm.ok(&["tpm2_createek", "-G", "ecc", "-c", "ek.ctx"]);
    tpm.flush();
    let mut args = vec!["tpm2_createak", "-C", "ek.ctx"];
    args.extend(kind.createak_args());
    args.extend(["-c", "ak.ctx", "-u", "ak.pub", "-n", "ak.name"]);
    tpm.ok(&args);
    tpm.flush();
    tpm.ok(&[
        "tpm2_readpublic",
        "-c",
        "ak.ctx",
        "-f",
        "pem",
        "-o",
        "ak.pem",
    ]);
    tpm.flush();
}

fn padded(n: u16, size: usize) -> String {
    format!("{n:0width$x}", width = size * 2)
}

/// `tpm2_pcrread` output as `<bank> <pcr> <hex>` lines.
fn pcrread_text(out: &str) -> String {
    let mut bank = String::new();
    let mut text = String::new();
    for line in out.lines() {
        let t = line.trim();
        if let Some(b) = t.strip_suffix(':') {
            bank = b.to_string();
        } else if let Some((index, value)) = t.split_once(':') {
            let value = value.trim().trim_start_matches("0x").to_lowercase();
            text.push_str(&format!("{bank} {} {value}\n", index.trim()));
        }
    }
    text
}

/// The PCR values the test extended, computed with the sha1/sha2 crates.
fn expected_pcrs() -> PcrValues {
    fn ext<D: Digest>(events: &[u16]) -> Vec<u8> {
        let size = <D as Digest>::output_size();
        events.iter().fold(vec![0u8; size], |pcr, e| {
            let mut event = vec![0u8; size];
            event[size - 2..].copy_from_slice(&e.to_be_bytes());
            D::new()
                .chain_update(&pcr)
                .chain_update(&event)
                .finalize()
                .to_vec()
        })
    }
    let mut v = PcrValues::new();
    v.insert(HashAlg::Sha256, 0, ext::<sha2::Sha256>(&[PCR0_EVENT]))
        .unwrap();
    v.insert(HashAlg::Sha256, 1, vec![0; 32]).unwrap();
    v.insert(HashAlg::Sha256, 7, ext::<sha2::Sha256>(&[PCR7_EVENT]))
        .unwrap();
    v.insert(HashAlg::Sha1, 0, ext::<sha1::Sha1>(&[PCR0_EVENT]))
        .unwrap();
    v
}

/// The verifier's inputs for one case, as files for the independent checker.
struct Inputs<'a> {
    label: String,
    msg: &'a [u8],
    sig: &'a [u8],
    nonce: &'a [u8],
    pcrs_file: &'a [u8],
    ak_pub: &'a [u8],
    ak_pem: &'a str,
}

/// What the independent checker says about `inputs`.
/// With `both_forms`, tpm2_checkquote runs with the AK as TPM2B_PUBLIC and as PEM (which must
/// agree); otherwise with the TPM2B_PUBLIC only.
fn independent_verdict(dir: &Path, kind: AkKind, inputs: &Inputs<'_>, both_forms: bool) -> bool {
    fs::write(dir.join("c.msg"), inputs.msg).unwrap();
    fs::write(dir.join("c.sig"), inputs.sig).unwrap();
    fs::write(dir.join("c.pcrs"), inputs.pcrs_file).unwrap();
    fs::write(dir.join("c.pub"), inputs.ak_pub).unwrap();
    fs::write(dir.join("c.pem"), inputs.ak_pem).unwrap();
    if kind == AkKind::Rsapss {
        // The PSS signature alone: the TPMT_SIGNATURE body after sigAlg, hash and size.
        let body = inputs.sig.get(6..).unwrap_or(&[]);
        fs::write(dir.join("c.raw"), body).unwrap();
        fs::write(dir.join("c.dgst"), sha2::Sha256::digest(inputs.msg)).unwrap();
        let out = run(
            dir,
            &[
                "openssl",
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                "c.pem",
                "-in",
                "c.dgst",
                "-sigfile",
                "c.raw",
                "-pkeyopt",
                "rsa_padding_mode:pss",
                "-pkeyopt",
                "rsa_pss_saltlen:-2",
                "-pkeyopt",
                "digest:sha256",
            ],
            &[],
        );
        return out.success;
    }
    let nonce = hex::encode(inputs.nonce);
    let forms: &[&str] = if both_forms {
        &["c.pub", "c.pem"]
    } else {
        &["c.pub"]
    };
    let verdicts: Vec<bool> = forms
        .iter()
        .map(|ak| {
            run(
                dir,
                &[
                    "tpm2_checkquote",
                    "-u",
                    ak,
                    "-m",
                    "c.msg",
                    "-s",
                    "c.sig",
                    "-f",
                    "c.pcrs",
                    "-g",
                    kind.hash(),
                    "-q",
                    &nonce,
                ],
                &[],
            )
            .success
        })
        .collect();
    assert!(
        verdicts.iter().all(|v| *v == verdicts[0]),
        "{}: tpm2_checkquote disagrees with itself on the TPM2B_PUBLIC and PEM forms",
        inputs.label
    );
    verdicts[0]
}

/// Our verdict with the AK as TPM2B_PUBLIC and, with `both_forms`, also as PEM (which must
/// agree; the TPM2B_PUBLIC's error is returned, as it knows the key's fixed scheme and can be
/// more specific).
fn our_verdict(inputs: &Inputs<'_>, both_forms: bool) -> Result<VerifiedQuote, Error> {
    let pcrs = PcrValues::from_tpm2_tools(inputs.pcrs_file)?;
    let from_tpm = AkPublic::from_tpm2b_public(inputs.ak_pub).expect("AK TPM2B_PUBLIC");
    let a = verify_quote(&from_tpm, inputs.msg, inputs.sig, inputs.nonce, &pcrs);
    if !both_forms {
        return a;
    }
    let from_pem = AkPublic::from_pem(inputs.ak_pem).expect("AK PEM");
    let b = verify_quote(&from_pem, inputs.msg, inputs.sig, inputs.nonce, &pcrs);
    match (&a, &b) {
        (Ok(_), Ok(_)) | (Err(_), Err(_)) => {}
        _ => panic!(
            "{}: the TPM2B_PUBLIC and PEM forms of the AK disagree: {a:?} / {b:?}",
            inputs.label
        ),
    }
    a
}

/// TPMT_SIGNATURE bytes that the independent checker does not read. tpm2_checkquote takes
/// the hash from `-g`, not from the signature's hash field (bytes 2 and 3), so a signature
/// claiming another (or an unknown) hash still passes there; openssl (for RSAPSS) gets only
/// the signature after the 6-byte header. The verifier reads all of them and refuses a change
/// (asserted for every byte); these are the only places where the verdicts may differ, and
/// only that way round.
fn checker_ignores(kind: AkKind, sig_byte: usize) -> bool {
    match kind {
        AkKind::Rsapss => sig_byte < 6,
        _ => matches!(sig_byte, 2 | 3),
    }
}

fn quote_and_verify(backend: Backend, kind: AkKind) {
    let tpm = Tpm::start(backend);
    let other = Tpm::start(backend);
    make_ak(&tpm, kind);
    make_ak(&other, kind);

    let (s256, s1) = (padded(PCR0_EVENT, 32), padded(PCR0_EVENT, 20));
    tpm.ok(&["tpm2_pcrextend", &format!("0:sha256={s256},sha1={s1}")]);
    tpm.ok(&[
        "tpm2_pcrextend",
        &format!("7:sha256={}", padded(PCR7_EVENT, 32)),
    ]);
    let selection = "sha256:0,1,7+sha1:0";
    let mut args = quote_args(selection, kind.hash());
    if kind == AkKind::Rsapss {
        args.extend(["--scheme", "rsapss"]);
    }
    tpm.ok(&args);
    tpm.flush();
    let pcrs_text = pcrread_text(&tpm.ok(&["tpm2_pcrread", selection]));

    let msg = tpm.read("q.msg");
    let sig = tpm.read("q.sig");
    let pcrs_file = tpm.read("q.pcrs");
    let ak_pub = tpm.read("ak.pub");
    let ak_pem = String::from_utf8(tpm.read("ak.pem")).unwrap();
    let nonce = hex::decode(NONCE_HEX).unwrap();
    let other_pub = other.read("ak.pub");
    let other_pem = String::from_utf8(other.read("ak.pem")).unwrap();
    let dir = tpm.dir.path();
    let ctx = format!("{backend:?} {kind:?}");

    // --- The AK in both forms, the PCR values in both formats --------------------------------
    let from_tpm = AkPublic::from_tpm2b_public(&ak_pub).unwrap();
    let from_pem = AkPublic::from_pem(&ak_pem).unwrap();
    assert!(from_tpm.same_key(&from_pem), "{ctx}");
    assert_eq!(from_tpm.describe(), kind.describe(), "{ctx}");
    assert_eq!(
        from_tpm.name(),
        Some(tpm.read("ak.name")),
        "{ctx}: Name as tpm2_createak -n wrote it"
    );
    assert_eq!(from_tpm.is_restricted_signing(), Some(true), "{ctx}");
    let file_pcrs = PcrValues::from_tpm2_tools(&pcrs_file).unwrap();
    assert_eq!(
        file_pcrs.to_tpm2_tools(&[HashAlg::Sha256, HashAlg::Sha1]),
        pcrs_file,
        "{ctx}: our pcrs file is tpm2_quote's, byte for byte"
    );
    let text_pcrs = PcrValues::from_text(&pcrs_text).unwrap();
    assert_eq!(
        file_pcrs,
        expected_pcrs(),
        "{ctx}: quote's pcrs file vs. recomputed values"
    );
    assert_eq!(
        text_pcrs,
        expected_pcrs(),
        "{ctx}: tpm2_pcrread vs. recomputed values"
    );

    // --- Accepted, by both -------------------------------------------------------------------
    for (ak, form) in [(&from_tpm, "TPM2B_PUBLIC"), (&from_pem, "PEM")] {
        for (pcrs, format) in [(&file_pcrs, "pcrs file"), (&text_pcrs, "text")] {
            let v = verify_quote(ak, &msg, &sig, &nonce, pcrs)
                .unwrap_or_else(|e| panic!("{ctx}: AK as {form}, PCRs as {format}: {e}"));
            assert_eq!(v.extra_data, nonce);
            assert_eq!(v.signature_hash, kind.hash_alg());
            assert_eq!(
                v.selection,
                vec![(HashAlg::Sha256, vec![0, 1, 7]), (HashAlg::Sha1, vec![0])]
            );
            assert_eq!(v.pcr_digest.len(), kind.hash_alg().size());
            assert!(v.safe);
            assert_eq!(v.signer_name.len(), 34, "{ctx}: SHA-256 qualified name");
        }
    }
    let original = Inputs {
        label: format!("{ctx}: the quote as made"),
        msg: &msg,
        sig: &sig,
        nonce: &nonce,
        pcrs_file: &pcrs_file,
        ak_pub: &ak_pub,
        ak_pem: &ak_pem,
    };
    assert!(our_verdict(&original, true).is_ok());
    assert!(
        independent_verdict(dir, kind, &original, true),
        "{ctx}: the independent checker refuses the original quote"
    );

    // --- Refused with the right error, and by the independent checker ------------------------
    let clock_at = 6 + 2 + 34 + 2 + nonce.len();
    for i in 0..msg.len() {
        let mut m = msg.clone();
        m[i] ^= 0x01;
        let case = Inputs {
            label: format!("{ctx}: attest byte {i} changed"),
            msg: &m,
            ..original
        };
        let ours = our_verdict(&case, false);
        assert!(ours.is_err(), "{}: accepted", case.label);
        if (clock_at..clock_at + 8).contains(&i) {
            assert!(
                matches!(ours, Err(Error::SignatureInvalid { .. })),
                "{}: {ours:?}",
                case.label
            );
        }
        assert!(
            !independent_verdict(dir, kind, &case, false),
            "{}: the independent checker accepts it",
            case.label
        );
    }
    // Every byte of an ECDSA signature; of an RSA one the header and every 8th byte of the
    // 256-byte signature (each of which changes the whole RSA result).
    let sig_bytes: Vec<usize> = if sig.len() <= 128 {
        (0..sig.len()).collect()
    } else {
        (0..6)
            .chain((6..sig.len()).step_by(8))
            .chain([sig.len() - 1])
            .collect()
    };
    for i in sig_bytes {
        let mut s = sig.clone();
        s[i] ^= 0x01;
        let case = Inputs {
            label: format!("{ctx}: signature byte {i} changed"),
            sig: &s,
            ..original
        };
        let ours = our_verdict(&case, false);
        assert!(ours.is_err(), "{}: accepted", case.label);
        if i == sig.len() - 1 {
            assert!(
                matches!(ours, Err(Error::SignatureInvalid { .. })),
                "{}: {ours:?}",
                case.label
            );
        }
        if !checker_ignores(kind, i) {
            assert!(
                !independent_verdict(dir, kind, &case, false),
                "{}: the independent checker accepts it",
                case.label
            );
        }
    }

    let mut other_nonce = nonce.clone();
    other_nonce[3] ^= 0x80;
    let case = Inputs {
        label: format!("{ctx}: another nonce"),
        nonce: &other_nonce,
        ..original
    };
    assert_eq!(
        our_verdict(&case, true).unwrap_err(),
        Error::NonceMismatch {
            expected: other_nonce.clone(),
            observed: nonce.clone()
        },
        "{}",
        case.label
    );
    if kind != AkKind::Rsapss {
        assert!(
            !independent_verdict(dir, kind, &case, true),
            "{}: tpm2_checkquote accepts it",
            case.label
        );
    }

    // Another value for sha256 PCR 7: the third digest of the first TPML_DIGEST.
    let mut changed = pcrs_file.clone();
    changed[136 + 4 + 2 * 66 + 2] ^= 0x01;
    let case = Inputs {
        label: format!("{ctx}: another PCR 7 value"),
        pcrs_file: &changed,
        ..original
    };
    match our_verdict(&case, true) {
        Err(Error::PcrDigestMismatch { expected, observed }) => {
            assert_ne!(expected, observed);
            assert_eq!(observed.len(), kind.hash_alg().size());
        }
        other => panic!("{}: {other:?}", case.label),
    }
    if kind != AkKind::Rsapss {
        assert!(
            !independent_verdict(dir, kind, &case, true),
            "{}: tpm2_checkquote accepts it",
            case.label
        );
    }
    let mut text_changed = text_pcrs.clone();
    text_changed
        .insert(HashAlg::Sha1, 0, vec![0x01; 20])
        .unwrap();
    assert!(matches!(
        verify_quote(&from_tpm, &msg, &sig, &nonce, &text_changed),
        Err(Error::PcrDigestMismatch { .. })
    ));
    let mut partial = PcrValues::new();
    for (bank, index, value) in text_pcrs
        .iter()
        .filter(|(b, i, _)| (*b, *i) != (HashAlg::Sha256, 7))
    {
        partial.insert(bank, index, value.to_vec()).unwrap();
    }
    assert_eq!(
        verify_quote(&from_tpm, &msg, &sig, &nonce, &partial).unwrap_err(),
        Error::MissingPcr {
            bank: HashAlg::Sha256,
            index: 7
        }
    );

    let case = Inputs {
        label: format!("{ctx}: another TPM's AK"),
        ak_pub: &other_pub,
        ak_pem: &other_pem,
        ..original
    };
    assert!(
        matches!(
            our_verdict(&case, true),
            Err(Error::SignatureInvalid { .. })
        ),
        "{}: {:?}",
        case.label,
        our_verdict(&case, true)
    );
    assert!(
        !independent_verdict(dir, kind, &case, true),
        "{}: the independent checker accepts it",
        case.label
    );
}

#[test]
fn swtpm_ecdsa_p256_quote() {
    quote_and_verify(Backend::Swtpm, AkKind::EcdsaP256);
}

#[test]
fn swtpm_ecdsa_p384_quote() {
    quote_and_verify(Backend::Swtpm, AkKind::EcdsaP384);
}

#[test]
fn swtpm_rsassa_quote() {
    quote_and_verify(Backend::Swtpm, AkKind::Rsassa);
}

#[test]
fn swtpm_rsapss_quote() {
    quote_and_verify(Backend::Swtpm, AkKind::Rsapss);
}

#[test]
fn vtpm_ecdsa_p256_quote() {
    quote_and_verify(Backend::Ours, AkKind::EcdsaP256);
}

#[test]
fn vtpm_ecdsa_p384_quote() {
    quote_and_verify(Backend::Ours, AkKind::EcdsaP384);
}

#[test]
fn vtpm_rsassa_quote() {
    quote_and_verify(Backend::Ours, AkKind::Rsassa);
}

#[test]
fn vtpm_rsapss_quote() {
    quote_and_verify(Backend::Ours, AkKind::Rsapss);
}

// ---------------------------------------------------------------------------------------------
// Stateless verification of a whole boot's evidence: `trustlaunch attest verify-evidence`
// ---------------------------------------------------------------------------------------------

/// The real OVMF + shim + grub + Debian kernel boot recorded in the corpus.
fn corpus_log() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../eventlog/testdata/ovmf-debian12/secureboot-shim-grub-linux.bin")
}

fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `trustlaunch attest verify-evidence` with these inputs: (exit code, JSON output).
fn verify_evidence(dir: &Path, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut all = vec![
        env!("CARGO_BIN_EXE_trustlaunch"),
        "attest",
        "verify-evidence",
    ];
    all.extend_from_slice(args);
    let out = run(dir, &all, &[]);
    let json = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify-evidence printed no JSON ({e}):\n{}{}",
            out.stdout, out.stderr
        )
    });
    (out.code, json)
}

fn reasons(v: &serde_json::Value) -> Vec<String> {
    v["failures"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|x| x["reason"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Evidence from real swtpm: its sha256 PCRs extended with the digests of a real boot's
/// event log (tpm2_pcrextend, one call per event), an ECC AK from tpm2_createak and a quote
/// from tpm2_quote. verify-evidence must accept it with that log, and refuse it, naming the
/// reason, when the nonce, the AK or one event digest changes; a policy learned from the log
/// accepts it and a changed baseline names the kernel.
#[test]
fn swtpm_evidence_with_a_real_event_log_verifies_with_verify_evidence() {
    let tpm = Tpm::start(Backend::Swtpm);
    let log_bytes = fs::read(corpus_log()).expect("corpus log");
    let log = eventlog::EventLog::parse(&log_bytes).expect("corpus log parses");
    for e in log.events.iter().skip(1) {
        if e.event_type == eventlog::EventType::EV_NO_ACTION {
            continue;
        }
        let Some(d) = e
            .digests
            .iter()
            .find(|d| d.alg == eventlog::AlgorithmId::SHA256)
        else {
            continue;
        };
        tpm.ok(&[
            "tpm2_pcrextend",
            &format!("{}:sha256=0x{}", e.pcr, hex::encode(&d.bytes)),
        ]);
    }
    make_ak(&tpm, AkKind::EcdsaP256);
    tpm.ok(&quote_args("sha256:0,1,2,3,4,5,6,7,8,9,14", "sha256"));
    let dir = tpm.dir.path();
    let log_path = corpus_log().display().to_string();
    let base = |nonce: &str, ak: &str, log: &str| -> Vec<String> {
        [
            "--ak-pub",
            ak,
            "--quote",
            "q.msg",
            "--signature",
            "q.sig",
            "--pcrs",
            "q.pcrs",
            "--nonce",
            nonce,
            "--eventlog",
            log,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    let args = base(NONCE_HEX, "ak.pem", &log_path);
    let (code, v) = verify_evidence(dir, &as_refs(&args));
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["valid"], true);
    assert_eq!(v["boot"]["secure_boot"], true, "{v:#}");

    // Another nonce: a replayed quote.
    let args = base("00112233445566778899", "ak.pem", &log_path);
    let (code, v) = verify_evidence(dir, &as_refs(&args));
    assert_eq!(code, Some(1), "{v:#}");
    assert!(
        reasons(&v).contains(&"nonce mismatch: possible replay".to_string()),
        "{v:#}"
    );

    // Another TPM's AK (a second AK of this TPM is another key just the same).
    tpm.ok(&[
        "tpm2_createak",
        "-C",
        "ek.ctx",
        "-G",
        "ecc",
        "-s",
        "ecdsa",
        "-g",
        "sha256",
        "-c",
        "ak2.ctx",
        "-u",
        "ak2.pub",
    ]);
    tpm.flush();
    let args = base(NONCE_HEX, "ak2.pub", &log_path);
    let (code, v) = verify_evidence(dir, &as_refs(&args));
    assert_eq!(code, Some(1), "{v:#}");
    assert!(
        reasons(&v)
            .iter()
            .any(|r| r.starts_with("quote signature invalid")),
        "{v:#}"
    );

    // One event digest changed: the kernel's (the first PCR 4 event with no device path).
    let kernel = log
        .events
        .iter()
        .position(|e| {
            e.pcr == 4
                && e.event_type == eventlog::EventType::EV_EFI_BOOT_SERVICES_APPLICATION
                && e.data.len() == 32
        })
        .expect("a kernel event");
    let mut changed = log.clone();
    if let Some(d) = changed.events[kernel]
        .digests
        .iter_mut()
        .find(|d| d.alg == eventlog::AlgorithmId::SHA256)
    {
        d.bytes[0] ^= 1;
    }
    tpm.write_file("changed.bin", &changed.to_bytes());
    let args = base(NONCE_HEX, "ak.pem", "changed.bin");
    let (code, v) = verify_evidence(dir, &as_refs(&args));
    assert_eq!(code, Some(1), "{v:#}");
    let f = &v["failures"][0];
    assert_eq!(
        f["reason"], "event log does not replay to the quoted PCRs",
        "{v:#}"
    );
    assert_eq!(f["pcr"], 4, "{v:#}");

    // A retyped event (the kernel command line's EV_IPL turned into an EV_EVENT_TAG: its
    // digest, hence the replay, is unchanged) is refused by name.
    let cmdline = log
        .events
        .iter()
        .position(|e| e.pcr == 8 && e.data.starts_with(b"kernel_cmdline: "))
        .expect("a kernel command line event");
    let mut retyped = log.clone();
    retyped.events[cmdline].event_type = eventlog::EventType(0x6);
    tpm.write_file("retyped.bin", &retyped.to_bytes());
    let (code, v) = verify_evidence(dir, &as_refs(&base(NONCE_HEX, "ak.pem", "retyped.bin")));
    assert_eq!(code, Some(1), "{v:#}");
    assert!(
        reasons(&v).iter().any(|r| r.starts_with("event log rejected") && r.contains(&format!("event {cmdline}"))),
        "{v:#}"
    );
    // A truncated log (cut after the kernel's first measurement): it no longer replays to
    // the quoted PCRs, and the verifier says which.
    let mut truncated = log.clone();
    truncated.events.truncate(kernel + 1);
    tpm.write_file("truncated.bin", &truncated.to_bytes());
    let (code, v) = verify_evidence(dir, &as_refs(&base(NONCE_HEX, "ak.pem", "truncated.bin")));
    assert_eq!(code, Some(1), "{v:#}");
    assert!(
        reasons(&v).contains(&"event log does not replay to the quoted PCRs".to_string()),
        "{v:#}"
    );

    // A policy learned from the log accepts the evidence; a baseline with another kernel
    // names the kernel, with both digests and the event.
    let out = run(
        dir,
        &[
            env!("CARGO_BIN_EXE_trustlaunch"),
            "attest",
            "policy",
            "from-eventlog",
            &log_path,
        ],
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    tpm.write_file("policy.json", out.stdout.as_bytes());
    let mut args = base(NONCE_HEX, "ak.pem", &log_path);
    args.extend(["--policy".to_string(), "policy.json".to_string()]);
    let (code, v) = verify_evidence(dir, &as_refs(&args));
    assert_eq!(code, Some(0), "{v:#}");
    let mut policy: serde_json::Value = serde_json::from_str(&out.stdout).expect("policy JSON");
    let good = policy["components"]["kernel"][0]
        .as_str()
        .expect("kernel digest")
        .to_string();
    policy["components"]["kernel"] = serde_json::json!(["00".repeat(32)]);
    tpm.write_file("other-kernel.json", policy.to_string().as_bytes());
    let last = args.len() - 1;
    args[last] = "other-kernel.json".into();
    let (code, v) = verify_evidence(dir, &as_refs(&args));
    assert_eq!(code, Some(1), "{v:#}");
    let f = &v["failures"][0];
    assert_eq!(f["reason"], "kernel digest not in baseline", "{v:#}");
    assert_eq!(f["component"], "kernel");
    assert_eq!(f["observed"], good.as_str());
    assert_eq!(f["pcr"], 4);
    assert!(f["event"].is_u64(), "{v:#}");
}

// ---------------------------------------------------------------------------------------------
// The node agent's TPM client (crates/agent) against real swtpm and our vTPM
// ---------------------------------------------------------------------------------------------

/// swtpm's data channel: raw TPM 2.0 commands and responses over TCP.
struct TcpTransport(TcpStream);

impl agent::Transport for TcpTransport {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, String> {
        use std::io::{Read, Write};
        self.0.write_all(command).map_err(|e| e.to_string())?;
        let mut header = [0u8; 10];
        self.0.read_exact(&mut header).map_err(|e| e.to_string())?;
        let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
        let mut rest = vec![0u8; size.saturating_sub(10)];
        self.0.read_exact(&mut rest).map_err(|e| e.to_string())?;
        Ok([header.to_vec(), rest].concat())
    }
}

/// The agent creates the TCG EK and its AK, activates the registrar's credential through the
/// EK's PolicySecret session, and quotes; the registrar's checks (attest::enroll) and the
/// verifier (attest::verify_quote) accept what it produced, on swtpm as on ours.
fn agent_enrolls_and_quotes(backend: Backend) {
    let tpm = Tpm::start(backend);
    // tpm2_createek first: swtpm serves one connection at a time.
    tpm.ok(&[
        "tpm2_createek",
        "-G",
        "ecc",
        "-c",
        "ek-tools.ctx",
        "-u",
        "ek-tools.pub",
    ]);
    tpm.flush();
    let tools_ek_public = {
        use tpm::codec::Unmarshal;
        tpm::object::TpmtPublic::from_bytes(&tpm.read("ek-tools.pub")[2..]).expect("EK public")
    };
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, tpm.port)).expect("connect");
    let mut client = agent::Client::new(TcpTransport(stream));
    let ek = client.create_ek().expect("EK");
    assert_eq!(
        tools_ek_public, ek.public,
        "[{backend:?}] the agent's EK is tpm2_createek's"
    );

    let ak = client.create_ak().expect("AK");
    let ak_public = AkPublic::from_tpmt_public(ak.public.clone()).expect("AK public");
    attest::enroll::check_ak_attributes(&ak_public).expect("a proper AK");
    let mut rng = |b: &mut [u8]| b.iter_mut().for_each(|x| *x = random_u64() as u8);
    let challenge =
        attest::enroll::make_challenge(&ek.public, &ak.name, &mut rng).expect("challenge");
    let answer = client
        .activate_credential(&ak, &ek, &challenge.id_object, &challenge.encrypted_secret)
        .unwrap_or_else(|e| panic!("[{backend:?}] ActivateCredential: {e}\n{}", tpm.log()));
    assert!(attest::enroll::check_activation(&challenge, &answer));
    // A challenge for another AK name does not open.
    let mut other = ak.name.clone();
    *other.last_mut().expect("name") ^= 1;
    let wrong = attest::enroll::make_challenge(&ek.public, &other, &mut rng).expect("challenge");
    assert!(client
        .activate_credential(&ak, &ek, &wrong.id_object, &wrong.encrypted_secret)
        .is_err());

    let nonce = hex::decode(NONCE_HEX).expect("nonce");
    let selection = vec![(HashAlg::Sha256, vec![0u8, 7])];
    let quote = client.quote(&ak, &nonce, &selection).expect("quote");
    let mut pcrs = PcrValues::new();
    for pcr in [0u8, 7] {
        pcrs.insert(
            HashAlg::Sha256,
            pcr,
            client.pcr_read(HashAlg::Sha256, pcr).expect("PCR_Read"),
        )
        .expect("PCR value");
    }
    verify_quote(&ak_public, &quote.attest, &quote.signature, &nonce, &pcrs)
        .unwrap_or_else(|e| panic!("[{backend:?}] the agent's quote: {e}"));
    for h in [ak.handle, ek.handle] {
        client.flush(h).expect("flush");
    }
}

#[test]
fn agent_enrolls_and_quotes_on_swtpm() {
    agent_enrolls_and_quotes(Backend::Swtpm);
}

#[test]
fn agent_enrolls_and_quotes_on_our_vtpm() {
    agent_enrolls_and_quotes(Backend::Ours);
}
