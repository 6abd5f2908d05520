//! Acceptance test for "vTPM 3/3": the real Debian Secure Boot chain (Microsoft-signed shim,
//! Debian-signed grub and kernel, built by `lab/build-esp.sh` from Debian's packages) boots
//! under QEMU and OVMF with Secure Boot enforced, once with real swtpm as the TPM and once
//! with `trustlaunch vtpm socket`, both driven by QEMU's `tpm-emulator` backend over the swtpm
//! control protocol (`lab/boot.sh`). The guest's kernel must report Secure Boot enabled and a
//! working /dev/tpm0 in both boots, and what it reads from the TPM must be byte-identical: the
//! PCRs (sha1, sha256, sha384; 0-9 and 14) and the firmware event log.
//!
//! The same boot also checks the virtual firmware (issue "measured boot"): `trustlaunch
//! firmware boot` on the same ESP and variable store must leave the PCRs 1-9 and 14 the real
//! OVMF + shim + grub left, with the same events, for this chain and this grub.cfg.
//!
//! Both TPMs get the same PCR banks, sha1+sha256+sha384 (our vTPM's allocation; swtpm is
//! provisioned with `swtpm_setup --pcr-banks`): the firmware logs one digest per active bank,
//! so two TPMs with different banks give different logs however right each one is.
//!
//! One boot each, side by side (20-40 s each under software emulation on 2 cores). The ESP is
//! cached in `$CARGO_TARGET_TMPDIR/lab-cache`; each run's files go to a temporary directory
//! that is kept, and named, when the test fails. `TRUSTLAUNCH_SKIP_QEMU_BOOT=1` skips the test
//! on machines that cannot run it (it needs root for apt-get, or the packages installed).

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

/// What `lab/boot.sh` gives QEMU (its own `timeout`), in seconds.
const BOOT_TIMEOUT_SECS: u64 = 900;
/// Longest `lab/build-esp.sh` may take (downloads ~75 MB of packages the first time).
const BUILD_TIMEOUT: Duration = Duration::from_secs(1200);
/// The PCR banks both TPMs get, and the PCRs the guest reports.
const BANKS: [&str; 3] = ["sha1", "sha256", "sha384"];
const PCRS: [u32; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
        .unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..].join("\n")
}

fn run_with_timeout(cmd: &mut Command, limit: Duration, what: &str) -> std::process::ExitStatus {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    match child.wait_timeout(limit).expect("wait") {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The two TPMs
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tpm {
    /// Real swtpm (libtpms): the reference.
    Swtpm,
    /// `trustlaunch vtpm socket`.
    Ours,
}

impl Tpm {
    fn name(self) -> &'static str {
        match self {
            Tpm::Swtpm => "swtpm",
            Tpm::Ours => "ours",
        }
    }

    /// Starts the server on a fresh state directory in `dir`, with its control channel on
    /// `dir/ctrl.sock` (QEMU passes the data channel over it with CMD_SET_DATAFD) and its log
    /// at level 20 in `dir/server.log`.
    fn start(self, dir: &Path) -> Server {
        let state = dir.join("state");
        fs::create_dir_all(&state).expect("state dir");
        let tpmstate = format!("dir={}", state.display());
        let ctrl = format!("type=unixio,path={}", dir.join("ctrl.sock").display());
        let log = format!("file={},level=20", dir.join("server.log").display());
        let mut cmd = match self {
            Tpm::Swtpm => {
                // swtpm's fresh state has sha512 too; give it our banks, as libvirt would.
                let out = Command::new("swtpm_setup")
                    .args(["--tpm2", "--overwrite", "--pcr-banks", "sha1,sha256,sha384"])
                    .arg("--tpmstate")
                    .arg(&state)
                    .output()
                    .expect("swtpm_setup (Debian package swtpm-tools) must be installed");
                assert!(
                    out.status.success(),
                    "swtpm_setup failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                Command::new("swtpm")
            }
            Tpm::Ours => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_trustlaunch"));
                c.arg("vtpm");
                c
            }
        };
        cmd.args([
            "socket",
            "--tpm2",
            "--tpmstate",
            &tpmstate,
            "--ctrl",
            &ctrl,
            "--log",
            &log,
        ]);
        let out = File::create(dir.join("server.out")).expect("server.out");
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{}: cannot start the server: {e}", self.name()));
        Server { child }
    }
}

/// A running TPM server, killed when dropped.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// One boot
// ---------------------------------------------------------------------------------------------

/// What one boot produced (the files `lab/boot.sh` writes, parsed).
struct Boot {
    tpm: Tpm,
    dir: PathBuf,
    secs: f64,
    /// `lab/boot.sh` exited 0: the guest's /init reached its last line.
    complete: bool,
    /// SECUREBOOT, TPM0, PLATFORM-AUTH, … (see lab/init.sh) to the rest of their line.
    report: BTreeMap<String, String>,
    /// (bank, index) to the upper-case hex the kernel prints, or "none".
    pcrs: BTreeMap<(String, u32), String>,
    eventlog: Vec<u8>,
}

impl Boot {
    fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("boot.{suffix}"))
    }

    /// The logs worth reading when this boot went wrong.
    fn diagnostics(&self) -> String {
        format!(
            "--- {name}: lab/boot.sh stderr\n{}\n--- {name}: QEMU stderr\n{}\n\
             --- {name}: serial console (last 40 lines)\n{}\n\
             --- {name}: TPM server stdout/stderr\n{}\n--- {name}: TPM server log (last 30 lines)\n{}",
            tail(&self.dir.join("boot.err"), 20),
            tail(&self.file("qemu.log"), 20),
            tail(&self.file("log"), 40),
            tail(&self.dir.join("server.out"), 20),
            tail(&self.dir.join("server.log"), 30),
            name = self.tpm.name(),
        )
    }
}

