//! Acceptance tests for "vTPM 1/3": tpm2-tools, a real TPM 2.0 client (tpm2-tss underneath),
//! drives `trustlaunch vtpm socket` (swtpm socket protocol, TCTI `swtpm:`) and
//! `trustlaunch vtpm mssim` (Microsoft simulator protocol, TCTI `mssim:`).
//!
//! The very same steps also run against real swtpm (libtpms), the peer: that shows the
//! expectations below encode TPM 2.0 behaviour, not quirks of our own implementation.
//!
//! Independent truths used here: PCR and NV extend results are recomputed with the sha1/sha2
//! crates; `tpm2_hash` is compared with coreutils' `sha*sum`; NV names are recomputed from the
//! marshalled TPMS_NV_PUBLIC; clock deltas are compared with the wall clock; fresh PCR values
//! and response codes are the ones the TPM 2.0 Library and PC Client Platform TPM Profile define.
//!
//! Each test starts its own server on its own free loopback ports in its own temporary state
//! directory, so tests run in parallel; a Drop guard always kills the server.

use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

/// Longest any single tpm2-tools invocation may take.
mod ports;
mod server_process;
use ports::free_port_pair;
use server_process::ServerProcess;

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// Real swtpm (libtpms) over the swtpm socket protocol: the reference peer.
    SwtpmPeer,
    /// `trustlaunch vtpm socket`: our engine over the swtpm socket protocol.
    OursSwtpm,
    /// `trustlaunch vtpm mssim`: our engine over the Microsoft simulator protocol.
    OursMssim,
}

impl Backend {
    fn tcti(self, port: u16) -> String {
        match self {
            Backend::SwtpmPeer | Backend::OursSwtpm => {
                format!("swtpm:host=127.0.0.1,port={port}")
            }
            Backend::OursMssim => format!("mssim:host=127.0.0.1,port={port}"),
        }
    }

    /// The server command line, as an operator would type it. Port `port` carries TPM
    /// commands, `port + 1` the control (swtpm) or platform (mssim) channel.
    fn command(self, port: u16, state: &Path) -> Command {
        let server = format!("type=tcp,port={port}");
        let ctrl = format!("type=tcp,port={}", port + 1);
        let tpmstate = format!("dir={}", state.display());
        match self {
            Backend::SwtpmPeer | Backend::OursSwtpm => {
                let mut cmd = if self == Backend::SwtpmPeer {
                    Command::new("swtpm")
                } else {
                    let mut c = Command::new(env!("CARGO_BIN_EXE_trustlaunch"));
                    c.arg("vtpm");
                    c
                };
                cmd.args(["socket", "--tpm2", "--server", &server, "--ctrl", &ctrl]);
                cmd.args(["--tpmstate", &tpmstate, "--flags", "not-need-init"]);
                if self == Backend::OursSwtpm {
                    // A bare TPM, as the swtpm peer (no swtpm_setup): no EK certificates.
                    cmd.arg("--no-ek-cert");
                }
                cmd
            }
            Backend::OursMssim => {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_trustlaunch"));
                cmd.args(["vtpm", "mssim", "--port", &port.to_string()]);
                cmd.args(["--tpmstate", &tpmstate, "--no-ek-cert"]);
                cmd
            }
        }
    }
}

/// One server process (restartable on the same ports and state) and the client side.
struct Fixture {
    backend: Backend,
    port: u16,
    server: ServerProcess,
    tool_runs: AtomicU64,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// Start a server on fresh ports with an empty state directory.
    fn start(backend: Backend) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("trustlaunch-tpm2-tools-")
            .tempdir()
            .expect("create temporary directory");
        fs::create_dir(dir.path().join("state")).expect("create state directory");
        let mut fixture = Fixture {
            backend,
            port: 0,
            server: ServerProcess::default(),
            tool_runs: AtomicU64::new(0),
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

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The end of the server's output (all starts), for failure messages.
    fn server_log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(6000)));
            let _ = f.read_to_string(&mut text);
        }
        format!("--- server log ({:?}, tail) ---\n{text}", self.backend)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let cmd = self.backend.command(self.port, &self.state_dir());
        self.server.spawn(cmd, &self.log_path(), self.port)
    }

    /// Stop the server the way an operator's service manager does: SIGTERM, then wait.
    fn stop(&mut self) {
        if let Err(e) = self.server.stop() {
            panic!("{e}\n{}", self.server_log());
        }
    }

    /// Restart the server process on the same ports and state directory.
    fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("server did not restart: {e}\n{}", self.server_log());
        }
    }

    /// Write a data file into the test's directory and return its path.
    fn file(&self, name: &str, contents: &[u8]) -> String {
        let path = self.dir.path().join(name);
        fs::write(&path, contents).expect("write data file");
        path.display().to_string()
    }

    /// Run one tpm2-tools command against this server (with a timeout).
    fn run(&self, args: &[&str], input: Option<&[u8]>) -> Run {
        let n = self.tool_runs.fetch_add(1, Ordering::Relaxed);
        let out_path = self.dir.path().join(format!("tool-{n}.out"));
        let err_path = self.dir.path().join(format!("tool-{n}.err"));
        let stdin = match input {
            Some(data) => {
                let in_path = self.dir.path().join(format!("tool-{n}.in"));
                fs::write(&in_path, data).expect("write tool input");
                Stdio::from(File::open(&in_path).expect("open tool input"))
            }
            None => Stdio::null(),
        };
        let mut cmd = Command::new(args[0]);
        cmd.args(&args[1..])
            .env("TPM2TOOLS_TCTI", self.backend.tcti(self.port))
            .env_remove("TSS2_LOG")
            .stdin(stdin)
            .stdout(File::create(&out_path).expect("create tool stdout"))
            .stderr(File::create(&err_path).expect("create tool stderr"));
        let cmdline = args.join(" ");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e} (is tpm2-tools installed?)"));
        let status = match child.wait_timeout(TOOL_TIMEOUT) {
            Ok(Some(status)) => status,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{cmdline} did not finish within {TOOL_TIMEOUT:?}\n{}",
                    self.server_log()
                );
            }
        };
        let run = Run {
            cmdline,
            code: status.code(),
            stdout: fs::read(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        };
        let _ = fs::remove_file(&out_path);
        let _ = fs::remove_file(&err_path);
        run
    }

    fn explain(&self, run: &Run) -> String {
        format!(
            "[{:?}] $ {}\nexit: {:?}\nstdout:\n{}\nstderr:\n{}\n{}",
            self.backend,
            run.cmdline,
            run.code,
            String::from_utf8_lossy(&run.stdout),
            run.stderr,
            self.server_log()
        )
    }

    /// Run a command that must succeed; return its stdout.
    fn ok_bytes(&self, args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
        let run = self.run(args, input);
        assert_eq!(run.code, Some(0), "command failed\n{}", self.explain(&run));
        run.stdout
    }

    fn ok(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.ok_bytes(args, None)).into_owned()
    }

    fn ok_input(&self, args: &[&str], input: &[u8]) -> String {
        String::from_utf8_lossy(&self.ok_bytes(args, Some(input))).into_owned()
    }

    /// Run a command that the TPM must refuse with response code `rc` (as tpm2-tools prints
    /// it, e.g. "Esys_PCR_Reset(0x907)"); return the run.
    fn refused(&self, args: &[&str], rc: u32) -> Run {
        let run = self.run(args, None);
        let code = format!("(0x{rc:x})");
        assert!(
            run.code.is_some_and(|c| c != 0) && run.stderr.to_lowercase().contains(&code),
            "expected a failure with TPM response code 0x{rc:X}\n{}",
            self.explain(&run)
        );
        run
    }

    // --- Typed helpers on top of the tools -------------------------------------------------

    fn pcrread(&self, selection: &str) -> Pcrs {
        let out = self.ok(&["tpm2_pcrread", selection]);
        parse_pcrread(&out)
            .unwrap_or_else(|e| panic!("cannot parse tpm2_pcrread output: {e}\n{out}"))
    }

    /// Banks with at least one allocated PCR, from `tpm2_getcap pcrs`.
    fn active_banks(&self) -> BTreeMap<String, Vec<u32>> {
        let out = self.ok(&["tpm2_getcap", "pcrs"]);
        parse_getcap_pcrs(&out)
            .into_iter()
            .filter(|(_, pcrs)| !pcrs.is_empty())
            .collect()
    }

    fn readclock(&self) -> Clock {
        let out = self.ok(&["tpm2_readclock"]);
        let kv = parse_flat_kv(&out);
        let num = |k: &str| -> u64 {
            kv.get(k)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("tpm2_readclock output lacks numeric {k}:\n{out}"))
        };
        assert!(
            matches!(kv.get("safe").map(String::as_str), Some("yes" | "no")),
            "tpm2_readclock output lacks safe: yes|no\n{out}"
        );
        Clock {
            time: num("time"),
            clock: num("clock"),
            reset_count: num("reset_count"),
            restart_count: num("restart_count"),
        }
    }

    fn nv_indices(&self) -> BTreeSet<u32> {
        let out = self.ok(&["tpm2_getcap", "handles-nv-index"]);
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("- 0x"))
            .map(|h| u32::from_str_radix(h, 16).expect("hex NV handle"))
            .collect()
    }

    fn variable_property(&self, name: &str) -> u64 {
        let out = self.ok(&["tpm2_getcap", "properties-variable"]);
        let sections = parse_sections(&out);
        let inline = sections
            .get(name)
            .map(|s| s.inline.clone())
            .unwrap_or_else(|| panic!("properties-variable lacks {name}\n{out}"));
        parse_u64(&inline).unwrap_or_else(|| panic!("{name}: not a number: {inline:?}"))
    }
}

