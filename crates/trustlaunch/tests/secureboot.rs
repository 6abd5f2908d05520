//! `trustlaunch secureboot` against Debian's real Secure Boot chain (Microsoft-signed shim,
//! Debian-signed grub, kernel and modules; built by `lab/build-esp.sh`, cached in
//! `$CARGO_TARGET_TMPDIR/lab-cache`) and OVMF's Microsoft variable store, with independent
//! tools as the truth for every expectation:
//! - `pesign -h` for Authenticode digests, `openssl asn1parse` for the digest a signature
//!   carries, `sbsign` for how signing pads an image (shim's digest of unsigned images);
//! - `sbverify --cert` for every verdict it can express (chains to one certificate);
//! - efitools' `sig-list-to-certs` / `hash-to-efi-sig-list` for what db holds and for dbx
//!   entries; `objcopy` for shim's vendor certificate and the images' `.sbat`;
//! - the kernel's own module signature format, with `openssl smime` as the PKCS#7 peer.
//!
//! Packages: sbsigntool, pesign, efitools, binutils, xz-utils (scripts/test.sh installs them).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

struct Lab {
    shim: PathBuf,
    grub: PathBuf,
    kernel: PathBuf,
    module: PathBuf,
    vmlinux: PathBuf,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tool(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs the tools)"));
    out
}

fn tool_ok(cmd: &mut Command) -> String {
    let out = tool(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `bytes` to `path` through a rename, so that concurrent test processes never read a
/// half-written file.
fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, bytes).expect("write");
    fs::rename(&tmp, path).expect("rename");
}

/// The entry of `dir` whose name starts with `prefix`.
fn entry_starting_with(dir: &Path, prefix: &str) -> PathBuf {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no {prefix}* in {}", dir.display()))
}

fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let w = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab-cache");
        tool_ok(
            Command::new("bash")
                .arg(repo().join("lab/build-esp.sh"))
                .arg(&w),
        );
        let pkgs = w.join("pkgs");
        let kernel_dir = entry_starting_with(&pkgs, "linux-image-");
        let kernel = entry_starting_with(&kernel_dir.join("boot"), "vmlinuz-");
        let module = tool_ok(
            Command::new("find")
                .arg(&kernel_dir)
                .args(["-name", "efivarfs.ko"]),
        );
        let module = PathBuf::from(module.lines().next().expect("efivarfs.ko").trim());
        // The kernel's built-in keys live in the uncompressed kernel: the bzImage payload
        // (boot protocol: setup_sects at 0x1f1, payload_offset/length at 0x248) through xz.
        let vmlinux = w.join("vmlinux");
        if !vmlinux.exists() {
            let bz = fs::read(&kernel).expect("read vmlinuz");
            let setup = (usize::from(bz[0x1f1]) + 1) * 512;
            let off = u32::from_le_bytes(bz[0x248..0x24c].try_into().unwrap()) as usize;
            let len = u32::from_le_bytes(bz[0x24c..0x250].try_into().unwrap()) as usize;
            let payload = w.join("payload.xz");
            write_atomic(&payload, &bz[setup + off..setup + off + len]);
            let out = tool(
                Command::new("xz")
                    .args(["-dc", "--single-stream"])
                    .arg(&payload),
            );
            assert!(
                out.stdout.starts_with(b"\x7fELF"),
                "the kernel payload is not xz-compressed ELF"
            );
            write_atomic(&vmlinux, &out.stdout);
        }
        Lab {
            shim: pkgs.join("shim-signed/usr/lib/shim/shimx64.efi.signed"),
            grub: pkgs
                .join("grub-efi-amd64-signed/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"),
            kernel,
            module,
            vmlinux,
        }
    })
}

/// `trustlaunch ARGS`: exit code and stdout.
fn trustlaunch(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = tool(Command::new(env!("CARGO_BIN_EXE_trustlaunch")).args(args));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().expect("exit code");
    assert!(
        code == 0 || code == 1,
        "trustlaunch {args:?}: exit {code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, text)
}

macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new($a)),*] };
}

fn verify(image: &Path, extra: &[&str]) -> (i32, String) {
    let mut a = vec![
        std::ffi::OsStr::new("secureboot"),
        "verify".as_ref(),
        image.as_os_str(),
    ];
    a.extend(extra.iter().map(std::ffi::OsStr::new));
    trustlaunch(&a)
}

fn sbverify(cert: &Path, image: &Path) -> bool {
    tool(Command::new("sbverify").arg("--cert").arg(cert).arg(image))
        .status
        .success()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("trustlaunch-secureboot-")
        .tempdir()
        .expect("temporary directory")
}

/// The db certificates of OVMF's Microsoft store, as efitools decodes the ESL our `vars
/// --extract` wrote: (subject, PEM path).
fn db_certificates(dir: &Path) -> Vec<(String, PathBuf)> {
    trustlaunch(args!["secureboot", "vars", VARS, "--extract", dir]);
    tool_ok(
        Command::new("sig-list-to-certs")
            .arg(dir.join("db.esl"))
            .arg(dir.join("db")),
    );
    let mut out = Vec::new();
    for i in 0.. {
        let der = dir.join(format!("db-{i}.der"));
        if !der.exists() {
            break;
        }
        let pem = dir.join(format!("db-{i}.pem"));
        tool_ok(
            Command::new("openssl")
                .args(["x509", "-inform", "der", "-in"])
                .arg(&der)
                .arg("-out")
                .arg(&pem),
        );
        let subject = tool_ok(
            Command::new("openssl")
                .args(["x509", "-noout", "-subject", "-in"])
                .arg(&pem),
        );
        out.push((subject.trim().to_string(), pem));
    }
    assert!(!out.is_empty(), "db holds no certificates");
    out
}

fn microsoft_uefi_ca(dir: &Path) -> PathBuf {
    db_certificates(dir)
        .into_iter()
        .find(|(s, _)| s.contains("Microsoft Corporation UEFI CA 2011"))
        .expect("OVMF's db holds the Microsoft UEFI CA 2011")
        .1
}