/// One boot with `tpm` behind QEMU's `device` (`tpm-crb` or `tpm-tis`).
fn boot(tpm: Tpm, device: &str, esp: &Path, dir: &Path) -> Boot {
    fs::create_dir_all(dir).expect("boot dir");
    let server = tpm.start(dir);
    let started = Instant::now();
    let status = run_with_timeout(
        Command::new("bash")
            .arg(repo().join("lab/boot.sh"))
            .arg(esp)
            .arg(dir.join("ctrl.sock"))
            .arg(dir.join("boot"))
            .env("BOOT_TIMEOUT", BOOT_TIMEOUT_SECS.to_string())
            .env("TPM_DEVICE", device)
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("boot.out")).expect("boot.out"))
            .stderr(File::create(dir.join("boot.err")).expect("boot.err")),
        Duration::from_secs(BOOT_TIMEOUT_SECS + 120),
        &format!("lab/boot.sh with {}", tpm.name()),
    );
    let secs = started.elapsed().as_secs_f64();
    drop(server);

    let read = |suffix: &str| fs::read(dir.join(format!("boot.{suffix}"))).unwrap_or_default();
    let mut report = BTreeMap::new();
    for line in String::from_utf8_lossy(&read("report")).lines() {
        if let Some((k, v)) = line.split_once(' ') {
            report.insert(k.to_string(), v.trim().to_string());
        }
    }
    let mut pcrs = BTreeMap::new();
    for line in String::from_utf8_lossy(&read("pcrs")).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [_, bank, index, value] = f[..] {
            if let Ok(i) = index.parse() {
                pcrs.insert((bank.to_string(), i), value.to_string());
            }
        }
    }
    Boot {
        tpm,
        dir: dir.to_path_buf(),
        secs,
        complete: status.success(),
        report,
        pcrs,
        eventlog: read("eventlog"),
    }
}

// ---------------------------------------------------------------------------------------------
// The firmware event log (TCG PC Client Platform Firmware Profile, crypto-agile format)
// ---------------------------------------------------------------------------------------------

const EV_NO_ACTION: u32 = 0x3;