struct Run {
    cmdline: String,
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

#[derive(Debug, Clone, Copy)]
struct Clock {
    time: u64,
    clock: u64,
    reset_count: u64,
    restart_count: u64,
}

// ---------------------------------------------------------------------------------------------
// Output parsers and independent hashes
// ---------------------------------------------------------------------------------------------

/// bank -> PCR index -> value.
type Pcrs = BTreeMap<String, BTreeMap<u32, Vec<u8>>>;

/// Parse `tpm2_pcrread` text: "  sha256:" then "    16: 0xABCD…" lines.
fn parse_pcrread(text: &str) -> Result<Pcrs, String> {
    let mut banks = Pcrs::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(bank) = t.strip_suffix(':') {
            banks.entry(bank.to_string()).or_default();
            current = Some(bank.to_string());
            continue;
        }
        let (index, value) = t
            .split_once(':')
            .ok_or(format!("unexpected line {line:?}"))?;
        let index: u32 = index
            .trim()
            .parse()
            .map_err(|_| format!("bad index in {line:?}"))?;
        let value = value.trim();
        let value = value
            .strip_prefix("0x")
            .ok_or(format!("bad value in {line:?}"))?;
        let value = hex::decode(value).map_err(|e| format!("bad hex in {line:?}: {e}"))?;
        let bank = current
            .as_ref()
            .ok_or(format!("value before bank: {line:?}"))?;
        banks.entry(bank.clone()).or_default().insert(index, value);
    }
    Ok(banks)
}

/// Parse `tpm2_getcap pcrs`: "  - sha1: [ 0, 1, … ]".
fn parse_getcap_pcrs(text: &str) -> BTreeMap<String, Vec<u32>> {
    let mut banks = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("- ") else {
            continue;
        };
        let Some((bank, list)) = rest.split_once(':') else {
            continue;
        };
        let list = list.trim().trim_start_matches('[').trim_end_matches(']');
        let pcrs = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("PCR number in getcap pcrs"))
            .collect();
        banks.insert(bank.trim().to_string(), pcrs);
    }
    banks
}

/// A top-level YAML-ish key of tpm2-tools output: its inline value and its indented lines.
#[derive(Default, Clone, Debug)]
struct Section {
    inline: String,
    body: Vec<String>,
}

impl Section {
    /// Value of an indented "key: value" line.
    fn field(&self, key: &str) -> Option<String> {
        self.body.iter().find_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    }
}

fn parse_sections(text: &str) -> BTreeMap<String, Section> {
    let mut sections: BTreeMap<String, Section> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            let (key, inline) = line.split_once(':').unwrap_or((line, ""));
            let key = key.trim().to_string();
            sections.entry(key.clone()).or_default().inline = inline.trim().to_string();
            current = Some(key);
        } else if let Some(key) = &current {
            sections
                .entry(key.clone())
                .or_default()
                .body
                .push(line.to_string());
        }
    }
    sections
}

/// All "key: value" pairs at any indentation (for small outputs such as tpm2_readclock).
fn parse_flat_kv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Independent hash implementation (RustCrypto), by tpm2-tools bank name.
fn hash(alg: &str, data: &[u8]) -> Vec<u8> {
    match alg {
        "sha1" => sha1::Sha1::digest(data).to_vec(),
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        "sha384" => sha2::Sha384::digest(data).to_vec(),
        "sha512" => sha2::Sha512::digest(data).to_vec(),
        other => panic!("no independent implementation of {other}"),
    }
}

fn digest_len(alg: &str) -> usize {
    hash(alg, b"").len()
}

/// PCR / NV extend: new = H(old || data).
fn extend(alg: &str, old: &[u8], data: &[u8]) -> Vec<u8> {
    hash(alg, &[old, data].concat())
}

/// Deterministic, non-repetitive test data.
fn test_data(label: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = 0u32;
    while out.len() < len {
        out.extend(hash(
            "sha256",
            &[label.as_bytes(), &block.to_be_bytes()].concat(),
        ));
        block += 1;
    }
    out.truncate(len);
    out
}

