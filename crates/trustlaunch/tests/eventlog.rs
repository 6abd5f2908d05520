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
    // A missing file: exit 2 too.
    let out = trustlaunch(&["eventlog", "replay", "/nonexistent/log.bin"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/log.bin"));
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

// ---------------------------------------------------------------------------------------------
// A log written with the builder (as the virtual firmware will) against a TPM extended with
// the same events: the project's TPM 2.0 engine, started at locality 3, is the independent
// PCR computation (tpm2_eventlog 5.4 cannot serve here: it extends EV_NO_ACTION events and
// ignores the Startup Locality, against PFP 10.4.5.3).
// ---------------------------------------------------------------------------------------------

fn tpm_command(tag: u16, code: u32, body: &[u8]) -> Vec<u8> {
    let mut c = tag.to_be_bytes().to_vec();
    c.extend_from_slice(&((10 + body.len()) as u32).to_be_bytes());
    c.extend_from_slice(&code.to_be_bytes());
    c.extend_from_slice(body);
    c
}

fn tpm_ok(tpm: &mut tpm::Tpm, locality: u8, cmd: &[u8]) -> Vec<u8> {
    let r = tpm.execute(locality, cmd);
    assert_eq!(&r[6..10], &[0, 0, 0, 0], "TPM error {:02x?}", &r[6..10]);
    r
}

/// TPM2_PCR_Extend (Part 3, 22.2) with a password session.
fn pcr_extend(tpm: &mut tpm::Tpm, pcr: u32, digests: &[eventlog::Digest]) {
    let mut body = pcr.to_be_bytes().to_vec();
    body.extend_from_slice(&9u32.to_be_bytes());
    body.extend_from_slice(&0x4000_0009u32.to_be_bytes());
    body.extend_from_slice(&[0, 0, 0, 0, 0]);
    body.extend_from_slice(&(digests.len() as u32).to_be_bytes());
    for d in digests {
        body.extend_from_slice(&d.alg.0.to_be_bytes());
        body.extend_from_slice(&d.bytes);
    }
    tpm_ok(tpm, 0, &tpm_command(0x8002, 0x182, &body));
}

/// TPM2_PCR_Read (Part 3, 22.4) of one PCR in one bank.
fn pcr_read(tpm: &mut tpm::Tpm, alg: eventlog::AlgorithmId, pcr: u32) -> String {
    let mut select = [0u8; 3];
    select[(pcr / 8) as usize] = 1 << (pcr % 8);
    let mut body = 1u32.to_be_bytes().to_vec();
    body.extend_from_slice(&alg.0.to_be_bytes());
    body.push(3);
    body.extend_from_slice(&select);
    let r = tpm_ok(tpm, 0, &tpm_command(0x8001, 0x17E, &body));
    // header 10, pcrUpdateCounter 4, selection 10, count 4, then TPM2B_DIGEST.
    let size = u16::from_be_bytes([r[28], r[29]]) as usize;
    hex::encode(&r[30..30 + size])
}

#[test]
fn built_log_replays_to_what_a_tpm_extended_with_it_holds() {
    use eventlog::{AlgorithmId, Digest, EventType, LogBuilder};
    let banks = [AlgorithmId::SHA1, AlgorithmId::SHA256, AlgorithmId::SHA384];
    let mut b = LogBuilder::new(&banks, b"").unwrap();
    let mut events = vec![b.startup_locality(3)];
    events.push(b.measure(0, EventType::EV_S_CRTM_VERSION, &[0, 0]));
    let mut blob = 0x82_0000u64.to_le_bytes().to_vec();
    blob.extend_from_slice(&0xe_0000u64.to_le_bytes());
    events.push(b.measure_other(
        0,
        EventType::EV_EFI_PLATFORM_FIRMWARE_BLOB,
        b"firmware volume",
        blob,
    ));
    events.push(b.measure(7, EventType::EV_EFI_VARIABLE_DRIVER_CONFIG, b"SecureBoot=1"));
    for pcr in 0..8 {
        events.push(b.measure(pcr, EventType::EV_SEPARATOR, &[0; 4]));
    }
    let authenticode: Vec<Digest> = banks
        .iter()
        .map(|&alg| Digest {
            alg,
            bytes: alg.hash(b"shimx64.efi").unwrap(),
        })
        .collect();
    events.push(
        b.record(
            4,
            EventType::EV_EFI_BOOT_SERVICES_APPLICATION,
            authenticode,
            vec![0; 32],
        )
        .unwrap(),
    );
    events.push(b.measure(14, EventType::EV_IPL, b"MokList\0"));

    let mut tpm = tpm::Tpm::manufacture(b"eventlog test entropy, 32 bytes!");
    tpm.init();
    tpm_ok(&mut tpm, 3, &tpm_command(0x8001, 0x144, &[0, 0]));
    for e in events.iter().filter(|e| e.is_extended()) {
        pcr_extend(&mut tpm, e.pcr, &e.digests);
    }

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("built.bin");
    std::fs::write(&path, b.to_bytes()).unwrap();
    let ours = our_replay(&path).unwrap();
    assert_eq!(ours.len(), 3 * 9, "PCRs 0-7 and 14 in three banks");
    for (bank, pcr, value) in &ours {
        let alg = AlgorithmId::from_name(bank).unwrap();
        assert_eq!(*value, pcr_read(&mut tpm, alg, *pcr), "{bank} {pcr}");
    }
    // Without its Startup Locality event the log claims another PCR 0, and only that.
    let mut log = eventlog::EventLog::parse(&b.to_bytes()).unwrap();
    assert_eq!(log.events[1].data, b"StartupLocality\0\x03");
    log.events.remove(1);
    let pcrs = log.replay().unwrap();
    for (bank, pcr, value) in &ours {
        let alg = AlgorithmId::from_name(bank).unwrap();
        let without = hex::encode(pcrs.get(alg, *pcr).unwrap());
        assert_eq!(without == *value, *pcr != 0, "{bank} {pcr}");
    }
}

/// `replay --final-events`: a log the OS read early plus the Final Events Table replay to the
/// whole log's PCRs.
#[test]
fn replay_with_the_final_events_table() {
    use eventlog::{AlgorithmId, EventType, LogBuilder};
    let mut b = LogBuilder::new(&[AlgorithmId::SHA256], b"").unwrap();
    for pcr in 0..8 {
        b.measure(pcr, EventType::EV_SEPARATOR, &[0; 4]);
    }
    let early = b.to_bytes();
    let read_at = b.log().events.len();
    b.exit_boot_services();
    let tmp = tempfile::tempdir().unwrap();
    let (log, table, full) = (
        tmp.path().join("log"),
        tmp.path().join("table"),
        tmp.path().join("full"),
    );
    std::fs::write(&log, early).unwrap();
    // The table also holds the last separator, which the early log has: skip 1.
    std::fs::write(&table, b.final_events_table(read_at - 1)).unwrap();
    std::fs::write(&full, b.to_bytes()).unwrap();
    let args = [
        "eventlog",
        "replay",
        log.to_str().unwrap(),
        "--final-events",
        table.to_str().unwrap(),
    ];
    let without_skip = trustlaunch(&args);
    let mut skipped = args.to_vec();
    skipped.extend(["--final-events-skip", "1"]);
    let merged = trustlaunch(&skipped);
    let whole = trustlaunch(&["eventlog", "replay", full.to_str().unwrap()]);
    assert!(merged.status.success() && whole.status.success());
    assert_eq!(merged.stdout, whole.stdout);
    assert_ne!(
        without_skip.stdout, whole.stdout,
        "the duplicated separator counts twice"
    );
}
