//! `trustlaunch eventlog` against an independent peer: for every corpus log
//! (crates/eventlog/testdata), `replay` prints exactly the PCR values tpm2-tools'
//! `tpm2_eventlog` computes; logs tpm2_eventlog cannot read are each expected explicitly.
//! Also: the OVMF log's replay equals the PCRs its guest read, malformed and forged logs exit
//! 2 with the event and offset named, and machine output parses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../eventlog/testdata")
}

fn corpus() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(testdata()).unwrap() {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "bin") {
                    out.push(f);
                }
            }
        }
    }
    out.sort();
    assert!(out.len() >= 30, "corpus went missing");
    out
}

fn name(path: &Path) -> String {
    path.strip_prefix(testdata()).unwrap().display().to_string()
}

fn trustlaunch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trustlaunch"))
        .args(args)
        .output()
        .expect("run trustlaunch")
}

type PcrSet = BTreeSet<(String, u32, String)>;

/// Our `replay`: `<bank> <pcr> <hex>` lines.
fn our_replay(path: &Path) -> Result<PcrSet, String> {
    let out = trustlaunch(&["eventlog", "replay", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "{}: panic\n{stderr}",
        path.display()
    );
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", path.display());
        return Err(stderr);
    }
    Ok(String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 3, "bad line {l:?}");
            let v = f[2];
            assert!(
                v.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{l}"
            );
            (f[0].to_string(), f[1].parse().unwrap(), v.to_string())
        })
        .collect())
}