/// shim's vendor certificate, cut out of its `.vendor_cert` section with objcopy (shim's
/// cert_table: authorized size, deauthorized size, authorized offset, deauthorized offset).
fn vendor_certificate(dir: &Path) -> PathBuf {
    let raw = dir.join("vendor_cert.bin");
    tool_ok(
        Command::new("objcopy")
            .args(["-O", "binary", "--only-section=.vendor_cert"])
            .arg(&lab().shim)
            .arg(&raw),
    );
    let t = fs::read(&raw).expect("section");
    let word = |i: usize| u32::from_le_bytes(t[i..i + 4].try_into().unwrap()) as usize;
    let der = dir.join("vendor.der");
    fs::write(&der, &t[word(8)..word(8) + word(0)]).expect("write");
    let pem = dir.join("vendor.pem");
    tool_ok(
        Command::new("openssl")
            .args(["x509", "-inform", "der", "-in"])
            .arg(&der)
            .arg("-out")
            .arg(&pem),
    );
    pem
}

/// The digest a signed image's own signature carries: the first 32-byte OCTET STRING of the
/// SpcIndirectDataContent, as `openssl asn1parse` prints it.
fn signed_digest(image: &Path, dir: &Path) -> String {
    let sig = dir.join(format!(
        "{}.p7",
        image.file_name().unwrap().to_string_lossy()
    ));
    tool_ok(
        Command::new("sbattach")
            .arg("--detach")
            .arg(&sig)
            .arg(image),
    );
    let text = tool_ok(
        Command::new("openssl")
            .args(["asn1parse", "-inform", "der", "-in"])
            .arg(&sig),
    );
    text.lines()
        .filter(|l| l.contains("OCTET STRING") && l.contains("[HEX DUMP]:"))
        .map(|l| l.rsplit(':').next().unwrap().to_lowercase())
        .find(|h| h.len() == 64)
        .expect("a SHA-256 digest in the signature")
}

#[test]
fn authenticode_digests_equal_pesign_and_the_signed_digest() {
    let dir = tempdir();
    let l = lab();
    for image in [&l.shim, &l.grub, &l.kernel] {
        let (code, ours) = trustlaunch(args!["secureboot", "hash", image]);
        assert_eq!(code, 0);
        let pesign = tool_ok(Command::new("pesign").arg("-h").arg("-i").arg(image));
        let pesign = pesign.trim().rsplit(' ').next().unwrap().to_string();
        assert_eq!(ours.trim(), pesign, "{}", image.display());
        assert_eq!(
            ours.trim(),
            signed_digest(image, dir.path()),
            "{}",
            image.display()
        );
        // Both flavours agree on signed images whose table is last.
        let (_, shim) = trustlaunch(args!["secureboot", "hash", image, "--shim-unsigned"]);
        assert_eq!(shim, ours);
    }
}

#[test]
fn shim_digest_of_an_unsigned_unaligned_image_is_what_sbsign_signs_and_firmware_differs() {
    let dir = tempdir();
    let d = dir.path();
    let unsigned = unsigned_copy(&lab().grub, &d.join("grub-unsigned.efi"));
    // Three bytes of trailing data: the image is no longer a multiple of 8 long.
    let mut bytes = fs::read(&unsigned).unwrap();
    bytes.extend_from_slice(b"abc");
    fs::write(&unsigned, &bytes).unwrap();
    let (_, firmware) = trustlaunch(args!["secureboot", "hash", &unsigned]);
    let (_, shim) = trustlaunch(args!["secureboot", "hash", &unsigned, "--shim-unsigned"]);
    assert_ne!(
        firmware, shim,
        "the two computations must differ on an unaligned unsigned image"
    );
    // Independent truths: efitools' hash of the unsigned image, and what sbsign signs.
    let esl = d.join("h.esl");
    tool_ok(
        Command::new("hash-to-efi-sig-list")
            .arg(&unsigned)
            .arg(&esl),
    );
    let esl = fs::read(&esl).unwrap();
    assert_eq!(hex::encode(&esl[esl.len() - 32..]), shim.trim());
    self_signed(d, "trustlaunch test signer", "k.pem", "c.pem");
    let signed = d.join("grub-test-signed.efi");
    sbsign(d, &unsigned, &signed, false);
    assert_eq!(signed_digest(&signed, d), shim.trim());
    // Verdicts on the re-signed image agree with sbverify, and so does firmware's hash path.
    assert!(sbverify(&d.join("c.pem"), &signed));
    let (code, out) = verify(&signed, &["--db", d.join("c.pem").to_str().unwrap()]);
    assert_eq!(
        (code, out.contains("trustlaunch test signer")),
        (0, true),
        "{out}"
    );
    let (code, out) = verify(&unsigned, &["--vars", VARS]);
    assert_eq!(code, 1);
    assert!(out.contains("unsigned"), "{out}");
    // An unsigned image runs when firmware's own (unpadded) SHA-256 is in db.
    let db = d.join("unsigned-db.esl");
    fs::write(&db, esl_sha256(&hex::decode(firmware.trim()).unwrap())).unwrap();
    let (code, out) = verify(&unsigned, &["--db", db.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sha256 image hash"), "{out}");
}

/// `image` copied to `to` with its signatures removed by `sbattach --remove`.
fn unsigned_copy(image: &Path, to: &Path) -> PathBuf {
    fs::copy(image, to).expect("copy");
    tool_ok(Command::new("sbattach").arg("--remove").arg(to));
    to.to_path_buf()
}

/// `sbsign` with `dir`'s k.pem and c.pem: a signed copy, or (`detached`) the PKCS#7 alone.
fn sbsign(dir: &Path, image: &Path, out: &Path, detached: bool) {
    let mut cmd = Command::new("sbsign");
    cmd.arg("--key")
        .arg(dir.join("k.pem"))
        .arg("--cert")
        .arg(dir.join("c.pem"));
    if detached {
        cmd.arg("--detached");
    }
    tool_ok(cmd.arg("--output").arg(out).arg(image));
}

/// A fresh RSA-2048 key and self-signed certificate `CN=cn` in `dir` (PEM).
fn self_signed(dir: &Path, cn: &str, key: &str, cert: &str) {
    tool_ok(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            ])
            .arg(format!("/CN={cn}"))
            .arg("-keyout")
            .arg(dir.join(key))
            .arg("-out")
            .arg(dir.join(cert)),
    );
}