struct Event {
    offset: usize,
    pcr: u32,
    kind: u32,
    digests: Vec<(u16, Vec<u8>)>,
    data: Vec<u8>,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        let end =
            end.ok_or_else(|| format!("truncated at offset {} (wanted {n} bytes)", self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

/// A parsed log: the algorithms its Spec ID event declares, and its events (the first, the
/// SHA-1-format Spec ID event itself, included).
struct EventLog {
    algorithms: Vec<u16>,
    events: Vec<Event>,
}

fn parse_eventlog(b: &[u8]) -> Result<EventLog, String> {
    const MAX_EVENT: usize = 1 << 20;
    let mut r = Reader { b, at: 0 };
    let offset = r.at;
    let pcr = r.u32()?;
    let kind = r.u32()?;
    let sha1 = r.take(20)?.to_vec();
    let size = r.u32()? as usize;
    if size > MAX_EVENT {
        return Err(format!("first event claims {size} bytes"));
    }
    let data = r.take(size)?.to_vec();
    // TCG_EfiSpecIDEventStruct: signature[16], platformClass, versions (4 bytes), then the
    // algorithms and their digest sizes.
    let mut spec = Reader { b: &data, at: 0 };
    if spec.take(16)? != b"Spec ID Event03\0" {
        return Err("the first event is not a Spec ID Event03 (not a crypto-agile log)".into());
    }
    spec.take(8)?;
    let mut sizes = BTreeMap::new();
    for _ in 0..spec.u32()?.min(16) {
        let alg = spec.u16()?;
        let size = spec.u16()?;
        sizes.insert(alg, usize::from(size));
    }
    let mut events = vec![Event {
        offset,
        pcr,
        kind,
        digests: vec![(0x0004, sha1)],
        data,
    }];
    while r.at < b.len() {
        let offset = r.at;
        let pcr = r.u32()?;
        let kind = r.u32()?;
        let count = r.u32()?;
        if count > 16 {
            return Err(format!("event at offset {offset} claims {count} digests"));
        }
        let mut digests = Vec::new();
        for _ in 0..count {
            let alg = r.u16()?;
            let size = *sizes.get(&alg).ok_or_else(|| {
                format!("event at offset {offset}: algorithm {alg:#06x} not in the Spec ID event")
            })?;
            digests.push((alg, r.take(size)?.to_vec()));
        }
        let size = r.u32()? as usize;
        if size > MAX_EVENT {
            return Err(format!("event at offset {offset} claims {size} bytes"));
        }
        let data = r.take(size)?.to_vec();
        events.push(Event {
            offset,
            pcr,
            kind,
            digests,
            data,
        });
    }
    Ok(EventLog {
        algorithms: sizes.keys().copied().collect(),
        events,
    })
}

fn alg_name(alg: u16) -> String {
    match alg {
        0x0004 => "sha1".into(),
        0x000B => "sha256".into(),
        0x000C => "sha384".into(),
        0x000D => "sha512".into(),
        other => format!("alg {other:#06x}"),
    }
}

fn event_type_name(kind: u32) -> String {
    let name = match kind {
        0x0000_0001 => "EV_POST_CODE",
        0x0000_0003 => "EV_NO_ACTION",
        0x0000_0004 => "EV_SEPARATOR",
        0x0000_0005 => "EV_ACTION",
        0x0000_0007 => "EV_S_CRTM_CONTENTS",
        0x0000_0008 => "EV_S_CRTM_VERSION",
        0x0000_000D => "EV_IPL",
        0x8000_0001 => "EV_EFI_VARIABLE_DRIVER_CONFIG",
        0x8000_0002 => "EV_EFI_VARIABLE_BOOT",
        0x8000_0003 => "EV_EFI_BOOT_SERVICES_APPLICATION",
        0x8000_0004 => "EV_EFI_BOOT_SERVICES_DRIVER",
        0x8000_0007 => "EV_EFI_ACTION",
        0x8000_0008 => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
        0x8000_0009 => "EV_EFI_HANDOFF_TABLES",
        0x8000_00E0 => "EV_EFI_VARIABLE_AUTHORITY",
        _ => return format!("{kind:#010x}"),
    };
    name.to_string()
}

fn describe_event(index: usize, e: &Event) -> String {
    let mut s = format!(
        "event {index} at offset {}: PCR {} {} ({} bytes of data)",
        e.offset,
        e.pcr,
        event_type_name(e.kind),
        e.data.len()
    );
    for (alg, d) in &e.digests {
        let _ = write!(s, "\n      {} {}", alg_name(*alg), hex::encode(d));
    }
    let shown = &e.data[..e.data.len().min(96)];
    let printable: String = shown
        .iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '.'
            }
        })
        .collect();
    let _ = write!(s, "\n      data {}… \"{printable}\"", hex::encode(shown));
    s
}