/// tpm2_eventlog's `pcrs:` section (`  sha256:` then `    7  : 0x…`), or its failure.
fn tpm2_eventlog(path: &Path) -> Result<PcrSet, String> {
    let out = Command::new("tpm2_eventlog")
        .arg(path)
        .output()
        .expect("tpm2_eventlog (tpm2-tools) must be installed: scripts/test.sh installs it");
    if !out.status.success() {
        return Err(format!(
            "{} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut set = PcrSet::new();
    let mut bank = None;
    let mut in_pcrs = false;
    for line in text.lines() {
        if line == "pcrs:" {
            in_pcrs = true;
            continue;
        }
        if !in_pcrs {
            continue;
        }
        let trimmed = line.trim();
        if let Some(b) = trimmed.strip_suffix(':') {
            bank = Some(b.to_string());
        } else if let Some((pcr, value)) = trimmed.split_once(':') {
            let value = value
                .trim()
                .strip_prefix("0x")
                .unwrap()
                .to_ascii_lowercase();
            set.insert((bank.clone().unwrap(), pcr.trim().parse().unwrap(), value));
        }
    }
    Ok(set)
}

/// The log without its EV_NO_ACTION events of pcrIndex 0xFFFFFFFF (which tpm2_eventlog
/// refuses and which extend nothing), for a comparison on the rest.
fn without_unindexed_no_action(path: &Path, dir: &Path) -> PathBuf {
    let mut log = eventlog::EventLog::parse(&std::fs::read(path).unwrap()).unwrap();
    let before = log.events.len();
    log.events
        .retain(|e| !(e.pcr == u32::MAX && e.event_type == eventlog::EventType::EV_NO_ACTION));
    assert!(
        log.events.len() < before,
        "{}: nothing removed",
        path.display()
    );
    let out = dir.join(path.file_name().unwrap());
    std::fs::write(&out, log.to_bytes()).unwrap();
    out
}

#[test]
fn replay_equals_tpm2_eventlog_on_every_corpus_log() {
    let tmp = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for path in corpus() {
        let n = name(&path);
        let ours = our_replay(&path);
        let peer = tpm2_eventlog(&path);
        match n.as_str() {
            // The Spec ID event's eventSize stops before its vendorInfo; tpm2_eventlog reads
            // past the event (and replays nothing), we refuse the log.
            "tpm2-tools/specid-vendordata.bin" => {
                assert_eq!(peer, Ok(PcrSet::new()), "{n}");
                let err = ours.unwrap_err();
                assert!(
                    err.contains("event 0 at offset 69: truncated: vendorInfo"),
                    "{n}: {err}"
                );
            }
            // A SHA-1 log holding only a Startup Locality event: tpm2_eventlog takes it for
            // a malformed Spec ID event; it extends nothing.
            "go-attestation/short_no_action_eventlog.bin" => {
                assert!(peer.is_err(), "{n}");
                assert_eq!(ours, Ok(PcrSet::new()), "{n}");
            }
            // EV_NO_ACTION events with pcrIndex 0xFFFFFFFF (Windows boot configuration), which
            // tpm2_eventlog 5.4 refuses in crypto-agile logs and dies of SIGSEGV on in the
            // SHA-1 option_rom log: compare with tpm2_eventlog on the same log without them.
            "go-attestation/option_rom_eventlog.bin"
            | "uefi-eventlog/ideapad-ideapad1.bin"
            | "uefi-eventlog/thinkpad-p511.bin"
            | "uefi-eventlog/thyme-thyme-eventlog.bin" => {
                let err = peer.unwrap_err();
                assert!(
                    err.contains("PCR Index -1") || err.contains("signal: 11"),
                    "{n}: {err}"
                );
                let filtered = without_unindexed_no_action(&path, tmp.path());
                let peer = tpm2_eventlog(&filtered).unwrap();
                let ours = ours.unwrap_or_else(|e| panic!("{n}: {e}"));
                assert!(!peer.is_empty());
                assert_eq!(ours, peer, "{n} (without the 0xFFFFFFFF events)");
                assert_eq!(our_replay(&filtered).unwrap(), ours, "{n}");
                compared += 1;
            }
            _ => {
                let peer = peer.unwrap_or_else(|e| panic!("{n}: tpm2_eventlog failed: {e}"));
                let ours = ours.unwrap_or_else(|e| panic!("{n}: {e}"));
                assert_eq!(ours, peer, "{n}");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 30, "logs compared with tpm2_eventlog");
}

#[test]
fn ovmf_replay_equals_the_pcrs_the_guest_read() {
    let dir = testdata().join("ovmf-debian12");
    let ours = our_replay(&dir.join("secureboot-shim-grub-linux.bin")).unwrap();
    let pcrs = std::fs::read_to_string(dir.join("secureboot-shim-grub-linux.pcrs")).unwrap();
    let mut n = 0;
    for line in pcrs.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let key = (
            f[1].to_string(),
            f[2].parse().unwrap(),
            f[3].to_ascii_lowercase(),
        );
        if key.2.chars().all(|c| c == '0') || key.2.chars().all(|c| c == 'f') {
            assert!(
                !ours.iter().any(|(b, p, _)| *b == key.0 && *p == key.1),
                "{line}"
            );
        } else {
            assert!(ours.contains(&key), "{line} not in our replay");
            n += 1;
        }
    }
    assert_eq!(n, 33);
}

#[test]
fn truncated_log_exits_2_naming_event_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let log =
        std::fs::read(testdata().join("ovmf-debian12/secureboot-shim-grub-linux.bin")).unwrap();
    let cut = tmp.path().join("cut.bin");
    std::fs::write(&cut, &log[..1000]).unwrap();
    for cmd in ["show", "replay", "components"] {
        let out = trustlaunch(&["eventlog", cmd, cut.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains("event 5 at offset 986: truncated"),
            "{cmd}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
    // Garbage: an error, not a panic.
    std::fs::write(&cut, [0xffu8; 7]).unwrap();
    let out = trustlaunch(&["eventlog", "replay", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn components_of_the_ovmf_boot_and_a_forged_one() {
    let path = testdata().join("ovmf-debian12/secureboot-shim-grub-linux.bin");
    let out = trustlaunch(&[
        "eventlog",
        "components",
        path.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["secure_boot"]["enabled"], true);
    assert_eq!(v["secure_boot"]["variables"]["db"]["event"], 7);
    let roles: Vec<&str> = v["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["shim", "grub", "kernel", "kernel"]);
    assert_eq!(
        v["kernel_cmdline"]["text"],
        "/vmlinuz console=ttyS0 panic=-1"
    );
    assert_eq!(v["initrd"]["text"], "/initrd.img");
    assert_eq!(v["initrd"]["event"], 45);
    assert_eq!(v["secure_boot"]["authorities"][0]["kind"], "signature_data");

    // The SecureBoot variable event retyped: rejected, exit 2, event named.
    let mut log = eventlog::EventLog::parse(&std::fs::read(&path).unwrap()).unwrap();
    log.events[4].event_type = eventlog::EventType::EV_EVENT_TAG;
    let tmp = tempfile::tempdir().unwrap();
    let forged = tmp.path().join("forged.bin");
    std::fs::write(&forged, log.to_bytes()).unwrap();
    let out = trustlaunch(&["eventlog", "components", forged.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("event 4: type EV_EVENT_TAG is not allowed in PCR 7"),
        "{err}"
    );
}

#[test]
fn show_prints_every_event_as_json_and_yaml() {
    let path = testdata().join("ovmf-debian12/secureboot-shim-grub-linux.bin");
    let out = trustlaunch(&["eventlog", "show", path.to_str().unwrap(), "-o", "json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format"], "crypto-agile");
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 49);
    assert_eq!(events[0]["decoded"]["kind"], "spec_id");
    assert_eq!(events[4]["decoded"]["name"], "SecureBoot");
    let device_path = events[26]["decoded"]["device_path"].as_str().unwrap();
    assert!(
        device_path.ends_with("\\EFI\\BOOT\\BOOTX64.EFI"),
        "{device_path}"
    );
    let out = trustlaunch(&["eventlog", "show", path.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("type: EV_SEPARATOR"));
}

/// `trustlaunch bench eventlog` runs both tools and prints its table (speed is not checked
/// here: debug build, shared machine).
#[test]
fn bench_eventlog_runs_both_tools() {
    let log = testdata().join("ovmf-debian12/secureboot-shim-grub-linux.bin");
    let out = trustlaunch(&["bench", "eventlog", "--runs", "3", log.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "tpm2_eventlog ",
        "trustlaunch ",
        "ours/tpm2_eventlog: ",
        "target (ours <= 0.5x",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(row)),
            "no {row:?} line in\n{text}"
        );
    }
    // A log tpm2_eventlog cannot read fails the bench instead of timing a crash.
    let bad = testdata().join("uefi-eventlog/thyme-thyme-eventlog.bin");
    let out = trustlaunch(&["bench", "eventlog", "--runs", "1", bad.to_str().unwrap()]);
    assert!(!out.status.success());
}