/// One EFI_SIGNATURE_LIST of one EFI_CERT_SHA256_GUID entry (UEFI 2.10 32.4.1), written out
/// by hand here so that the test does not lean on the crate's encoder.
fn esl_sha256(digest: &[u8]) -> Vec<u8> {
    let mut v = vec![
        0x26, 0x16, 0xc4, 0xc1, 0x4c, 0x50, 0x92, 0x40, 0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43,
        0x28,
    ];
    v.extend_from_slice(&(28u32 + 48).to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&48u32.to_le_bytes());
    v.extend_from_slice(&[0x11; 16]);
    v.extend_from_slice(digest);
    v
}

#[test]
fn firmware_allows_shim_by_the_microsoft_uefi_ca_and_denies_grub_and_the_kernel() {
    let dir = tempdir();
    let l = lab();
    let ms = microsoft_uefi_ca(dir.path());
    let (code, out) = verify(&l.shim, &["--vars", VARS]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Microsoft Corporation UEFI CA 2011"), "{out}");
    assert!(sbverify(&ms, &l.shim));
    for image in [&l.grub, &l.kernel] {
        let (code, out) = verify(image, &["--vars", VARS]);
        assert_eq!(code, 1, "{}: {out}", image.display());
        assert!(out.contains("signer not trusted"), "{out}");
        assert!(!sbverify(&ms, image));
        // The same verdict from the certificate alone (PEM --db) as from the store.
        let (code, _) = verify(image, &["--db", ms.to_str().unwrap()]);
        assert_eq!(code, 1);
    }
    // Every db certificate, one at a time, against sbverify with that certificate. Not for
    // shim: sbverify 0.9.4 reports "Signature verification OK" with any --cert at all (even a
    // fresh self-signed one) once the signature carries a CA certificate, as shim's carries
    // the UEFI CA (the ECDSA chain test below shows the same), so it is no truth there; for
    // shim, only the UEFI CA may allow it.
    for (subject, pem) in db_certificates(dir.path()) {
        let (code, _) = verify(&l.shim, &["--db", pem.to_str().unwrap()]);
        assert_eq!(
            code == 0,
            subject.contains("Microsoft Corporation UEFI CA 2011"),
            "{subject}"
        );
        for image in [&l.grub, &l.kernel] {
            let (code, _) = verify(image, &["--db", pem.to_str().unwrap()]);
            assert_eq!(
                code == 0,
                sbverify(&pem, image),
                "{subject} vs {}",
                image.display()
            );
        }
    }
}

#[test]
fn shim_allows_grub_and_the_kernel_through_its_vendor_certificate() {
    let dir = tempdir();
    let l = lab();
    let vendor = vendor_certificate(dir.path());
    let shim = l.shim.to_str().unwrap();
    let (code, out) = verify(&l.grub, &["--vars", VARS, "--shim", shim]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Debian Secure Boot CA") && out.contains("vendor certificate"),
        "{out}"
    );
    // The kernel has no .sbat: shim loads it only through its lock protocol (grub's request).
    let (code, out) = verify(
        &l.kernel,
        &["--vars", VARS, "--shim", shim, "--shim-protocol"],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify(&l.kernel, &["--vars", VARS, "--shim", shim]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no .sbat"), "{out}");
    for image in [&l.grub, &l.kernel] {
        assert!(sbverify(&vendor, image), "{}", image.display());
        let (code, _) = verify(image, &["--db", vendor.to_str().unwrap()]);
        assert_eq!(code, 0);
    }
    // shim itself is not signed by its own vendor (sbverify cannot tell, see above).
    assert_eq!(verify(&l.shim, &["--db", vendor.to_str().unwrap()]).0, 1);
}

#[test]
fn a_flipped_byte_in_a_section_of_shim_is_a_digest_mismatch() {
    let dir = tempdir();
    let ms = microsoft_uefi_ca(dir.path());
    let mut bytes = fs::read(&lab().shim).unwrap();
    // Inside .text (objdump: file offset 0x21000 in this build; any section byte will do).
    let at = 0x21000 + 0x100;
    bytes[at] ^= 0x01;
    let bad = dir.path().join("shim-flipped.efi");
    fs::write(&bad, &bytes).unwrap();
    let (code, out) = verify(&bad, &["--vars", VARS]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("digest mismatch"), "{out}");
    assert!(!sbverify(&ms, &bad));
}

#[test]
fn shim_digest_in_dbx_is_denied() {
    let dir = tempdir();
    let d = dir.path();
    // The digest pesign computes, as a dbx entry written by hand (efitools'
    // hash-to-efi-sig-list cannot hash this shim: it reports an error and writes zeros).
    let pesign = tool_ok(Command::new("pesign").arg("-h").arg("-i").arg(&lab().shim));
    let digest = hex::decode(pesign.trim().rsplit(' ').next().unwrap()).unwrap();
    let dbx = d.join("dbx.esl");
    fs::write(&dbx, esl_sha256(&digest)).unwrap();
    let (code, out) = verify(
        &lab().shim,
        &["--vars", VARS, "--dbx", dbx.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("image's sha256 hash is in dbx"), "{out}");
    // Revoking the Microsoft UEFI CA itself in dbx denies shim by certificate.
    let ms = microsoft_uefi_ca(d);
    let (code, out) = verify(
        &lab().shim,
        &["--vars", VARS, "--dbx", ms.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("revoked: the signature chains to Microsoft Corporation UEFI CA 2011"),
        "{out}"
    );
}

#[test]
fn an_sbat_level_above_grubs_generation_denies_grub() {
    let dir = tempdir();
    let d = dir.path();
    // grub's own .sbat, read with objcopy: its generation of the "grub" component.
    let sbat = d.join("grub.sbat");
    tool_ok(
        Command::new("objcopy")
            .args(["-O", "binary", "--only-section=.sbat"])
            .arg(&lab().grub)
            .arg(&sbat),
    );
    let text = String::from_utf8_lossy(&fs::read(&sbat).unwrap()).into_owned();
    let generation: u16 = text
        .lines()
        .find_map(|l| l.strip_prefix("grub,")?.split(',').next()?.parse().ok())
        .expect("grub's generation");
    let shim = lab().shim.to_str().unwrap();
    for (level, allowed) in [(generation, true), (generation + 1, false)] {
        let path = d.join(format!("level-{level}"));
        fs::write(&path, format!("sbat,1,2099010100\ngrub,{level}\n")).unwrap();
        let (code, out) = verify(
            &lab().grub,
            &[
                "--vars",
                VARS,
                "--shim",
                shim,
                "--sbat-level",
                path.to_str().unwrap(),
            ],
        );
        assert_eq!(code == 0, allowed, "level {level}: {out}");
        if !allowed {
            assert!(
                out.contains(&format!(
                    "component grub generation {generation} is revoked"
                )),
                "{out}"
            );
        }
    }
}

/// The module's PKCS#7 and body, split by the kernel's format (struct module_signature's
/// big-endian sig_len before the marker).
fn split_module(module: &[u8]) -> (&[u8], &[u8]) {
    let rest = module
        .strip_suffix(b"~Module signature appended~\n")
        .expect("signed module");
    let info = &rest[rest.len() - 12..];
    let len = u32::from_be_bytes(info[8..12].try_into().unwrap()) as usize;
    let sig_at = rest.len() - 12 - len;
    (&rest[..sig_at], &rest[sig_at..rest.len() - 12])
}

#[test]
fn a_debian_kernel_module_verifies_and_without_its_signature_is_unsigned() {
    let dir = tempdir();
    let d = dir.path();
    let l = lab();
    let keys = l.vmlinux.to_str().unwrap();
    let (code, out) = verify(&l.module, &["--vars", VARS, "--kernel-keys", keys]);
    assert_eq!(code, 0, "{out}");
    // The authority is the signer openssl names in the module's PKCS#7.
    let bytes = fs::read(&l.module).unwrap();
    let (body, p7) = split_module(&bytes);
    let p7_path = d.join("module.p7");
    fs::write(&p7_path, p7).unwrap();
    let printed = tool_ok(
        Command::new("openssl")
            .args(["pkcs7", "-inform", "der", "-print", "-in"])
            .arg(&p7_path),
    );
    let issuer = printed
        .lines()
        .skip_while(|l| !l.contains("issuer_and_serial"))
        .find_map(|l| l.split("CN=").nth(1))
        .expect("the signer's issuer")
        .trim()
        .to_string();
    assert!(out.contains(&issuer), "{out} vs {issuer}");
    // The CLI also takes the bzImage itself (it decompresses the payload with xz).
    let (code, out) = verify(&l.module, &["--kernel-keys", l.kernel.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    // db and shim's vendor certificate alone do not vouch for Debian's per-build module key.
    let (code, _) = verify(
        &l.module,
        &["--vars", VARS, "--shim", l.shim.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    // The body without its signature: unsigned.
    let unsigned = d.join("efivarfs-unsigned.ko");
    fs::write(&unsigned, body).unwrap();
    let (code, out) = verify(&unsigned, &["--vars", VARS, "--kernel-keys", keys]);
    assert_eq!(code, 1);
    assert!(out.contains("unsigned module"), "{out}");
    // One flipped body byte: the signature no longer covers it.
    let mut tampered = bytes.clone();
    tampered[0x40] ^= 1;
    let bad = d.join("efivarfs-flipped.ko");
    fs::write(&bad, &tampered).unwrap();
    let (code, out) = verify(&bad, &["--vars", VARS, "--kernel-keys", keys]);
    assert_eq!(code, 1, "{out}");
    // A module signed as sign-file signs (openssl smime, no attributes, no certificates) by
    // a key of ours: allowed with that key in the keyring, not without.
    self_signed(d, "trustlaunch module key", "mk.pem", "mc.pem");
    fs::write(d.join("body"), body).unwrap();
    tool_ok(
        Command::new("openssl")
            .args([
                "smime", "-sign", "-binary", "-noattr", "-nocerts", "-md", "sha256", "-outform",
                "DER", "-in",
            ])
            .arg(d.join("body"))
            .arg("-signer")
            .arg(d.join("mc.pem"))
            .arg("-inkey")
            .arg(d.join("mk.pem"))
            .arg("-out")
            .arg(d.join("sig.p7")),
    );
    let sig = fs::read(d.join("sig.p7")).unwrap();
    let mut ours = body.to_vec();
    ours.extend_from_slice(&sig);
    ours.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0]);
    ours.extend_from_slice(&(sig.len() as u32).to_be_bytes());
    ours.extend_from_slice(b"~Module signature appended~\n");
    let resigned = d.join("efivarfs-ours.ko");
    fs::write(&resigned, &ours).unwrap();
    let (code, out) = verify(
        &resigned,
        &["--vars", VARS, "--key", d.join("mc.pem").to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("trustlaunch module key"), "{out}");
    let (code, _) = verify(&resigned, &["--vars", VARS, "--kernel-keys", keys]);
    assert_eq!(code, 1);
}

#[test]
fn usage_and_io_errors_exit_2() {
    let out = tool(Command::new(env!("CARGO_BIN_EXE_trustlaunch")).args([
        "secureboot",
        "verify",
        "/nonexistent.efi",
        "--vars",
        VARS,
    ]));
    assert_eq!(out.status.code(), Some(2));
    let out = tool(Command::new(env!("CARGO_BIN_EXE_trustlaunch")).args([
        "secureboot",
        "verify",
        "/nonexistent.efi",
    ]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn db_files_may_be_esls_and_auth_files_made_by_efitools() {
    let dir = tempdir();
    let d = dir.path();
    let vendor = vendor_certificate(d);
    let esl = d.join("vendor.esl");
    tool_ok(
        Command::new("cert-to-efi-sig-list")
            .args(["-g", "11111111-2222-3333-4444-555555555555"])
            .arg(&vendor)
            .arg(&esl),
    );
    self_signed(d, "trustlaunch test KEK", "kek.key", "kek.pem");
    let auth = d.join("vendor.auth");
    tool_ok(
        Command::new("sign-efi-sig-list")
            .arg("-k")
            .arg(d.join("kek.key"))
            .arg("-c")
            .arg(d.join("kek.pem"))
            .arg("db")
            .arg(&esl)
            .arg(&auth),
    );
    for db in [&esl, &auth] {
        let (code, out) = verify(&lab().grub, &["--db", db.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {out}", db.display());
        assert!(out.contains("Debian Secure Boot CA"), "{out}");
        // As a dbx, the same file revokes grub by certificate.
        let (code, out) = verify(
            &lab().grub,
            &["--db", db.to_str().unwrap(), "--dbx", db.to_str().unwrap()],
        );
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("revoked"), "{out}");
    }
}

#[test]
fn bench_secureboot_compares_against_sbverify() {
    let dir = tempdir();
    let ms = microsoft_uefi_ca(dir.path());
    let out = tool_ok(
        Command::new(env!("CARGO_BIN_EXE_trustlaunch"))
            .args(["bench", "secureboot", "--rounds", "3", "--image"])
            .arg(&lab().shim)
            .arg("--cert")
            .arg(&ms),
    );
    let row = out
        .lines()
        .find(|l| l.starts_with("wall time per verification"))
        .unwrap_or_else(|| panic!("no figures in:\n{out}"));
    let figures: Vec<f64> = row
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches('x').parse().ok())
        .collect();
    assert_eq!(figures.len(), 3, "{row}");
    assert!(figures.iter().all(|f| *f > 0.0), "{row}");
}

/// grub with a second signature, ours, appended by sbattach (as pesign/sbsign add one).
#[test]
fn with_two_signatures_firmware_denies_if_any_is_revoked_and_shim_allows_if_any_is_trusted() {
    let dir = tempdir();
    let d = dir.path();
    let vendor = vendor_certificate(d);
    self_signed(d, "trustlaunch second signer", "k.pem", "c.pem");
    let unsigned = unsigned_copy(&lab().grub, &d.join("grub-unsigned.efi"));
    let ours = d.join("ours.p7");
    sbsign(d, &unsigned, &ours, true);
    let both = d.join("grub-two-signatures.efi");
    fs::copy(&lab().grub, &both).unwrap();
    tool_ok(
        Command::new("sbattach")
            .arg("--attach")
            .arg(&ours)
            .arg(&both),
    );
    let list = tool_ok(Command::new("sbverify").arg("--list").arg(&both));
    assert!(list.contains("signature 2"), "{list}");
    // Each signature on its own chains to its certificate (pesign reads both signers).
    let signers = tool_ok(Command::new("pesign").args(["-S", "-i"]).arg(&both));
    assert!(
        signers.contains("Debian Secure Boot Signer 2022 - grub2"),
        "{signers}"
    );
    assert!(signers.contains("trustlaunch second signer"), "{signers}");
    let (c, v) = (d.join("c.pem"), vendor.to_str().unwrap().to_string());
    let c = c.to_str().unwrap();
    // EDK2: either signature allows; a dbx hit on either denies (DxeImageVerificationLib
    // checks dbx for every signature before it looks at db).
    assert_eq!(verify(&both, &["--db", c]).0, 0);
    assert_eq!(verify(&both, &["--db", &v]).0, 0);
    let (code, out) = verify(&both, &["--db", c, "--dbx", &v]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("revoked: the signature chains to Debian Secure Boot CA"),
        "{out}"
    );
    // shim 16: a signature revoked by certificate fails only itself; the other still counts.
    let shim = lab().shim.to_str().unwrap();
    let (code, out) = verify(&both, &["--vars", VARS, "--shim", shim, "--mokx", c]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Debian Secure Boot CA"), "{out}");
    let (code, out) = verify(&both, &["--vars", VARS, "--shim", shim, "--mok", c]);
    assert_eq!(code, 0, "{out}");
}

/// `openssl` in `dir`: an ECDSA (P-256) or RSA key `name.key` and a certificate `name.pem`
/// for `CN=name`, issued by `issuer` (a name made earlier here) or self-signed, a CA or not.
fn issue(dir: &Path, name: &str, issuer: Option<&str>, ca: bool, ec: bool) -> PathBuf {
    let key = dir.join(format!("{name}.key"));
    let pem = dir.join(format!("{name}.pem"));
    let ext = dir.join(format!("{name}.ext"));
    let constraints = if ca {
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,digitalSignature\n"
    } else {
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    };
    fs::write(&ext, constraints).unwrap();
    let newkey: &[&str] = if ec {
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    } else {
        &["-newkey", "rsa:2048"]
    };
    let csr = dir.join(format!("{name}.csr"));
    tool_ok(
        Command::new("openssl")
            .args(["req", "-new", "-nodes", "-subj"])
            .arg(format!("/CN={name}"))
            .args(newkey)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    );
    let mut x509 = Command::new("openssl");
    x509.args(["x509", "-req", "-days", "2", "-in"])
        .arg(&csr)
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&pem);
    match issuer {
        Some(i) => x509
            .arg("-CA")
            .arg(dir.join(format!("{i}.pem")))
            .arg("-CAkey")
            .arg(dir.join(format!("{i}.key")))
            .arg("-CAcreateserial"),
        None => x509.arg("-key").arg(&key),
    };
    tool_ok(&mut x509);
    pem
}

#[test]
fn ecdsa_signers_and_chains_trusted_at_any_level_agree_with_sbverify() {
    let dir = tempdir();
    let d = dir.path();
    let root = issue(d, "root", None, true, false);
    let inter = issue(d, "inter", Some("root"), true, true);
    let leaf = issue(d, "leaf", Some("inter"), false, true);
    let other = issue(d, "other", None, true, true);
    let unsigned = unsigned_copy(&lab().grub, &d.join("grub-unsigned.efi"));
    let signed = d.join("grub-ecdsa.efi");
    tool_ok(
        Command::new("sbsign")
            .arg("--key")
            .arg(d.join("leaf.key"))
            .arg("--cert")
            .arg(&leaf)
            .arg("--addcert")
            .arg(&inter)
            .arg("--output")
            .arg(&signed)
            .arg(&unsigned),
    );
    // EDK2's partial chains: the leaf, its intermediate or the root may be the db entry. The
    // peer for the chain is `openssl verify` with EDK2's flags; sbverify agrees on the
    // allowed cases but, like for shim, says OK for any --cert once the signature carries a
    // CA certificate, so it is no truth for "other".
    for (cert, allowed) in [
        (&leaf, true),
        (&inter, true),
        (&root, true),
        (&other, false),
    ] {
        let (code, out) = verify(&signed, &["--db", cert.to_str().unwrap()]);
        assert_eq!(code == 0, allowed, "{}: {out}", cert.display());
        let chain = tool(
            Command::new("openssl")
                .args([
                    "verify",
                    "-partial_chain",
                    "-no_check_time",
                    "-purpose",
                    "any",
                ])
                .arg("-CAfile")
                .arg(cert)
                .arg("-untrusted")
                .arg(&inter)
                .arg(&leaf),
        );
        assert_eq!(
            chain.status.success(),
            allowed,
            "openssl verify {}",
            cert.display()
        );
        if allowed {
            assert!(sbverify(cert, &signed), "sbverify {}", cert.display());
        }
    }
    // The intermediate in dbx revokes it even with the root in db.
    let (code, out) = verify(
        &signed,
        &[
            "--db",
            root.to_str().unwrap(),
            "--dbx",
            inter.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("revoked: the signature chains to inter"),
        "{out}"
    );
}

/// `trustlaunch secureboot SUBCOMMAND INPUT` with `dir`'s k.pem and c.pem, written to `out`.
fn our_sign(subcommand: &str, input: &Path, dir: &Path, out: &Path) {
    let (k, c) = (dir.join("k.pem"), dir.join("c.pem"));
    let args = args![
        "secureboot",
        subcommand,
        input,
        "--key",
        &k,
        "--cert",
        &c,
        "--output",
        out
    ];
    assert_eq!(
        trustlaunch(args).0,
        0,
        "trustlaunch secureboot {subcommand}"
    );
}

#[test]
fn images_and_modules_we_sign_verify_with_sbverify_pesign_and_openssl() {
    let dir = tempdir();
    let d = dir.path();
    self_signed(d, "trustlaunch signer", "k.pem", "c.pem");
    self_signed(d, "not the signer", "k2.pem", "c2.pem");
    let (c, c2) = (d.join("c.pem"), d.join("c2.pem"));
    let unsigned = unsigned_copy(&lab().grub, &d.join("grub-unsigned.efi"));
    let signed = d.join("grub-ours.efi");
    our_sign("sign", &unsigned, d, &signed);
    assert!(sbverify(&c, &signed));
    assert!(!sbverify(&c2, &signed));
    let pesign = tool_ok(Command::new("pesign").arg("-h").arg("-i").arg(&signed));
    assert!(pesign.contains(&signed_digest(&signed, d)), "{pesign}");
    let (code, out) = verify(&signed, &["--db", c.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(verify(&signed, &["--db", c2.to_str().unwrap()]).0, 1);
    // A module signed as sign-file signs: openssl verifies the detached PKCS#7 over the body.
    let module = d.join("efivarfs-ours.ko");
    let bytes = fs::read(&lab().module).unwrap();
    let (body, _) = split_module(&bytes);
    fs::write(d.join("body"), body).unwrap();
    our_sign("sign-module", &d.join("body"), d, &module);
    let ours = fs::read(&module).unwrap();
    let (signed_body, p7) = split_module(&ours);
    assert_eq!(signed_body, body);
    fs::write(d.join("module.p7"), p7).unwrap();
    tool_ok(
        Command::new("openssl")
            .args([
                "smime",
                "-verify",
                "-binary",
                "-inform",
                "DER",
                "-partial_chain",
                "-purpose",
            ])
            .args(["any", "-no_check_time", "-in"])
            .arg(d.join("module.p7"))
            .arg("-content")
            .arg(d.join("body"))
            .arg("-CAfile")
            .arg(&c)
            .arg("-certfile")
            .arg(&c)
            .arg("-out")
            .arg("/dev/null"),
    );
    let (code, out) = verify(&module, &["--db", c.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(verify(&module, &["--db", c2.to_str().unwrap()]).0, 1);
}

#[test]
fn variable_updates_match_efitools_byte_for_byte_and_verify_as_edk2_checks_them() {
    let dir = tempdir();
    let d = dir.path();
    self_signed(d, "trustlaunch KEK", "k.pem", "c.pem");
    self_signed(d, "another KEK", "k2.pem", "c2.pem");
    trustlaunch(args!["secureboot", "vars", VARS, "--extract", d]);
    let db = d.join("db.esl");
    let when = "2024-05-06 07:08:09";
    let theirs = d.join("efitools.auth");
    tool_ok(
        Command::new("sign-efi-sig-list")
            .args(["-t", when, "-k"])
            .arg(d.join("k.pem"))
            .arg("-c")
            .arg(d.join("c.pem"))
            .arg("db")
            .arg(&db)
            .arg(&theirs),
    );
    let ours = d.join("ours.auth");
    let (code, _) = trustlaunch(args![
        "secureboot",
        "sign-variable",
        "db",
        &db,
        "--key",
        &d.join("k.pem"),
        "--cert",
        &d.join("c.pem"),
        "--timestamp",
        when,
        "--output",
        &ours
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        fs::read(&ours).unwrap(),
        fs::read(&theirs).unwrap(),
        "not byte-identical to sign-efi-sig-list"
    );
    let check = |name: &str, cert: &str| {
        trustlaunch(args![
            "secureboot",
            "verify-variable",
            &theirs,
            "--name",
            name,
            "--cert",
            &d.join(cert)
        ])
        .0
    };
    assert_eq!(check("db", "c.pem"), 0);
    assert_eq!(check("dbx", "c.pem"), 1);
    assert_eq!(check("db", "c2.pem"), 1);
    // Its payload is OVMF's db, and --db accepts the .auth as it is.
    let (code, out) = verify(&lab().shim, &["--db", theirs.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

/// The live variables of a store as virt-fw-vars (virt-firmware, an independent reader of
/// edk2 variable stores) reports them: (name, GUID, attributes, data).
fn virt_fw_variables(vars: &Path, dir: &Path) -> Vec<(String, String, u32, Vec<u8>)> {
    let json = dir.join("vars.json");
    tool_ok(
        Command::new("virt-fw-vars")
            .arg("-i")
            .arg(vars)
            .arg("--output-json")
            .arg(&json),
    );
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    v["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .map(|x| {
            (
                x["name"].as_str().unwrap().to_string(),
                x["guid"].as_str().unwrap().to_string(),
                u32::try_from(x["attr"].as_u64().unwrap()).unwrap(),
                hex::decode(x["data"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

/// Our `vars` listing, live variables only: (name, GUID, attributes, size).
fn our_variables(vars: &Path) -> Vec<(String, String, u32, usize)> {
    let (code, out) = trustlaunch(args!["secureboot", "vars", vars]);
    assert_eq!(code, 0);
    out.lines()
        .map(|l| l.splitn(5, ' ').collect::<Vec<_>>())
        .filter(|f| f[1] == "live")
        .map(|f| {
            let attr = u32::from_str_radix(f[2].trim_start_matches("attributes=0x"), 16).unwrap();
            let size = f[3].trim_start_matches("size=").parse().unwrap();
            (f[4].to_string(), f[0].to_string(), attr, size)
        })
        .collect()
}

#[test]
fn the_ovmf_store_reads_as_virt_fw_vars_reads_it() {
    let dir = tempdir();
    let d = dir.path();
    let mut theirs = virt_fw_variables(Path::new(VARS), d);
    let mut ours = our_variables(Path::new(VARS));
    theirs.sort();
    ours.sort();
    let theirs_short: Vec<_> = theirs
        .iter()
        .map(|(n, g, a, data)| (n.clone(), g.clone(), *a, data.len()))
        .collect();
    assert_eq!(ours, theirs_short);
    trustlaunch(args!["secureboot", "vars", VARS, "--extract", d]);
    for name in ["PK", "KEK", "db", "dbx"] {
        let data = &theirs.iter().find(|v| v.0 == name).expect(name).3;
        assert_eq!(
            &fs::read(d.join(format!("{name}.esl"))).unwrap(),
            data,
            "{name}"
        );
    }
}

#[test]
fn enrolled_stores_read_back_with_virt_fw_vars_and_theirs_read_with_ours() {
    let dir = tempdir();
    let d = dir.path();
    let vendor = vendor_certificate(d);
    let ours = d.join("ours.fd");
    let (code, _) = trustlaunch(args![
        "secureboot",
        "enroll",
        VARS,
        "--db",
        &vendor,
        "--timestamp",
        "2025-01-02 03:04:05",
        "--output",
        &ours
    ]);
    assert_eq!(code, 0);
    // virt-fw-vars reads our store: db now holds exactly the Debian CA, as efitools decodes
    // it; every other live variable is as it was.
    let after = virt_fw_variables(&ours, d);
    let before = virt_fw_variables(Path::new(VARS), d);
    let db = &after.iter().find(|v| v.0 == "db").expect("db").3;
    fs::write(d.join("enrolled-db.esl"), db).unwrap();
    tool_ok(
        Command::new("sig-list-to-certs")
            .arg(d.join("enrolled-db.esl"))
            .arg(d.join("enrolled")),
    );
    assert_eq!(
        fs::read(d.join("enrolled-0.der")).unwrap(),
        fs::read(d.join("vendor.der")).unwrap()
    );
    assert!(!d.join("enrolled-1.der").exists());
    let others = |v: &[(String, String, u32, Vec<u8>)]| {
        let mut o: Vec<_> = v.iter().filter(|x| x.0 != "db").cloned().collect();
        o.sort();
        o
    };
    assert_eq!(others(&after), others(&before));
    // Firmware with that store: grub runs (Debian CA in db), shim does not (no Microsoft CA).
    let ours_str = ours.to_str().unwrap();
    assert_eq!(verify(&lab().grub, &["--vars", ours_str]).0, 0);
    assert_eq!(verify(&lab().shim, &["--vars", ours_str]).0, 1);
    // And a store virt-fw-vars wrote (it rewrites the whole store) reads with ours.
    let theirs = d.join("theirs.fd");
    tool_ok(
        Command::new("virt-fw-vars")
            .arg("-i")
            .arg(VARS)
            .args(["--add-db", "11111111-2222-3333-4444-555555555555"])
            .arg(&vendor)
            .arg("-o")
            .arg(&theirs),
    );
    let theirs_str = theirs.to_str().unwrap();
    let (code, out) = verify(&lab().grub, &["--vars", theirs_str]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Debian Secure Boot CA"), "{out}");
    assert_eq!(verify(&lab().shim, &["--vars", theirs_str]).0, 0);
}

/// Bring your own keys: a new PK, KEK and db (openssl), enrolled into a copy of the keyless
/// OVMF_VARS_4M.fd; an EFI binary (Debian's grub with its signature removed) signed with the
/// db key is allowed — as sbverify with the db certificate agrees — and the unsigned original
/// is denied; the Microsoft-signed shim is not trusted by these keys.
#[test]
fn bring_your_own_keys_enrolled_into_ovmf_vars_allow_what_they_sign() {
    let dir = tempdir();
    let d = dir.path();
    for (cn, key, cert) in [
        ("my PK", "pk.key", "pk.pem"),
        ("my KEK", "kek.key", "kek.pem"),
        ("my db", "db.key", "db.pem"),
    ] {
        self_signed(d, cn, key, cert);
    }
    let vars = d.join("my-vars.fd");
    let (code, out) = trustlaunch(args![
        "secureboot",
        "enroll",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
        "--pk",
        &d.join("pk.pem"),
        "--kek",
        &d.join("kek.pem"),
        "--db",
        &d.join("db.pem"),
        "--output",
        &vars
    ]);
    assert_eq!(code, 0, "{out}");
    let unsigned = unsigned_copy(&lab().grub, &d.join("grub-unsigned.efi"));
    let signed = d.join("grub-mine.efi");
    let (code, out) = trustlaunch(args![
        "secureboot",
        "sign",
        "--key",
        &d.join("db.key"),
        "--cert",
        &d.join("db.pem"),
        "--output",
        &signed,
        &unsigned
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        sbverify(&d.join("db.pem"), &signed),
        "sbverify --cert db.pem accepts our signature"
    );
    let vars_str = vars.to_str().unwrap();
    let (code, out) = verify(&signed, &["--vars", vars_str]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("my db"), "{out}");
    let (code, out) = verify(&unsigned, &["--vars", vars_str]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unsigned"), "{out}");
    assert_eq!(verify(&lab().shim, &["--vars", vars_str]).0, 1);
}

/// The verification that needs no OpenSSL (a strict reading of the certificates and the
/// SignedData, RustCrypto RSA) decides exactly as OpenSSL's `PKCS7_verify`, which EDK2
/// runs: on the real boot chain, with Microsoft's db and with shim's vendor certificate as
/// the only db entry, and with every byte of shim's signature changed in turn.
#[test]
fn verdicts_without_openssl_equal_openssls() {
    use secureboot::pe::{DigestFlavor, PeImage};
    use secureboot::policy::without_fast_path;
    use secureboot::{esl, Databases, HashAlgorithm, KnownDigests, Loader, ShimPolicy};
    let lab = lab();
    let vars = fs::read(VARS).expect("OVMF vars");
    let store = secureboot::varstore::VariableStore::parse(&vars).expect("variable store");
    let [_, _, (_, db), (_, dbx)] = store.secure_boot_variables();
    let microsoft = Databases {
        db: esl::parse(db).expect("db"),
        dbx: esl::parse(dbx).expect("dbx"),
    };
    let shim = fs::read(&lab.shim).expect("shim");
    let vendor = ShimPolicy::from_shim_image(&shim)
        .expect("shim policy")
        .vendor_cert
        .expect("shim's vendor certificate");
    let debian = Databases {
        db: vec![esl::SignatureList::new(
            secureboot::guid::EFI_CERT_X509_GUID,
            secureboot::Guid([7; 16]),
            vec![vendor],
        )
        .expect("ESL")],
        dbx: microsoft.dbx.clone(),
    };
    let images = [
        ("shim", shim.clone()),
        ("grub", fs::read(&lab.grub).expect("grub")),
        ("kernel", fs::read(&lab.kernel).expect("kernel")),
    ];
    let mut allowed = 0;
    for (name, image) in &images {
        for (db_name, dbs) in [("Microsoft", &microsoft), ("Debian", &debian)] {
            let fast = secureboot::verify_image(dbs, image, &Loader::Firmware);
            let reference =
                without_fast_path(|| secureboot::verify_image(dbs, image, &Loader::Firmware));
            assert_eq!(fast, reference, "{name} with the {db_name} db");
            allowed += usize::from(fast.is_allowed());
        }
    }
    // shim by Microsoft's CA; grub and the kernel by Debian's.
    assert_eq!(allowed, 3);
    // And the fast path did answer for shim: the Microsoft CA, read strictly, chains.
    let pe = PeImage::parse(&shim).expect("PE");
    let wc = &pe.certificates().expect("certificates")[0];
    let sig = secureboot::authenticode::AuthenticodeSignature::parse(wc.data, 0).expect("sig");
    let ca = microsoft
        .db
        .iter()
        .flat_map(|l| l.entries().map(|(_, _, s)| s).collect::<Vec<_>>())
        .find_map(|s| match s {
            esl::Signature::X509(der) if der.windows(11).any(|w| w == b"UEFI CA 201") => {
                Some(der.to_vec())
            }
            _ => None,
        })
        .expect("the Microsoft UEFI CA in db");
    assert_eq!(sig.fast_path_agrees(&ca), Some(true));

    // Every byte of shim's certificate table, changed (one bit of four in turn): the image
    // digest is unchanged (the table is outside it), so it is computed once.
    let pe = PeImage::parse(&shim).expect("PE");
    let mut known = KnownDigests::default();
    let digest = pe
        .authenticode_digest(HashAlgorithm::Sha256, DigestFlavor::Firmware)
        .expect("digest");
    known.insert(HashAlgorithm::Sha256, DigestFlavor::Firmware, digest);
    let table = pe.certificates().expect("certificates")[0].offset;
    let mut changed = shim.clone();
    let mut outcomes = std::collections::BTreeMap::new();
    for at in table..shim.len() {
        // A different bit in turn: tags, lengths, content bits.
        let flip = [0x20u8, 0x01, 0x80, 0x04][at % 4];
        changed[at] ^= flip;
        let fast = secureboot::verify_image_with(&microsoft, &changed, &Loader::Firmware, &known);
        let reference = without_fast_path(|| {
            secureboot::verify_image_with(&microsoft, &changed, &Loader::Firmware, &known)
        });
        assert_eq!(fast, reference, "byte {at:#x} of shim ^ {flip:#04x}");
        *outcomes.entry(fast.is_allowed()).or_insert(0) += 1;
        changed[at] ^= flip;
    }
    // Most changes break the signature; some (unsigned attributes, padding) do not.
    assert!(
        outcomes.get(&false).copied().unwrap_or(0) > 1000,
        "{outcomes:?}"
    );
}