/// Recomputes the PCRs from the log: what the TPM's PCRs must be if the log is true.
fn replay(events: &[Event]) -> BTreeMap<(String, u32), String> {
    let mut pcrs: BTreeMap<(String, u32), Vec<u8>> = BTreeMap::new();
    for e in events.iter().skip(1).filter(|e| e.kind != EV_NO_ACTION) {
        for (alg, digest) in &e.digests {
            let (bank, size) = match alg {
                0x0004 => ("sha1", 20),
                0x000B => ("sha256", 32),
                0x000C => ("sha384", 48),
                _ => continue,
            };
            let old = pcrs
                .entry((bank.to_string(), e.pcr))
                .or_insert_with(|| vec![0; size]);
            let new = match bank {
                "sha1" => Sha1::new()
                    .chain_update(&*old)
                    .chain_update(digest)
                    .finalize()
                    .to_vec(),
                "sha256" => Sha256::new()
                    .chain_update(&*old)
                    .chain_update(digest)
                    .finalize()
                    .to_vec(),
                _ => Sha384::new()
                    .chain_update(&*old)
                    .chain_update(digest)
                    .finalize()
                    .to_vec(),
            };
            *old = new;
        }
    }
    pcrs.into_iter()
        .map(|(k, v)| (k, hex::encode_upper(v)))
        .collect()
}

const EV_EFI_PLATFORM_FIRMWARE_BLOB: u32 = 0x8000_0008;
const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;