/// PC Client Platform TPM Profile: after TPM2_Startup(CLEAR) without an H-CRTM event, PCRs
/// 0-16 and 23 are all zeros and PCRs 17-22 (the DRTM PCRs) are all ones.
fn fresh_pcr_value(alg: &str, index: u32) -> Vec<u8> {
    let fill = if (17..=22).contains(&index) {
        0xFF
    } else {
        0x00
    };
    vec![fill; digest_len(alg)]
}

fn assert_fresh_bank(pcrs: &Pcrs, bank: &str, what: &str) {
    let values = pcrs
        .get(bank)
        .unwrap_or_else(|| panic!("{what}: no {bank} bank in {pcrs:?}"));
    assert_eq!(
        values.keys().copied().collect::<Vec<_>>(),
        (0..24).collect::<Vec<_>>(),
        "{what}: {bank} must have PCRs 0..23"
    );
    for (&i, value) in values {
        assert_eq!(
            hex::encode(value),
            hex::encode(fresh_pcr_value(bank, i)),
            "{what}: {bank} PCR {i} after Startup(CLEAR)"
        );
    }
}

fn pcr<'a>(pcrs: &'a Pcrs, bank: &str, index: u32) -> &'a [u8] {
    pcrs.get(bank)
        .and_then(|b| b.get(&index))
        .unwrap_or_else(|| panic!("no {bank} PCR {index} in {pcrs:?}"))
}

/// Name of an NV index (TPM 2.0 Part 1, 16): nameAlg || H_nameAlg(TPMS_NV_PUBLIC), with
/// TPMS_NV_PUBLIC = nvIndex(4) || nameAlg(2) || attributes(4) || authPolicy(TPM2B) || dataSize(2).
fn nv_name_sha256(index: u32, attributes: u32, size: u16) -> String {
    let mut public = Vec::new();
    public.extend(index.to_be_bytes());
    public.extend(0x000Bu16.to_be_bytes()); // TPM_ALG_SHA256
    public.extend(attributes.to_be_bytes());
    public.extend(0u16.to_be_bytes()); // empty authPolicy
    public.extend(size.to_be_bytes());
    format!("000b{}", hex::encode(hash("sha256", &public)))
}

const TPMA_NV_OWNERWRITE: u32 = 1 << 1;
const TPMA_NV_AUTHWRITE: u32 = 1 << 2;
const TPM_NT_COUNTER: u32 = 1 << 4;
const TPM_NT_BITS: u32 = 2 << 4;
const TPM_NT_EXTEND: u32 = 4 << 4;
const TPMA_NV_OWNERREAD: u32 = 1 << 17;
const TPMA_NV_AUTHREAD: u32 = 1 << 18;
const TPMA_NV_WRITTEN: u32 = 1 << 29;
const OWNER_AND_AUTH_RW: u32 =
    TPMA_NV_OWNERWRITE | TPMA_NV_AUTHWRITE | TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD;
const NV_ATTRS: &str = "ownerread|ownerwrite|authread|authwrite";

// Response codes (TPM 2.0 Part 2, 6.6), as tpm2-tools reports them.
/// TPM_RC_LOCALITY (warning): command not allowed at the current locality.
const RC_LOCALITY: u32 = 0x907;
/// TPM_RC_AUTH_FAIL for session 1 (0x08E + TPM_RC_S + TPM_RC_1).
const RC_AUTH_FAIL_SESSION1: u32 = 0x98E;
/// TPM_RC_NV_UNINITIALIZED: index not yet written.
const RC_NV_UNINITIALIZED: u32 = 0x14A;
/// TPM_RC_HANDLE for handle 1 (0x08B + TPM_RC_H + TPM_RC_1).
const RC_HANDLE_1: u32 = 0x18B;
/// TPM_RC_VALUE for parameter 1 (0x084 + TPM_RC_P + TPM_RC_1).
const RC_VALUE_PARAM1: u32 = 0x1C4;

/// Commands these tests drive through tpm2-tools (as `tpm2_getcap commands` names them).
const EXERCISED_COMMANDS: &[&str] = &[
    "TPM2_CC_Startup",
    "TPM2_CC_Shutdown",
    "TPM2_CC_GetCapability",
    "TPM2_CC_GetRandom",
    "TPM2_CC_Hash",
    "TPM2_CC_HashSequenceStart",
    "TPM2_CC_SequenceUpdate",
    "TPM2_CC_SequenceComplete",
    "TPM2_CC_EventSequenceComplete",
    "TPM2_CC_ReadClock",
    "TPM2_CC_PCR_Read",
    "TPM2_CC_PCR_Extend",
    "TPM2_CC_PCR_Event",
    "TPM2_CC_PCR_Reset",
    "TPM2_CC_PCR_Allocate",
    "TPM2_CC_NV_DefineSpace",
    "TPM2_CC_NV_UndefineSpace",
    "TPM2_CC_NV_Write",
    "TPM2_CC_NV_Read",
    "TPM2_CC_NV_ReadPublic",
    "TPM2_CC_NV_Increment",
    "TPM2_CC_NV_Extend",
    "TPM2_CC_NV_SetBits",
    "TPM2_CC_StartAuthSession",
    "TPM2_CC_FlushContext",
];

const BANKS: [&str; 3] = ["sha1", "sha256", "sha384"];

// ---------------------------------------------------------------------------------------------
// The steps (each run against every backend)
// ---------------------------------------------------------------------------------------------

mod steps {
    use super::*;

    pub fn startup_and_getcap(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);

        let out = tpm.ok(&["tpm2_getcap", "properties-fixed"]);
        let fixed = parse_sections(&out);
        let prop = |name: &str| {
            fixed
                .get(name)
                .cloned()
                .unwrap_or_else(|| panic!("properties-fixed lacks {name}\n{out}"))
        };
        let raw = |name: &str| {
            prop(name)
                .field("raw")
                .and_then(|v| parse_u64(&v))
                .unwrap_or_else(|| panic!("{name} has no raw value\n{out}"))
        };
        let family = prop("TPM2_PT_FAMILY_INDICATOR");
        assert_eq!(raw("TPM2_PT_FAMILY_INDICATOR"), 0x322E_3000, "\"2.0\\0\"");
        assert_eq!(family.field("value").as_deref(), Some("\"2.0\""), "{out}");
        assert_eq!(raw("TPM2_PT_PCR_COUNT"), 24, "PC Client: 24 PCRs\n{out}");
        assert!(raw("TPM2_PT_PCR_SELECT_MIN") >= 3, "{out}");
        assert!(
            raw("TPM2_PT_MAX_DIGEST") >= 48,
            "sha384 is implemented\n{out}"
        );
        assert!(raw("TPM2_PT_INPUT_BUFFER") >= 1024, "{out}");
        assert!(raw("TPM2_PT_NV_BUFFER_MAX") >= 512, "{out}");
        assert!(raw("TPM2_PT_MAX_COMMAND_SIZE") >= 1024, "{out}");
        assert!(raw("TPM2_PT_MAX_RESPONSE_SIZE") >= 1024, "{out}");
        prop("TPM2_PT_REVISION");
        prop("TPM2_PT_MANUFACTURER");

