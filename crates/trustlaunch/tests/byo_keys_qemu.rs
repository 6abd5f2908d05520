//! Bring your own keys, proven on real firmware: a new PK/KEK/db hierarchy (`trustlaunch
//! secureboot keys new`) enrolled into a copy of Debian's OVMF_VARS_4M.fd (`vars enroll`),
//! a UEFI application signed with the db key (`sign`; sbverify agrees), then OVMF under QEMU
//! (Secure Boot code, q35 with SMM) with those variables runs the signed application and
//! refuses the unsigned one ("Access Denied"), as `trustlaunch secureboot verify` predicts.
//! The application is built here from tests/data/byo-hello.c with gnu-efi (scripts/test.sh
//! installs gnu-efi, ovmf, qemu-system-x86, sbsigntool).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_trustlaunch");
const MARKER: &str = "TRUSTLAUNCH-BYO-KEYS: the signed image ran";

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Builds the UEFI application (PE32+, subsystem 10) with gnu-efi.
fn build_app(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/byo-hello.c");
    let (obj, so, efi) = (
        dir.join("hello.o"),
        dir.join("hello.so"),
        dir.join("hello.efi"),
    );
    run(Command::new("gcc")
        .args([
            "-I/usr/include/efi",
            "-I/usr/include/efi/x86_64",
            "-fpic",
            "-ffreestanding",
        ])
        .args([
            "-fno-stack-protector",
            "-fno-stack-check",
            "-fshort-wchar",
            "-mno-red-zone",
        ])
        .args(["-maccumulate-outgoing-args", "-DEFI_FUNCTION_WRAPPER", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj));
    run(Command::new("ld")
        .args([
            "-shared",
            "-Bsymbolic",
            "-L/usr/lib",
            "-T/usr/lib/elf_x86_64_efi.lds",
        ])
        .arg("/usr/lib/crt0-efi-x86_64.o")
        .arg(&obj)
        .arg("-o")
        .arg(&so)
        .args(["-lefi", "-lgnuefi"]));
    run(Command::new("objcopy")
        .args([
            "-j", ".text", "-j", ".sdata", "-j", ".data", "-j", ".rodata", "-j", ".dynamic",
        ])
        .args([
            "-j", ".dynsym", "-j", ".rel", "-j", ".rela", "-j", ".rel.*", "-j", ".rela.*",
        ])
        .args([
            "-j",
            ".reloc",
            "--target",
            "efi-app-x86_64",
            "--subsystem=10",
        ])
        .arg(&so)
        .arg(&efi));
    efi
}

/// Boots `app` as the removable-media boot loader under OVMF with `vars`; returns the serial
/// console once the marker appeared, OVMF refused the disk's loader, or 120 s passed.
fn boot(dir: &Path, name: &str, app: &Path, vars: &Path) -> String {
    let esp = dir.join(format!("esp-{name}"));
    fs::create_dir_all(esp.join("EFI/BOOT")).unwrap();
    fs::copy(app, esp.join("EFI/BOOT/BOOTX64.EFI")).unwrap();
    let my_vars = dir.join(format!("vars-{name}.fd"));
    fs::copy(vars, &my_vars).unwrap();
    let serial = dir.join(format!("serial-{name}.log"));
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35,smm=on,accel=tcg", "-m", "512", "-smp", "1"])
        .args(["-global", "driver=cfi.pflash01,property=secure,value=on"])
        .args([
            "-drive",
            "if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd,readonly=on",
        ])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            my_vars.display()
        ))
        .arg("-drive")
        .arg(format!(
            "file=fat:rw:{},format=raw,media=disk",
            esp.display()
        ))
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-net",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let text = loop {
        let text = String::from_utf8_lossy(&fs::read(&serial).unwrap_or_default()).to_string();
        let exited = qemu.try_wait().unwrap().is_some();
        let refused = text.contains("HARDDISK") && text.contains("Access Denied");
        if exited || refused || text.contains(MARKER) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = qemu.kill();
    let _ = qemu.wait();
    let mut err = String::new();
    if let Some(mut e) = qemu.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    format!("{text}\n--- qemu stderr\n{err}")
}

#[test]
fn ovmf_with_our_own_keys_runs_what_our_db_key_signed_and_refuses_the_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let keys = d.join("keys");
    run(Command::new(EXE)
        .args(["secureboot", "keys", "new", "--out"])
        .arg(&keys));
    for f in ["PK.key", "PK.crt", "KEK.key", "KEK.crt", "db.key", "db.crt"] {
        assert!(keys.join(f).is_file(), "{f}");
    }
    let vars = d.join("byo.fd");
    run(Command::new(EXE)
        .args([
            "secureboot",
            "vars",
            "enroll",
            "/usr/share/OVMF/OVMF_VARS_4M.fd",
            "--pk",
        ])
        .arg(keys.join("PK.crt"))
        .arg("--kek")
        .arg(keys.join("KEK.crt"))
        .arg("--db")
        .arg(keys.join("db.crt"))
        .arg("--out")
        .arg(&vars));
    let app = build_app(d);
    let signed = d.join("hello.signed.efi");
    run(Command::new(EXE)
        .args(["secureboot", "sign"])
        .arg(&app)
        .arg("--key")
        .arg(keys.join("db.key"))
        .arg("--cert")
        .arg(keys.join("db.crt"))
        .arg("--out")
        .arg(&signed));
    // The peer agrees on the signature, and our verdicts on both images.
    let sbverify = Command::new("sbverify")
        .arg("--cert")
        .arg(keys.join("db.crt"))
        .arg(&signed)
        .output()
        .unwrap();
    assert!(sbverify.status.success(), "sbverify refused our signature");
    let verdict = |image: &Path| {
        Command::new(EXE)
            .args(["secureboot", "verify"])
            .arg(image)
            .arg("--vars")
            .arg(&vars)
            .output()
            .unwrap()
    };
    let v = verdict(&signed);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
    assert!(String::from_utf8_lossy(&v.stdout).contains("trustlaunch db"));
    let v = verdict(&app);
    assert_eq!(v.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&v.stdout).contains("unsigned"));

    // Real firmware decides the same.
    let ran = boot(d, "signed", &signed, &vars);
    assert!(
        ran.contains(MARKER),
        "OVMF did not run the signed image:\n{ran}"
    );
    let refused = boot(d, "unsigned", &app, &vars);
    assert!(
        !refused.contains(MARKER),
        "OVMF ran the unsigned image:\n{refused}"
    );
    assert!(
        refused
            .lines()
            .any(|l| l.contains("HARDDISK") && l.contains("Access Denied")),
        "OVMF did not refuse the unsigned image:\n{refused}"
    );
}