/// The virtual firmware (`trustlaunch firmware boot`) on the same ESP and the same pristine
/// OVMF_VARS_4M.ms.fd must measure what real OVMF + shim + grub measured in the QEMU boot:
/// the same PCRs 1-9 and 14 in every bank, and the same events (type, PCR, digests, data)
/// except OVMF's own firmware volumes in PCR 0 and the in-memory address of loaded images.
fn compare_virtual_firmware(real: &Boot, esp: &Path, dir: &Path, problems: &mut Vec<String>) {
    fs::create_dir_all(dir).expect("virtual firmware dir");
    let (log_path, pcrs_path) = (dir.join("virtual.eventlog"), dir.join("virtual.pcrs"));
    let out = Command::new(env!("CARGO_BIN_EXE_trustlaunch"))
        .args(["firmware", "boot"])
        .arg(esp.join("esp"))
        .arg("--vars")
        .arg("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
        .arg("--eventlog-out")
        .arg(&log_path)
        .arg("--pcrs-out")
        .arg(&pcrs_path)
        .output()
        .expect("run trustlaunch firmware boot");
    if !out.status.success() {
        problems.push(format!(
            "trustlaunch firmware boot failed ({}):
{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        return;
    }
    let mut pcrs = BTreeMap::new();
    for line in fs::read_to_string(&pcrs_path).unwrap_or_default().lines() {
        if let [bank, index, value] = line.split_whitespace().collect::<Vec<_>>()[..] {
            if let Ok(i) = index.parse::<u32>() {
                pcrs.insert((bank.to_string(), i), value.to_uppercase());
            }
        }
    }
    for bank in BANKS {
        for pcr in PCRS.iter().filter(|p| **p != 0) {
            let key = (bank.to_string(), *pcr);
            let (r, v) = (real.pcrs.get(&key), pcrs.get(&key));
            if r != v {
                problems.push(format!(
                    "virtual firmware: {bank} PCR {pcr} is {v:?}, the real OVMF boot's is {r:?}"
                ));
            }
        }
    }
    let ours = match parse_eventlog(&fs::read(&log_path).unwrap_or_default()) {
        Ok(l) => l,
        Err(e) => {
            problems.push(format!(
                "virtual firmware: its event log does not parse: {e}"
            ));
            return;
        }
    };
    let theirs = match parse_eventlog(&real.eventlog) {
        Ok(l) => l,
        Err(e) => {
            problems.push(format!("the real boot's event log does not parse: {e}"));
            return;
        }
    };
    // The virtual firmware's log replays to its own PCRs (PCR 0 included).
    for ((bank, pcr), value) in replay(&ours.events) {
        if pcrs.get(&(bank.clone(), pcr)) != Some(&value) {
            problems.push(format!("virtual firmware: its log replays {bank} PCR {pcr} to {value}, the vTPM holds {:?}", pcrs.get(&(bank.clone(), pcr))));
        }
    }
    eprintln!(
        "virtual firmware: {} events and {} PCR values compared with the real boot's",
        ours.events.len(),
        pcrs.len()
    );
    if ours.events.len() != theirs.events.len() {
        problems.push(format!(
            "virtual firmware: {} events, the real boot {}",
            ours.events.len(),
            theirs.events.len()
        ));
    }
    for (i, (a, b)) in ours.events.iter().zip(&theirs.events).enumerate().skip(1) {
        if a.kind == EV_EFI_PLATFORM_FIRMWARE_BLOB && b.kind == a.kind && a.pcr == 0 {
            continue;
        }
        // EFI_IMAGE_LOAD_EVENT: ImageLocationInMemory (8 bytes) is where OVMF put the image.
        let data = |e: &Event| -> Vec<u8> {
            if e.kind == EV_EFI_BOOT_SERVICES_APPLICATION {
                e.data.get(8..).unwrap_or_default().to_vec()
            } else {
                e.data.clone()
            }
        };
        if a.pcr != b.pcr || a.kind != b.kind || a.digests != b.digests || data(a) != data(b) {
            problems.push(format!(
                "virtual firmware: event {i} differs from the real boot's
  ours: {}
  real: {}",
                describe_event(i, a),
                describe_event(i, b)
            ));
        }
    }
}

/// `trustlaunch attest policy from-image` for this ESP, predicted without booting it, must
/// accept what the real OVMF boot measured: its event log (attack checks, components,
/// Secure Boot state) and the PCRs its kernel read from the TPM.
fn predicted_policy_accepts(real: &Boot, esp: &Path, problems: &mut Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_trustlaunch"))
        .args(["attest", "policy", "from-image"])
        .arg(esp.join("esp"))
        .arg("--vars")
        .arg("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
        .output()
        .expect("run trustlaunch attest policy from-image");
    if !out.status.success() {
        problems.push(format!(
            "attest policy from-image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return;
    }
    let policy =
        match attest::policy::ReferencePolicy::from_json(&String::from_utf8_lossy(&out.stdout)) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("the predicted policy does not parse: {e}"));
                return;
            }
        };
    let mut pcrs = attest::PcrValues::new();
    for ((bank, pcr), value) in &real.pcrs {
        let alg = attest::HashAlg::ALL.into_iter().find(|a| a.name() == bank);
        if let (Some(alg), Ok(v), Ok(p)) = (alg, hex::decode(value), u8::try_from(*pcr)) {
            let _ = pcrs.insert(alg, p, v);
        }
    }
    let claims = eventlog::EventLog::parse(&real.eventlog)
        .map_err(|e| e.to_string())
        .and_then(|log| attest::appraisal::boot_claims(&log).map_err(|f| f.reason));
    let claims = match claims {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!(
                "the real boot's event log is refused by the verifier: {e}"
            ));
            return;
        }
    };
    let mut failures = Vec::new();
    policy.evaluate(&pcrs, Some(&claims), &mut failures);
    if failures.is_empty() {
        eprintln!("the policy predicted from the image accepts the real OVMF boot");
    } else {
        problems.push(format!(
            "the policy predicted from the image refuses the real OVMF boot: {failures:#?}"
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

/// Every way one boot falls short on its own (before comparing it with the other).
fn check_boot(b: &Boot, problems: &mut Vec<String>) {
    let name = b.tpm.name();
    if !b.complete {
        problems.push(format!(
            "{name}: the guest did not reach the end of /init\n{}",
            b.diagnostics()
        ));
        return;
    }
    let get = |k: &str| b.report.get(k).map(String::as_str).unwrap_or("(missing)");
    if get("SECUREBOOT") != "enabled" {
        problems.push(format!(
            "{name}: the kernel does not report Secure Boot enabled: SECUREBOOT {} \
             (efivar {}, kernel {})",
            get("SECUREBOOT"),
            get("SECUREBOOT-EFIVAR"),
            get("SECUREBOOT-KERNEL")
        ));
    }
    if get("TPM0") != "ok" {
        problems.push(format!(
            "{name}: /dev/tpm0 does not work: TPM0 {}",
            get("TPM0")
        ));
    }
    for bank in BANKS {
        for i in PCRS {
            match b.pcrs.get(&(bank.to_string(), i)).map(String::as_str) {
                None | Some("none") => {
                    problems.push(format!("{name}: PCR {bank} {i} not readable in the guest"))
                }
                Some(_) => {}
            }
        }
    }
    match parse_eventlog(&b.eventlog) {
        Err(e) => problems.push(format!(
            "{name}: the firmware event log ({} bytes) does not parse: {e}",
            b.eventlog.len()
        )),
        Ok(log) => {
            let replayed = replay(&log.events);
            for ((bank, i), value) in &b.pcrs {
                let zeros = "0".repeat(value.len());
                let expected = replayed.get(&(bank.clone(), *i)).unwrap_or(&zeros);
                if value != "none" && value != expected {
                    problems.push(format!(
                        "{name}: PCR {bank} {i} is {value}, but its event log replays to {expected}"
                    ));
                }
            }
        }
    }
}

fn compare(a: &Boot, b: &Boot, problems: &mut Vec<String>) {
    for bank in BANKS {
        for i in PCRS {
            let key = (bank.to_string(), i);
            let (x, y) = (a.pcrs.get(&key), b.pcrs.get(&key));
            if x != y {
                problems.push(format!(
                    "PCR {bank} {i} differs:\n    {:5} {}\n    {:5} {}",
                    a.tpm.name(),
                    x.map(String::as_str).unwrap_or("(missing)"),
                    b.tpm.name(),
                    y.map(String::as_str).unwrap_or("(missing)")
                ));
            }
        }
    }
    if a.eventlog == b.eventlog {
        return;
    }
    let mut s = format!(
        "the firmware event logs differ ({} bytes with {}, {} bytes with {})",
        a.eventlog.len(),
        a.tpm.name(),
        b.eventlog.len(),
        b.tpm.name()
    );
    match (parse_eventlog(&a.eventlog), parse_eventlog(&b.eventlog)) {
        (Ok(x), Ok(y)) => {
            let (x_algs, y_algs) = (&x.algorithms, &y.algorithms);
            let names = |algs: &[u16]| algs.iter().map(|a| alg_name(*a)).collect::<Vec<_>>();
            let _ = write!(
                s,
                "; {} and {} events; banks logged: {} {:?}, {} {:?}",
                x.events.len(),
                y.events.len(),
                a.tpm.name(),
                names(x_algs),
                b.tpm.name(),
                names(y_algs)
            );
            // Compare what both logs carry: with different banks, every event differs in its
            // digest list, and the interesting question is whether anything else does.
            let common = |e: &Event| -> Vec<(u16, Vec<u8>)> {
                e.digests
                    .iter()
                    .filter(|(alg, _)| x_algs.contains(alg) && y_algs.contains(alg))
                    .cloned()
                    .collect()
            };
            let mut shown = 0;
            for i in 1..x.events.len().max(y.events.len()) {
                let (ex, ey) = (x.events.get(i), y.events.get(i));
                let same = matches!((ex, ey), (Some(p), Some(q))
                    if p.pcr == q.pcr && p.kind == q.kind && common(p) == common(q) && p.data == q.data);
                if same {
                    continue;
                }
                shown += 1;
                if shown > 5 {
                    let _ = write!(s, "\n  … (further differences not shown)");
                    break;
                }
                for (e, boot) in [(ex, a), (ey, b)] {
                    let text = e.map_or("(no such event)".to_string(), |e| describe_event(i, e));
                    let _ = write!(s, "\n  {:5} {text}", boot.tpm.name());
                }
            }
            if shown == 0 {
                let _ = write!(
                    s,
                    "\n  Restricted to the banks both carry, every event is identical: the TPMs \
                     differ in their PCR banks (TPM2_GetCapability(TPM_CAP_PCRS)), not in what \
                     they measured."
                );
            }
        }
        (x, y) => {
            let first = a.eventlog.iter().zip(&b.eventlog).position(|(p, q)| p != q);
            let _ = write!(
                s,
                "; first differing byte at offset {first:?}; parse: {} {:?}, {} {:?}",
                a.tpm.name(),
                x.err(),
                b.tpm.name(),
                y.err()
            );
        }
    }
    problems.push(s);
}

#[test]
fn debian_secure_boot_chain_boots_with_our_vtpm_as_with_swtpm() {
    let esp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab-cache");
    let started = Instant::now();
    let status = run_with_timeout(
        Command::new("bash")
            .arg(repo().join("lab/build-esp.sh"))
            .arg(&esp)
            .stdin(Stdio::null()),
        BUILD_TIMEOUT,
        "lab/build-esp.sh",
    );
    assert!(
        status.success(),
        "lab/build-esp.sh {} failed",
        esp.display()
    );
    eprintln!(
        "ESP ready in {:.1} s: {}\n{}",
        started.elapsed().as_secs_f64(),
        esp.display(),
        fs::read_to_string(esp.join("versions.txt")).unwrap_or_default()
    );

    // A short path: the control sockets' names must fit in sun_path.
    let run = tempfile::Builder::new()
        .prefix("trustlaunch-qemu-boot-")
        .tempdir()
        .expect("temporary directory");
    // swtpm and ours behind tpm-crb, and ours behind tpm-tis (whose firmware driver probes
    // for a TPM 1.2 first): three boots, side by side.
    let (swtpm, ours, ours_tis) = std::thread::scope(|s| {
        let a = s.spawn(|| boot(Tpm::Swtpm, "tpm-crb", &esp, &run.path().join("swtpm")));
        let b = s.spawn(|| boot(Tpm::Ours, "tpm-crb", &esp, &run.path().join("ours")));
        let c = s.spawn(|| boot(Tpm::Ours, "tpm-tis", &esp, &run.path().join("ours-tis")));
        (
            a.join().expect("swtpm boot"),
            b.join().expect("our boot"),
            c.join().expect("our tpm-tis boot"),
        )
    });
    for b in [&swtpm, &ours, &ours_tis] {
        eprintln!(
            "{:5}: {:.1} s, complete {}, {} PCRs, event log {} bytes, report {:?}",
            b.tpm.name(),
            b.secs,
            b.complete,
            b.pcrs.len(),
            b.eventlog.len(),
            b.report
        );
    }

    let mut problems = Vec::new();
    check_boot(&swtpm, &mut problems);
    check_boot(&ours, &mut problems);
    check_boot(&ours_tis, &mut problems);
    if swtpm.complete && ours.complete {
        compare(&swtpm, &ours, &mut problems);
    }
    // The firmware measures the same chain whichever interface the TPM sits behind.
    if swtpm.complete && ours_tis.complete {
        let before = problems.len();
        compare(&swtpm, &ours_tis, &mut problems);
        for p in problems.iter_mut().skip(before) {
            *p = format!("(ours behind tpm-tis) {p}");
        }
    }
    if swtpm.complete {
        compare_virtual_firmware(&swtpm, &esp, &run.path().join("virtual"), &mut problems);
        predicted_policy_accepts(&swtpm, &esp, &mut problems);
    }
    // Every other line of the guest's report must agree too, e.g. that the firmware took the
    // platform hierarchy (PLATFORM-AUTH): a vTPM that let the guest keep platform authority
    // would be a security hole even with identical PCRs.
    for (label, other) in [("ours", &ours), ("ours behind tpm-tis", &ours_tis)] {
        for (k, v) in &swtpm.report {
            let o = other
                .report
                .get(k)
                .map(String::as_str)
                .unwrap_or("(missing)");
            if o != v {
                problems.push(format!(
                    "the guest's {k} differs: swtpm \"{v}\", {label} \"{o}\""
                ));
            }
        }
    }

    if problems.is_empty() {
        eprintln!(
            "identical: {} PCRs and a {}-byte event log",
            ours.pcrs.len(),
            ours.eventlog.len()
        );
        return;
    }
    let kept = run.keep();
    panic!(
        "{} problem(s); the run's files are kept in {}\n\n{}",
        problems.len(),
        kept.display(),
        problems.join("\n\n")
    );
}