        let out = tpm.ok(&["tpm2_getcap", "properties-variable"]);
        let var = parse_sections(&out);
        let startup_clear = var
            .get("TPM2_PT_STARTUP_CLEAR")
            .unwrap_or_else(|| panic!("no TPM2_PT_STARTUP_CLEAR\n{out}"));
        for flag in ["phEnable", "shEnable", "ehEnable", "phEnableNV"] {
            assert_eq!(
                startup_clear.field(flag).as_deref(),
                Some("1"),
                "{flag} is SET after Startup(CLEAR)\n{out}"
            );
        }
        let permanent = var
            .get("TPM2_PT_PERMANENT")
            .unwrap_or_else(|| panic!("no TPM2_PT_PERMANENT\n{out}"));
        assert_eq!(permanent.field("inLockout").as_deref(), Some("0"), "{out}");
        for name in ["TPM2_PT_HR_NV_INDEX", "TPM2_PT_LOCKOUT_COUNTER"] {
            let v = var.get(name).unwrap_or_else(|| panic!("no {name}\n{out}"));
            assert_eq!(parse_u64(&v.inline), Some(0), "{name} on a new TPM\n{out}");
        }

        let out = tpm.ok(&["tpm2_getcap", "algorithms"]);
        let algs = parse_sections(&out);
        for (alg, id) in [("sha1", 0x4), ("sha256", 0xB), ("sha384", 0xC)] {
            let a = algs
                .get(alg)
                .unwrap_or_else(|| panic!("algorithms lacks {alg}\n{out}"));
            assert_eq!(
                a.field("value").and_then(|v| parse_u64(&v)),
                Some(id),
                "{out}"
            );
            assert_eq!(
                a.field("hash").as_deref(),
                Some("1"),
                "{alg} is a hash\n{out}"
            );
        }

        let out = tpm.ok(&["tpm2_getcap", "commands"]);
        let commands = parse_sections(&out);
        let missing: Vec<_> = EXERCISED_COMMANDS
            .iter()
            .filter(|c| !commands.contains_key(**c))
            .collect();
        assert!(missing.is_empty(), "command list lacks {missing:?}\n{out}");
        assert_eq!(
            commands["TPM2_CC_PCR_Extend"]
                .field("commandIndex")
                .as_deref(),
            Some("0x182"),
            "{out}"
        );

        let banks = tpm.active_banks();
        for bank in BANKS {
            assert_eq!(
                banks.get(bank),
                Some(&(0..24).collect::<Vec<u32>>()),
                "{bank} bank with PCRs 0..23 in {banks:?}"
            );
        }

        let out = tpm.ok(&["tpm2_getcap", "handles-nv-index"]);
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let h = line
                .trim()
                .strip_prefix("- 0x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .unwrap_or_else(|| panic!("unexpected handles-nv-index line {line:?}"));
            assert_eq!(h >> 24, 0x01, "NV index handle range: {line}");
        }
    }

    pub fn pcrread_fresh(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        let pcrs = tpm.pcrread("sha1:all+sha256:all+sha384:all");
        for bank in BANKS {
            assert_fresh_bank(&pcrs, bank, "fresh TPM");
        }
        // One bank per call, and an explicit list, agree.
        let sha256 = tpm.pcrread("sha256:0,16,17,22,23");
        for i in [0, 16, 17, 22, 23] {
            assert_eq!(pcr(&sha256, "sha256", i), pcr(&pcrs, "sha256", i));
        }
    }

    pub fn pcr_extend(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        let before = tpm.pcrread("sha1:16,23+sha256:16,23+sha384:16,23");

        // One command, three banks.
        let digests: Vec<(&str, Vec<u8>)> = BANKS
            .iter()
            .map(|&b| (b, hash(b, format!("measurement for {b}").as_bytes())))
            .collect();
        let arg = format!(
            "16:{}",
            digests
                .iter()
                .map(|(b, d)| format!("{b}={}", hex::encode(d)))
                .collect::<Vec<_>>()
                .join(",")
        );
        tpm.ok(&["tpm2_pcrextend", &arg]);
        let after = tpm.pcrread("sha1:16,23+sha256:16,23+sha384:16,23");
        for (bank, d) in &digests {
            assert_eq!(
                hex::encode(pcr(&after, bank, 16)),
                hex::encode(extend(bank, pcr(&before, bank, 16), d)),
                "{bank} PCR 16 = H(old || digest)"
            );
            assert_eq!(
                pcr(&after, bank, 23),
                pcr(&before, bank, 23),
                "PCR 23 untouched"
            );
        }

        // One bank only: the other banks stay as they were.
        let d = hash("sha256", b"second sha256 measurement");
        tpm.ok(&["tpm2_pcrextend", &format!("16:sha256={}", hex::encode(&d))]);
        // Two PCRs in one invocation.
        let d23 = hash("sha384", b"pcr 23 measurement");
        let d16 = hash("sha1", b"pcr 16 sha1 again");
        tpm.ok(&[
            "tpm2_pcrextend",
            &format!("23:sha384={}", hex::encode(&d23)),
            &format!("16:sha1={}", hex::encode(&d16)),
        ]);
        let last = tpm.pcrread("sha1:16,23+sha256:16,23+sha384:16,23");
        let want = [
            ("sha1", 16, extend("sha1", pcr(&after, "sha1", 16), &d16)),
            (
                "sha256",
                16,
                extend("sha256", pcr(&after, "sha256", 16), &d),
            ),
            ("sha384", 16, pcr(&after, "sha384", 16).to_vec()),
            ("sha1", 23, pcr(&after, "sha1", 23).to_vec()),
            ("sha256", 23, pcr(&after, "sha256", 23).to_vec()),
            (
                "sha384",
                23,
                extend("sha384", pcr(&after, "sha384", 23), &d23),
            ),
        ];
        for (bank, i, value) in want {
            assert_eq!(
                hex::encode(pcr(&last, bank, i)),
                hex::encode(value),
                "{bank} PCR {i}"
            );
        }
    }

    /// Up to 1024 bytes, tpm2_pcrevent uses TPM2_PCR_Event.
    pub fn pcr_event(backend: Backend) {
        pcr_event_of_sizes(backend, &[23, 1024]);
    }

    /// Above 1024 bytes, tpm2_pcrevent uses an event sequence: HashSequenceStart(TPM_ALG_NULL),
    /// SequenceUpdate, EventSequenceComplete.
    pub fn pcr_event_sequence(backend: Backend) {
        pcr_event_of_sizes(backend, &[3000]);
    }

    fn pcr_event_of_sizes(backend: Backend, sizes: &[usize]) {
        let tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        for (i, &len) in sizes.iter().enumerate() {
            let data = test_data("pcr event", len);
            let path = tpm.file(&format!("event-{i}.bin"), &data);
            let before = tpm.pcrread("sha1:16+sha256:16+sha384:16");
            let out = tpm.ok(&["tpm2_pcrevent", "16", &path]);
            let reported = parse_flat_kv(&out);
            for bank in BANKS {
                let got = reported
                    .get(bank)
                    .unwrap_or_else(|| panic!("tpm2_pcrevent did not report {bank}\n{out}"));
                assert_eq!(
                    got,
                    &hex::encode(hash(bank, &data)),
                    "{bank} H(data), {len} bytes"
                );
            }
            let after = tpm.pcrread("sha1:16+sha256:16+sha384:16");
            for bank in BANKS {
                assert_eq!(
                    hex::encode(pcr(&after, bank, 16)),
                    hex::encode(extend(bank, pcr(&before, bank, 16), &hash(bank, &data))),
                    "{bank} PCR 16 = H(old || H(data)), {len} bytes"
                );
            }
        }
    }

    pub fn pcr_reset(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        for i in [0, 16, 23] {
            let d = hash("sha256", format!("to reset {i}").as_bytes());
            tpm.ok(&[
                "tpm2_pcrextend",
                &format!(
                    "{i}:sha1={},sha256={}",
                    hex::encode(&d[..20]),
                    hex::encode(&d)
                ),
            ]);
        }
        let extended = tpm.pcrread("sha1:0,16,23+sha256:0,16,23+sha384:0,16,23");
        for i in [0, 16, 23] {
            assert_ne!(pcr(&extended, "sha256", i), fresh_pcr_value("sha256", i));
        }

        // PC Client: PCR 16 (debug) and 23 (application) are resettable from locality 0.
        tpm.ok(&["tpm2_pcrreset", "16"]);
        tpm.ok(&["tpm2_pcrreset", "23"]);
        let reset = tpm.pcrread("sha1:0,16,23+sha256:0,16,23+sha384:0,16,23");
        for bank in BANKS {
            for i in [16, 23] {
                assert_eq!(
                    pcr(&reset, bank, i),
                    vec![0u8; digest_len(bank)],
                    "{bank} PCR {i} reset"
                );
            }
            assert_eq!(
                pcr(&reset, bank, 0),
                pcr(&extended, bank, 0),
                "{bank} PCR 0 untouched"
            );
        }

        // PCR 0 (SRTM) and 17 (DRTM) are not resettable from locality 0: TPM_RC_LOCALITY.
        tpm.refused(&["tpm2_pcrreset", "0"], RC_LOCALITY);
        tpm.refused(&["tpm2_pcrreset", "17"], RC_LOCALITY);
        let after = tpm.pcrread("sha1:0,17+sha256:0,17+sha384:0,17");
        for bank in BANKS {
            assert_eq!(
                pcr(&after, bank, 0),
                pcr(&extended, bank, 0),
                "refused reset kept {bank} PCR 0"
            );
            assert_eq!(
                pcr(&after, bank, 17),
                fresh_pcr_value(bank, 17),
                "refused reset kept {bank} PCR 17"
            );
        }
    }

    pub fn pcr_allocate_restart(backend: Backend) {
        let mut tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        let original = tpm.active_banks();
        assert!(original.contains_key("sha256"), "{original:?}");
        assert!(original.len() >= 3, "{original:?}");

        // sha256 only: name every other bank with ":none" (banks left out keep their allocation).
        let spec = original
            .keys()
            .map(|b| {
                if b == "sha256" {
                    "sha256:all".to_string()
                } else {
                    format!("{b}:none")
                }
            })
            .collect::<Vec<_>>()
            .join("+");
        tpm.ok(&["tpm2_pcrallocate", &spec]);
        // Part 3, PCR_Allocate: the new allocation takes effect after the next TPM Reset.
        assert_eq!(
            tpm.active_banks(),
            original,
            "TPM_CAP_PCRS reports the current allocation; PCR_Allocate changes it only at the next TPM Reset"
        );
        tpm.ok(&["tpm2_shutdown", "-c"]);

        tpm.restart();
        tpm.ok(&["tpm2_startup", "-c"]);
        let now = tpm.active_banks();
        assert_eq!(
            now.keys().collect::<Vec<_>>(),
            vec!["sha256"],
            "after `tpm2_pcrallocate {spec}` and a restart: {now:?}"
        );
        assert_fresh_bank(&tpm.pcrread("sha256:all"), "sha256", "sha256-only TPM");
        // A deallocated bank has no PCR values to read.
        let sha1 = tpm.pcrread("sha1:0,1,2");
        assert!(
            sha1.values().all(BTreeMap::is_empty),
            "sha1 values from a deallocated bank: {sha1:?}"
        );
        // Extending still works on the remaining bank.
        let d = hash("sha256", b"after reallocation");
        tpm.ok(&["tpm2_pcrextend", &format!("16:sha256={}", hex::encode(&d))]);
        let p = tpm.pcrread("sha256:16");
        assert_eq!(pcr(&p, "sha256", 16), extend("sha256", &[0; 32], &d));

        // Back to every bank the TPM had (sha1+sha256+sha384[+sha512]).
        let spec = original
            .keys()
            .map(|b| format!("{b}:all"))
            .collect::<Vec<_>>()
            .join("+");
        tpm.ok(&["tpm2_pcrallocate", &spec]);
        tpm.ok(&["tpm2_shutdown", "-c"]);
        tpm.restart();
        tpm.ok(&["tpm2_startup", "-c"]);
        assert_eq!(
            tpm.active_banks(),
            original,
            "after `tpm2_pcrallocate {spec}`"
        );
        let selection = original
            .keys()
            .map(|b| format!("{b}:all"))
            .collect::<Vec<_>>()
            .join("+");
        let pcrs = tpm.pcrread(&selection);
        for bank in original.keys() {
            assert_fresh_bank(&pcrs, bank, "re-allocated TPM");
        }
    }

    pub fn getrandom(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        let a = tpm.ok_bytes(&["tpm2_getrandom", "32"], None);
        let b = tpm.ok_bytes(&["tpm2_getrandom", "32"], None);
        assert_eq!(a.len(), 32, "{a:02x?}");
        assert_eq!(b.len(), 32, "{b:02x?}");
        assert_ne!(a, b, "two GetRandom(32) calls returned the same bytes");
        assert_ne!(a, vec![0u8; 32]);
        let h = tpm.ok(&["tpm2_getrandom", "--hex", "16"]);
        let h = h.trim();
        assert_eq!(h.len(), 32, "{h}");
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()), "{h}");
        let path = tpm.dir.path().join("random.bin").display().to_string();
        tpm.ok(&["tpm2_getrandom", "-o", &path, "20"]);
        let c = fs::read(&path).expect("read random output file");
        assert_eq!(c.len(), 20);
    }

    pub fn hash_vs_coreutils(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        // Above 1024 bytes tpm2_hash switches from TPM2_Hash to a hash sequence.
        for len in [0usize, 3, 1024, 1025, 5000] {
            let data = test_data("tpm2_hash", len);
            let path = tpm.file(&format!("hash-{len}.bin"), &data);
            for alg in BANKS {
                let got = tpm.ok(&["tpm2_hash", "-g", alg, "--hex", &path]);
                let sum = Command::new(format!("{alg}sum"))
                    .arg(&path)
                    .output()
                    .expect("run coreutils sha*sum");
                assert!(sum.status.success());
                let sum = String::from_utf8_lossy(&sum.stdout);
                let want = sum.split_whitespace().next().unwrap_or_default();
                assert_eq!(
                    got.trim(),
                    want,
                    "tpm2_hash -g {alg} of {len} bytes vs {alg}sum"
                );
                assert_eq!(
                    want,
                    hex::encode(hash(alg, &data)),
                    "coreutils vs RustCrypto"
                );
            }
        }
    }

    pub fn readclock(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        let t0 = Instant::now();
        let a = tpm.readclock();
        let t1 = Instant::now();
        std::thread::sleep(Duration::from_millis(300));
        let t2 = Instant::now();
        let b = tpm.readclock();
        let t3 = Instant::now();
        let (min, max) = ((t2 - t1).as_millis() as u64, (t3 - t0).as_millis() as u64);
        let dt = b.time.saturating_sub(a.time);
        let dc = b.clock.saturating_sub(a.clock);
        assert!(
            b.clock > a.clock && b.time > a.time,
            "clock advances: {a:?} then {b:?}"
        );
        // Clock and time count milliseconds (Part 2, TPMS_CLOCK_INFO / TPMS_TIME_INFO).
        for (what, d) in [("time", dt), ("clock", dc)] {
            assert!(
                d >= min * 8 / 10 && d <= max * 12 / 10 + 50,
                "{what} advanced {d} ms while the wall clock advanced {min}..{max} ms"
            );
        }
        assert_eq!(a.reset_count, b.reset_count);
        assert_eq!(a.restart_count, b.restart_count);
        assert_eq!(a.restart_count, 0, "restartCount after Startup(CLEAR)");
    }

    /// Define the ordinary test index 0x01500016 (32 bytes, owner and index auth, password
    /// "pass123") and write "trustlaunch NV data" into it with the index password.
    fn define_ordinary(tpm: &Fixture) -> &'static str {
        let idx_s = "0x1500016";
        let out = tpm.ok(&[
            "tpm2_nvdefine",
            idx_s,
            "-C",
            "o",
            "-s",
            "32",
            "-a",
            NV_ATTRS,
            "-p",
            "pass123",
        ]);
        assert!(out.contains(&format!("nv-index: {idx_s}")), "{out}");
        tpm.ok_input(
            &[
                "tpm2_nvwrite",
                idx_s,
                "-C",
                idx_s,
                "-P",
                "pass123",
                "-i",
                "-",
            ],
            NV_DATA,
        );
        idx_s
    }

    const NV_DATA: &[u8] = b"trustlaunch NV data";

    pub fn nv_ordinary(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        let idx = 0x0150_0016u32;
        let idx_s = format!("0x{idx:x}");
        tpm.ok(&[
            "tpm2_nvdefine",
            &idx_s,
            "-C",
            "o",
            "-s",
            "32",
            "-a",
            NV_ATTRS,
            "-p",
            "pass123",
        ]);
        let out = tpm.ok(&["tpm2_nvreadpublic", &idx_s]);
        let public = parse_sections(&out);
        let p = &public[&idx_s];
        assert_eq!(
            p.field("name"),
            Some(nv_name_sha256(idx, OWNER_AND_AUTH_RW, 32)),
            "name of the unwritten index\n{out}"
        );
        assert_eq!(p.field("size").as_deref(), Some("32"));
        tpm.refused(
            &[
                "tpm2_nvread",
                &idx_s,
                "-C",
                &idx_s,
                "-P",
                "pass123",
                "-s",
                "4",
            ],
            RC_NV_UNINITIALIZED,
        );

        tpm.ok_input(
            &[
                "tpm2_nvwrite",
                &idx_s,
                "-C",
                &idx_s,
                "-P",
                "pass123",
                "-i",
                "-",
            ],
            NV_DATA,
        );
        let len = NV_DATA.len().to_string();
        let read = tpm.ok_bytes(
            &[
                "tpm2_nvread",
                &idx_s,
                "-C",
                &idx_s,
                "-P",
                "pass123",
                "-s",
                &len,
            ],
            None,
        );
        assert_eq!(read, NV_DATA, "NV round trip (index auth)");
        let read = tpm.ok_bytes(
            &[
                "tpm2_nvread",
                &idx_s,
                "-C",
                "o",
                "-s",
                "5",
                "--offset",
                "11",
            ],
            None,
        );
        assert_eq!(read, &NV_DATA[11..16], "NV read at an offset (owner auth)");
        // Overwrite part of it at an offset.
        tpm.ok_input(
            &[
                "tpm2_nvwrite",
                &idx_s,
                "-C",
                "o",
                "-i",
                "-",
                "--offset",
                "12",
            ],
            b"nv",
        );
        let read = tpm.ok_bytes(&["tpm2_nvread", &idx_s, "-C", "o", "-s", &len], None);
        assert_eq!(read, b"trustlaunch nv data");

        let out = tpm.ok(&["tpm2_nvreadpublic", &idx_s]);
        let public = parse_sections(&out);
        let p = &public[&idx_s];
        let attrs = OWNER_AND_AUTH_RW | TPMA_NV_WRITTEN;
        let value = p
            .body
            .iter()
            .skip_while(|l| !l.contains("attributes:"))
            .nth(2);
        assert_eq!(
            value.map(|l| l.trim().to_string()),
            Some(format!("value: 0x{attrs:X}")),
            "{out}"
        );
        assert!(
            out.contains("friendly: ownerwrite|authwrite|ownerread|authread|written"),
            "{out}"
        );
        assert_eq!(
            p.field("name"),
            Some(nv_name_sha256(idx, attrs, 32)),
            "name of the written index\n{out}"
        );
        assert_eq!(p.field("size").as_deref(), Some("32"));
    }

    pub fn nv_wrong_password(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        let idx_s = define_ordinary(&tpm);
        // TPM_RC_AUTH_FAIL on session 1; tpm2-tools exits with its auth-error code, 3.
        let run = tpm.refused(
            &["tpm2_nvread", idx_s, "-C", idx_s, "-P", "wrong", "-s", "4"],
            RC_AUTH_FAIL_SESSION1,
        );
        assert_eq!(
            run.code,
            Some(3),
            "tpm2-tools exit code for an auth failure"
        );
        let junk = tpm.file("junk.bin", b"junk");
        tpm.refused(
            &[
                "tpm2_nvwrite",
                idx_s,
                "-C",
                idx_s,
                "-P",
                "wrong",
                "-i",
                &junk,
            ],
            RC_AUTH_FAIL_SESSION1,
        );
        let len = NV_DATA.len().to_string();
        let read = tpm.ok_bytes(
            &[
                "tpm2_nvread",
                idx_s,
                "-C",
                idx_s,
                "-P",
                "pass123",
                "-s",
                &len,
            ],
            None,
        );
        assert_eq!(read, NV_DATA, "the refused write changed nothing");
    }

    pub fn nv_wrong_password_counts_for_da(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        let idx_s = define_ordinary(&tpm);
        assert_eq!(tpm.variable_property("TPM2_PT_LOCKOUT_COUNTER"), 0);
        tpm.refused(
            &["tpm2_nvread", idx_s, "-C", idx_s, "-P", "wrong", "-s", "4"],
            RC_AUTH_FAIL_SESSION1,
        );
        assert_eq!(
            tpm.variable_property("TPM2_PT_LOCKOUT_COUNTER"),
            1,
            "an auth failure on an index without TPMA_NV_NO_DA counts in the lockout \
             counter (Part 1, dictionary attack protection)"
        );
        let junk = tpm.file("junk.bin", b"junk");
        tpm.refused(
            &[
                "tpm2_nvwrite",
                idx_s,
                "-C",
                idx_s,
                "-P",
                "wrong",
                "-i",
                &junk,
            ],
            RC_AUTH_FAIL_SESSION1,
        );
        assert_eq!(
            tpm.variable_property("TPM2_PT_LOCKOUT_COUNTER"),
            2,
            "a second auth failure counts again"
        );
    }

    pub fn nv_counter(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        let ctr = "0x1500017";
        let attrs = format!("nt=counter|{NV_ATTRS}");
        tpm.ok(&["tpm2_nvdefine", ctr, "-C", "o", "-s", "8", "-a", &attrs]);
        tpm.refused(
            &["tpm2_nvread", ctr, "-C", "o", "-s", "8"],
            RC_NV_UNINITIALIZED,
        );
        assert_eq!(tpm.variable_property("TPM2_PT_NV_COUNTERS"), 1);
        let counter = |tpm: &Fixture| -> u64 {
            let b = tpm.ok_bytes(&["tpm2_nvread", ctr, "-C", "o", "-s", "8"], None);
            u64::from_be_bytes(b.as_slice().try_into().expect("8-byte counter"))
        };
        tpm.ok(&["tpm2_nvincrement", ctr, "-C", "o"]);
        // First increment starts from the highest value any counter had: 0 on a new TPM.
        assert_eq!(counter(&tpm), 1);
        tpm.ok(&["tpm2_nvincrement", ctr, "-C", "o"]);
        tpm.ok(&["tpm2_nvincrement", ctr, "-C", "o"]);
        assert_eq!(counter(&tpm), 3);
        let public = parse_sections(&tpm.ok(&["tpm2_nvreadpublic", ctr]));
        assert_eq!(
            public[ctr].field("name"),
            Some(nv_name_sha256(
                0x0150_0017,
                OWNER_AND_AUTH_RW | TPM_NT_COUNTER | TPMA_NV_WRITTEN,
                8
            ))
        );
    }

    pub fn nv_extend(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        let attrs = format!("nt=extend|{NV_ATTRS}");
        for (alg, handle) in [("sha256", 0x0150_0018u32), ("sha384", 0x0150_001A)] {
            let h = format!("0x{handle:x}");
            tpm.ok(&["tpm2_nvdefine", &h, "-C", "o", "-g", alg, "-a", &attrs]);
            let n = digest_len(alg);
            let mut want = vec![0u8; n];
            for chunk in [&b"abc"[..], b"second extend of the NV index"] {
                tpm.ok_input(&["tpm2_nvextend", "-C", "o", "-i", "-", &h], chunk);
                want = extend(alg, &want, chunk);
                let got = tpm.ok_bytes(&["tpm2_nvread", &h, "-C", "o", "-s", &n.to_string()], None);
                assert_eq!(
                    hex::encode(got),
                    hex::encode(&want),
                    "{alg} extend index = H(old || data)"
                );
            }
        }
        let public = parse_sections(&tpm.ok(&["tpm2_nvreadpublic", "0x1500018"]));
        assert_eq!(
            public["0x1500018"].field("name"),
            Some(nv_name_sha256(
                0x0150_0018,
                OWNER_AND_AUTH_RW | TPM_NT_EXTEND | TPMA_NV_WRITTEN,
                32
            ))
        );
    }

    pub fn nv_bits(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        let bits = "0x1500019";
        let attrs = format!("nt=bits|{NV_ATTRS}");
        tpm.ok(&["tpm2_nvdefine", bits, "-C", "o", "-a", &attrs]);
        let mut want = 0u64;
        for b in [0x5u64, 0x100, 0x4, 0x8000_0000_0000_0000] {
            tpm.ok(&["tpm2_nvsetbits", "-C", "o", "-i", &format!("0x{b:x}"), bits]);
            want |= b;
            let got = tpm.ok_bytes(&["tpm2_nvread", bits, "-C", "o", "-s", "8"], None);
            assert_eq!(
                u64::from_be_bytes(got.as_slice().try_into().expect("8 bytes")),
                want,
                "setbits ORs 0x{b:x}"
            );
        }
        let public = parse_sections(&tpm.ok(&["tpm2_nvreadpublic", bits]));
        assert_eq!(
            public[bits].field("name"),
            Some(nv_name_sha256(
                0x0150_0019,
                OWNER_AND_AUTH_RW | TPM_NT_BITS | TPMA_NV_WRITTEN,
                8
            ))
        );
    }

    pub fn nv_listing_and_undefine(backend: Backend) {
        let tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        let before = tpm.nv_indices();
        let hr_before = tpm.variable_property("TPM2_PT_HR_NV_INDEX");
        assert_eq!(hr_before, before.len() as u64);
        let counters_before = tpm.variable_property("TPM2_PT_NV_COUNTERS");

        let idx_s = define_ordinary(&tpm);
        for (h, kind) in [
            ("0x1500017", "counter"),
            ("0x1500018", "extend"),
            ("0x1500019", "bits"),
            ("0x150001a", "counter"),
        ] {
            let attrs = format!("nt={kind}|{NV_ATTRS}");
            let mut args = vec!["tpm2_nvdefine", h, "-C", "o", "-a", &attrs];
            if kind == "counter" {
                args.extend(["-s", "8"]);
            }
            tpm.ok(&args);
        }
        let mine: BTreeSet<u32> = [
            0x0150_0016,
            0x0150_0017,
            0x0150_0018,
            0x0150_0019,
            0x0150_001A,
        ]
        .into();
        let listed = tpm.nv_indices();
        assert_eq!(listed, before.union(&mine).copied().collect());
        assert_eq!(
            tpm.variable_property("TPM2_PT_HR_NV_INDEX"),
            listed.len() as u64
        );
        assert_eq!(
            tpm.variable_property("TPM2_PT_NV_COUNTERS"),
            counters_before + 2
        );
        for h in &mine {
            tpm.ok(&["tpm2_nvundefine", &format!("0x{h:x}"), "-C", "o"]);
        }
        assert_eq!(tpm.nv_indices(), before);
        assert_eq!(tpm.variable_property("TPM2_PT_HR_NV_INDEX"), hr_before);
        assert_eq!(
            tpm.variable_property("TPM2_PT_NV_COUNTERS"),
            counters_before
        );
        // (tpm2_nvreadpublic of a missing index crashes in tpm2-tools 5.4: use tpm2_nvread.)
        tpm.refused(&["tpm2_nvread", idx_s, "-C", "o", "-s", "4"], RC_HANDLE_1);
    }

    pub fn shutdown_state_restart(backend: Backend) {
        let mut tpm = Fixture::start(backend);
        tpm.ok(&["tpm2_startup", "-c"]);
        let c0 = tpm.readclock();

        for i in 0..=16u32 {
            let arg = BANKS
                .iter()
                .map(|b| {
                    format!(
                        "{b}={}",
                        hex::encode(hash(b, format!("boot stage {i}").as_bytes()))
                    )
                })
                .collect::<Vec<_>>()
                .join(",");
            tpm.ok(&["tpm2_pcrextend", &format!("{i}:{arg}")]);
        }
        let all = "sha1:all+sha256:all+sha384:all";
        let before = tpm.pcrread(all);
        for bank in BANKS {
            for i in 0..=16 {
                let d = hash(bank, format!("boot stage {i}").as_bytes());
                assert_eq!(
                    pcr(&before, bank, i),
                    extend(bank, &fresh_pcr_value(bank, i), &d)
                );
            }
        }
        let idx = "0x1500020";
        tpm.ok(&[
            "tpm2_nvdefine",
            idx,
            "-C",
            "o",
            "-s",
            "16",
            "-a",
            NV_ATTRS,
            "-p",
            "nvpass",
        ]);
        tpm.ok_input(
            &["tpm2_nvwrite", idx, "-C", idx, "-P", "nvpass", "-i", "-"],
            b"kept over reboot",
        );
        let ctr = "0x1500021";
        tpm.ok(&[
            "tpm2_nvdefine",
            ctr,
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            &format!("nt=counter|{NV_ATTRS}"),
        ]);
        for _ in 0..5 {
            tpm.ok(&["tpm2_nvincrement", ctr, "-C", "o"]);
        }
        let read_nv = |tpm: &Fixture| {
            (
                tpm.ok_bytes(
                    &["tpm2_nvread", idx, "-C", idx, "-P", "nvpass", "-s", "16"],
                    None,
                ),
                tpm.ok_bytes(&["tpm2_nvread", ctr, "-C", "o", "-s", "8"], None),
            )
        };
        let nv_before = read_nv(&tpm);
        assert_eq!(nv_before.0, b"kept over reboot");
        assert_eq!(nv_before.1, 5u64.to_be_bytes());

        // Shutdown(STATE), process restart, Startup(STATE): a TPM Resume.
        tpm.ok(&["tpm2_shutdown"]);
        tpm.restart();
        tpm.ok(&["tpm2_startup"]);
        let after = tpm.pcrread(all);
        for bank in BANKS {
            for i in 0..16 {
                assert_eq!(
                    hex::encode(pcr(&after, bank, i)),
                    hex::encode(pcr(&before, bank, i)),
                    "{bank} PCR {i} survives Shutdown(STATE)/Startup(STATE)"
                );
            }
            // PC Client PTP: PCR 16 (debug) is not preserved over a TPM Resume.
            assert_eq!(
                pcr(&after, bank, 16),
                fresh_pcr_value(bank, 16),
                "{bank} PCR 16"
            );
        }
        assert_eq!(read_nv(&tpm), nv_before, "NV contents after restart");
        let c1 = tpm.readclock();
        assert_eq!(
            c1.reset_count, c0.reset_count,
            "a Resume is not a Reset: {c0:?} {c1:?}"
        );
        assert_eq!(
            c1.restart_count,
            c0.restart_count + 1,
            "a Resume counts a restart"
        );

        // Shutdown(CLEAR) leaves no state to resume: Startup(STATE) is refused, CLEAR is a Reset.
        tpm.ok(&["tpm2_shutdown", "-c"]);
        tpm.restart();
        tpm.refused(&["tpm2_startup"], RC_VALUE_PARAM1);
        tpm.ok(&["tpm2_startup", "-c"]);
        let reset = tpm.pcrread(all);
        for bank in BANKS {
            assert_fresh_bank(&reset, bank, "after Shutdown(CLEAR) and Startup(CLEAR)");
        }
        assert_eq!(read_nv(&tpm), nv_before, "NV contents after a TPM Reset");
        let c2 = tpm.readclock();
        assert_eq!(
            c2.reset_count,
            c0.reset_count + 1,
            "Startup(CLEAR) counts a reset"
        );
        assert_eq!(c2.restart_count, 0, "Startup(CLEAR) zeroes restartCount");
    }
}

// ---------------------------------------------------------------------------------------------
// The suites
// ---------------------------------------------------------------------------------------------

macro_rules! suite {
    ($name:ident, $backend:expr) => {
        mod $name {
            use super::{steps, Backend};
            #[test]
            fn startup_and_getcap() {
                steps::startup_and_getcap($backend)
            }
            #[test]
            fn pcrread_fresh() {
                steps::pcrread_fresh($backend)
            }
            #[test]
            fn pcr_extend() {
                steps::pcr_extend($backend)
            }
            #[test]
            fn pcr_event() {
                steps::pcr_event($backend)
            }
            #[test]
            fn pcr_event_sequence() {
                steps::pcr_event_sequence($backend)
            }
            #[test]
            fn pcr_reset() {
                steps::pcr_reset($backend)
            }
            #[test]
            fn pcr_allocate_restart() {
                steps::pcr_allocate_restart($backend)
            }
            #[test]
            fn getrandom() {
                steps::getrandom($backend)
            }
            #[test]
            fn hash_vs_coreutils() {
                steps::hash_vs_coreutils($backend)
            }
            #[test]
            fn readclock() {
                steps::readclock($backend)
            }
            #[test]
            fn nv_ordinary() {
                steps::nv_ordinary($backend)
            }
            #[test]
            fn nv_wrong_password() {
                steps::nv_wrong_password($backend)
            }
            #[test]
            fn nv_wrong_password_counts_for_da() {
                steps::nv_wrong_password_counts_for_da($backend)
            }
            #[test]
            fn nv_counter() {
                steps::nv_counter($backend)
            }
            #[test]
            fn nv_extend() {
                steps::nv_extend($backend)
            }
            #[test]
            fn nv_bits() {
                steps::nv_bits($backend)
            }
            #[test]
            fn nv_listing_and_undefine() {
                steps::nv_listing_and_undefine($backend)
            }
            #[test]
            fn shutdown_state_restart() {
                steps::shutdown_state_restart($backend)
            }
        }
    };
}

// The peer: real swtpm, proving the expectations are TPM truth.
suite!(swtpm_peer, Backend::SwtpmPeer);
// Ours, over the swtpm socket protocol.
suite!(ours_swtpm_protocol, Backend::OursSwtpm);
// Ours, over the Microsoft simulator protocol.
suite!(ours_mssim_protocol, Backend::OursMssim);
