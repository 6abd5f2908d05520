//! `trustlaunch bench vtpm`: throughput of our vTPM against swtpm.
//!
//! One run starts both servers (swtpm and `trustlaunch vtpm socket`, both over the swtpm socket
//! protocol with `--flags not-need-init`, each in a temporary state directory) and drives each
//! with the same client workload through tpm2-tss's swtpm TCTI: the same raw TPM 2.0 command
//! bytes, one client per server, one command in flight at a time. Rounds alternate which
//! server goes first; the figures are medians over rounds. tpm2-tss's swtpm TCTI connects anew
//! for each command (as strace shows), so every op includes a TCP connection setup.
//!
//! tpm2-tss is loaded at run time (`libtss2-tctildr.so.0`), so building this binary does not
//! need libtss2-dev; only running the benchmark needs the library (Debian: libtss2-tctildr0).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// vTPM throughput against swtpm through tpm2-tss's swtpm TCTI.
    Vtpm(VtpmBench),
    /// Key operations against swtpm: ECC P-256 quotes, RSA-2048 primary derivation (first and
    /// repeated), through the same tpm2-tss client.
    Keys(super::bench_keys::KeysBench),
    /// vTPM density against swtpm: resident memory per idle instance of one `vtpm host`, and
    /// instance create to first answer against an swtpm process start (back to back, and
    /// each after 10 ms at rest).
    Density(super::bench_density::DensityBench),
    /// Whole-process `trustlaunch eventlog replay LOG` against `tpm2_eventlog LOG`.
    Eventlog(super::bench_eventlog::EventlogBench),
    /// Secure Boot: one `trustlaunch secureboot verify` process against one `sbverify --cert`
    /// process on the same signed image.
    Secureboot(super::bench_secureboot::SecurebootBench),
    /// A virtual-firmware boot of a node image into an in-process vTPM, against the hashing
    /// floor.
    Firmware(super::bench_boot::FirmwareBench),
    /// Full attestations per second through the verifier, against the ECDSA-verify floor.
    Attest(super::bench_boot::AttestBench),
    /// A node pool created to all-attested with the embedded backend, and a rolling reimage
    /// with --max-surge 10%, through the CLI and server.
    Pool(super::bench_pool::PoolBench),
}

#[derive(Debug, Args)]
pub struct VtpmBench {
    /// Commands per operation, per server, per round.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
    ops: u32,
    /// Rounds; the figures are medians over rounds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// The swtpm executable to compare against.
    #[arg(long, default_value = "swtpm")]
    swtpm: PathBuf,
    /// The tpm2-tss TCTI loader library to load.
    #[arg(long, default_value = "libtss2-tctildr.so.0", hide = true)]
    tctildr: String,
    /// Harness check: run this swtpm-compatible program (with swtpm's arguments) in place of
    /// `trustlaunch vtpm socket`; `--as-ours swtpm` must give ratios near 1.0.
    #[arg(long, hide = true)]
    as_ours: Option<PathBuf>,
}

pub fn run(cmd: BenchCommand) -> Result<ExitCode> {
    match cmd {
        BenchCommand::Vtpm(args) => bench_vtpm(&args),
        BenchCommand::Keys(args) => super::bench_keys::bench_keys(&args),
        BenchCommand::Density(args) => super::bench_density::bench_density(&args),
        BenchCommand::Eventlog(args) => super::bench_eventlog::bench_eventlog(&args),
        BenchCommand::Secureboot(args) => super::bench_secureboot::bench_secureboot(&args),
        BenchCommand::Firmware(args) => super::bench_boot::bench_firmware(&args),
        BenchCommand::Attest(args) => super::bench_boot::bench_attest(&args),
        BenchCommand::Pool(args) => super::bench_pool::bench_pool(&args),
    }
}

/// The target: ours at least this many times swtpm's throughput on each operation.
const TARGET_RATIO: f64 = 1.5;
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest response any benchmarked command produces is far below this.
pub(super) const RESPONSE_BUFFER: usize = 4096;

fn bench_vtpm(args: &VtpmBench) -> Result<ExitCode> {
    let ours_label = "trustlaunch";
    let (ours_program, ours_prefix): (PathBuf, Vec<&str>) = match &args.as_ours {
        Some(program) => (program.clone(), vec![]),
        None => (
            std::env::current_exe().context("locating the trustlaunch executable")?,
            vec!["vtpm"],
        ),
    };

    let swtpm_version = version_line(&args.swtpm);
    let mut peer = Server::start("swtpm", &args.swtpm, &[])?;
    let mut ours = Server::start(ours_label, &ours_program, &ours_prefix)?;

    // The floor: a server that does no TPM work at all (canned answers), in this process. No
    // TPM behind this client can be faster than it: the TCTI's per-command connection costs
    // are all that is left.
    let floor = null_server::NullServer::start()?;
    let ports = [peer.port, ours.port, floor.port];
    let labels = [peer.label, ours.label, "floor"];
    let mut clients = Vec::new();
    for (port, label) in ports.iter().zip(labels) {
        let conf = format!("swtpm:host=127.0.0.1,port={port}");
        let mut tcti = tcti::Tcti::connect(&args.tctildr, &conf)
            .with_context(|| format!("connecting to {label} through tpm2-tss"))?;
        startup(&mut tcti).with_context(|| format!("TPM2_Startup on {label}"))?;
        clients.push(tcti);
    }

    let operations = operations();
    // rates[op][server] = ops/s of each round.
    let mut rates = vec![[Vec::new(), Vec::new(), Vec::new()]; operations.len()];
    let mut response = vec![0u8; RESPONSE_BUFFER];

    // Warm-up: connections, caches, lazily built state on both sides.
    let warmup = (args.ops / 10).clamp(1, 200);
    for op in &operations {
        for (s, client) in clients.iter_mut().enumerate() {
            let label = labels[s];
            run_batch(client, op, warmup, &mut response)
                .with_context(|| format!("{} on {label}", op.name))?;
        }
    }
    for round in 0..args.rounds {
        for (o, op) in operations.iter().enumerate() {
            let order = if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
            for s in order {
                let label = labels[s];
                let elapsed = run_batch(&mut clients[s], op, args.ops, &mut response)
                    .with_context(|| format!("{} on {label}", op.name))?;
                rates[o][s].push(f64::from(args.ops) / elapsed.as_secs_f64().max(1e-9));
            }
        }
    }
    drop(clients);
    peer.check_alive()?;
    ours.check_alive()?;

    println!(
        "vTPM throughput through tpm2-tss's swtpm TCTI ({}): {} commands x {} rounds per \
         operation and server, median ops/s",
        args.tctildr, args.ops, args.rounds
    );
    println!(
        "  (that TCTI opens a new TCP connection for every command, so each op includes \
         connection setup)"
    );
    println!("  swtpm:       {} ({swtpm_version})", args.swtpm.display());
    println!(
        "  trustlaunch: {} {}{}",
        ours_program.display(),
        if ours_prefix.is_empty() { "" } else { "vtpm " },
        if cfg!(debug_assertions) {
            "socket (DEBUG build: build with --release for meaningful figures)"
        } else {
            "socket"
        }
    );
    println!();
    let header = format!(
        "{:<34} {:>24} {:>24} {:>10} {:>24} {:>11}",
        "operation",
        "swtpm (min-max)",
        "trustlaunch (min-max)",
        "ours/swtpm",
        "floor: no TPM (min-max)",
        "floor/swtpm"
    );
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    let mut missed = Vec::new();
    for (o, op) in operations.iter().enumerate() {
        let [peer_rates, our_rates, floor_rates] = &rates[o];
        let ratio = median(our_rates) / median(peer_rates);
        if ratio < TARGET_RATIO {
            missed.push(op.name);
        }
        println!(
            "{:<34} {:>24} {:>24} {:>9.2}x {:>24} {:>10.2}x",
            op.name,
            figure(peer_rates),
            figure(our_rates),
            ratio,
            figure(floor_rates),
            median(floor_rates) / median(peer_rates)
        );
    }
    println!();
    if missed.is_empty() {
        println!("target (ours >= {TARGET_RATIO}x swtpm on each operation): met");
    } else {
        println!(
            "target (ours >= {TARGET_RATIO}x swtpm on each operation): NOT met for {}",
            missed.join(", ")
        );
        println!(
            "  (compare the floor column: a server doing no TPM work bounds what any TPM can reach \
             through this TCTI)"
        );
    }
    let argv: Vec<String> = std::env::args().collect();
    println!("command: {}", argv.join(" "));
    Ok(ExitCode::SUCCESS)
}

pub(super) fn figure(rates: &[f64]) -> String {
    let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rates.iter().copied().fold(0.0, f64::max);
    format!(
        "{} ({}-{})",
        thousands(median(rates)),
        thousands(min),
        thousands(max)
    )
}

fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(super) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(super) fn version_line(program: &Path) -> String {
    Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "version unknown".into())
}

// ---------------------------------------------------------------------------------------------
// The workload: raw TPM 2.0 commands (TPM 2.0 Library Part 3) and response checks
// ---------------------------------------------------------------------------------------------

pub(super) const TPM_ST_NO_SESSIONS: u16 = 0x8001;
pub(super) const TPM_ST_SESSIONS: u16 = 0x8002;
const TPM_CC_STARTUP: u32 = 0x0000_0144;
const TPM_CC_PCR_EXTEND: u32 = 0x0000_0182;
const TPM_CC_PCR_READ: u32 = 0x0000_017E;
const TPM_CC_GET_RANDOM: u32 = 0x0000_017B;
const TPM_SU_CLEAR: u16 = 0x0000;
pub(super) const TPM_RS_PW: u32 = 0x4000_0009;
pub(super) const TPM_ALG_SHA256: u16 = 0x000B;
pub(super) const TPM_RC_SUCCESS: u32 = 0;
const TPM_RC_INITIALIZE: u32 = 0x100;

struct Operation {
    name: &'static str,
    command: Vec<u8>,
    /// Full check of one response (the cheap return-code check is done on every response).
    check: fn(&[u8]) -> Result<()>,
}

/// header (tag, commandSize, commandCode) + body.
pub(super) fn command(tag: u16, code: u32, body: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(10 + body.len());
    c.extend(tag.to_be_bytes());
    c.extend(
        u32::try_from(10 + body.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    c.extend(code.to_be_bytes());
    c.extend(body);
    c
}

fn operations() -> Vec<Operation> {
    // TPM2_PCR_Extend(PCR 16) with a password session (empty auth) and one sha256 digest.
    let mut extend = Vec::new();
    extend.extend(16u32.to_be_bytes()); // pcrHandle
    extend.extend(9u32.to_be_bytes()); // authorizationSize
    extend.extend(TPM_RS_PW.to_be_bytes()); // sessionHandle
    extend.extend(0u16.to_be_bytes()); // nonceCaller (empty)
    extend.push(0); // sessionAttributes
    extend.extend(0u16.to_be_bytes()); // hmac: the empty password
    extend.extend(1u32.to_be_bytes()); // TPML_DIGEST_VALUES.count
    extend.extend(TPM_ALG_SHA256.to_be_bytes());
    extend.extend((0u8..32).map(|i| i.wrapping_mul(37) ^ 0x5A)); // the digest

    // TPM2_PCR_Read of PCRs 0-7 in the sha256 bank.
    let mut read = Vec::new();
    read.extend(1u32.to_be_bytes()); // TPML_PCR_SELECTION.count
    read.extend(TPM_ALG_SHA256.to_be_bytes());
    read.push(3); // sizeofSelect
    read.extend([0xFF, 0x00, 0x00]); // PCRs 0-7

    vec![
        Operation {
            name: "PCR_Extend (PCR 16, sha256, pw)",
            command: command(TPM_ST_SESSIONS, TPM_CC_PCR_EXTEND, &extend),
            check: check_pcr_extend,
        },
        Operation {
            name: "PCR_Read (PCRs 0-7, sha256)",
            command: command(TPM_ST_NO_SESSIONS, TPM_CC_PCR_READ, &read),
            check: check_pcr_read,
        },
        Operation {
            name: "GetRandom (32 bytes)",
            command: command(TPM_ST_NO_SESSIONS, TPM_CC_GET_RANDOM, &32u16.to_be_bytes()),
            check: check_get_random,
        },
    ]
}

fn be16(b: &[u8], at: usize) -> Result<u16> {
    match b.get(at..at + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => bail!("response too short ({} bytes)", b.len()),
    }
}

fn be32(b: &[u8], at: usize) -> Result<u32> {
    match b.get(at..at + 4) {
        Some(s) => Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]])),
        None => bail!("response too short ({} bytes)", b.len()),
    }
}

pub(super) fn response_code(r: &[u8]) -> Result<u32> {
    let size = be32(r, 2)?;
    if size as usize != r.len() {
        bail!("responseSize {size} but {} bytes received", r.len());
    }
    be32(r, 6)
}

fn check_pcr_extend(r: &[u8]) -> Result<()> {
    // header, parameterSize = 0, one auth response: nonce (empty), attributes, hmac (empty).
    if be16(r, 0)? != TPM_ST_SESSIONS || r.len() != 10 + 4 + 5 || be32(r, 10)? != 0 {
        bail!("unexpected PCR_Extend response {r:02x?}");
    }
    Ok(())
}

fn check_pcr_read(r: &[u8]) -> Result<()> {
    let mut at = 10 + 4; // header, pcrUpdateCounter
    let selections = be32(r, at)?;
    at += 4;
    for _ in 0..selections {
        at += 2; // hash
        let size = *r.get(at).context("truncated pcrSelectionOut")? as usize;
        at += 1 + size;
    }
    let count = be32(r, at)?;
    at += 4;
    if count != 8 {
        bail!("PCR_Read returned {count} digests, expected 8");
    }
    for _ in 0..count {
        let size = be16(r, at)?;
        if size != 32 {
            bail!("PCR_Read returned a {size}-byte sha256 digest");
        }
        at += 2 + 32;
    }
    if at != r.len() {
        bail!("PCR_Read response has {} trailing bytes", r.len() - at);
    }
    Ok(())
}

fn check_get_random(r: &[u8]) -> Result<()> {
    if be16(r, 10)? != 32 || r.len() != 10 + 2 + 32 {
        bail!("GetRandom(32) returned {r:02x?}");
    }
    Ok(())
}

/// TPM2_Startup(CLEAR); TPM_RC_INITIALIZE means the TPM was already started.
pub(super) fn startup(tcti: &mut tcti::Tcti) -> Result<()> {
    let mut response = vec![0u8; RESPONSE_BUFFER];
    let cmd = command(
        TPM_ST_NO_SESSIONS,
        TPM_CC_STARTUP,
        &TPM_SU_CLEAR.to_be_bytes(),
    );
    let n = tcti.exchange(&cmd, &mut response)?;
    match response_code(&response[..n])? {
        TPM_RC_SUCCESS | TPM_RC_INITIALIZE => Ok(()),
        rc => bail!("TPM2_Startup(CLEAR) returned 0x{rc:x}"),
    }
}

fn run_batch(
    tcti: &mut tcti::Tcti,
    op: &Operation,
    count: u32,
    response: &mut [u8],
) -> Result<Duration> {
    let start = Instant::now();
    for i in 0..count {
        let n = tcti.exchange(&op.command, response)?;
        let r = &response[..n];
        let rc = response_code(r)?;
        if rc != TPM_RC_SUCCESS {
            bail!("response code 0x{rc:x}");
        }
        if i == 0 {
            (op.check)(r)?;
        }
    }
    Ok(start.elapsed())
}

// ---------------------------------------------------------------------------------------------
// Server processes
// ---------------------------------------------------------------------------------------------

pub(super) struct Server {
    pub(super) label: &'static str,
    pub(super) port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Server {
    /// `program [prefix…] socket --tpm2 --server type=tcp,port=N --ctrl type=tcp,port=N+1
    /// --tpmstate dir=D --flags not-need-init` on free loopback ports (the swtpm TCTI
    /// expects the control channel on port N+1).
    pub(super) fn start(label: &'static str, program: &Path, prefix: &[&str]) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("trustlaunch-bench-{label}-"))
            .tempdir()
            .context("creating a temporary state directory")?;
        let state = dir.path().join("state");
        std::fs::create_dir(&state)?;
        let log_path = dir.path().join("server.log");
        let mut last_error = anyhow::anyhow!("not started");
        // A port pair found free may be taken before the server binds it: try others then.
        for _ in 0..8 {
            let port = free_port_pair();
            let log = File::create(&log_path)?;
            let mut child = Command::new(program)
                .args(prefix)
                .args(["socket", "--tpm2"])
                .args(["--server", &format!("type=tcp,port={port}")])
                .args(["--ctrl", &format!("type=tcp,port={}", port + 1)])
                .args(["--tpmstate", &format!("dir={}", state.display())])
                .args(["--flags", "not-need-init"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", program.display()))?;
            match wait_ready(&mut child, port) {
                Ok(()) => {
                    return Ok(Server {
                        label,
                        port,
                        child,
                        _dir: dir,
                    })
                }
                Err(e) => {
                    last_error = e;
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        let mut log = String::new();
        let _ = File::open(&log_path).and_then(|mut f| f.read_to_string(&mut log));
        Err(last_error).with_context(|| format!("{label} did not start; its output:\n{log}"))
    }

    pub(super) fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("{} exited during the benchmark ({status})", self.label),
        }
    }
}

/// Wait until the server accepts on both ports, failing early if it exits.
fn wait_ready(child: &mut Child, port: u16) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    for port in [port, port + 1] {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
            if let Some(status) = child.try_wait()? {
                bail!("exited before accepting connections ({status})");
            }
            if Instant::now() > deadline {
                bail!("nothing accepted on {addr} within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // A server that could not bind exits: make sure the listener was this one.
    std::thread::sleep(Duration::from_millis(50));
    match child.try_wait()? {
        None => Ok(()),
        Some(status) => bail!("exited right after start ({status})"),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Before `_dir` is removed (fields drop after this body).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two consecutive free loopback ports N, N+1, below Linux's ephemeral port range.
fn free_port_pair() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        let port = 20_000 + 2 * (h.finish() % 6_000) as u16;
        let a = TcpListener::bind((Ipv4Addr::LOCALHOST, port));
        let b = TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1));
        if a.is_ok() && b.is_ok() {
            return port;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tpm2-tss, loaded at run time: the benchmark's only unsafe code
// ---------------------------------------------------------------------------------------------

pub(super) mod tcti {
    use anyhow::{bail, Context, Result};
    use std::ffi::{c_char, c_void, CString};
    use std::ptr::addr_of;

    /// TSS2_TCTI_CONTEXT: opaque.
    type Context_ = c_void;
    /// TSS2_RC Tss2_TctiLdr_Initialize(const char *nameConf, TSS2_TCTI_CONTEXT **context)
    type InitializeFn = unsafe extern "C" fn(*const c_char, *mut *mut Context_) -> u32;
    /// void Tss2_TctiLdr_Finalize(TSS2_TCTI_CONTEXT **context)
    type FinalizeFn = unsafe extern "C" fn(*mut *mut Context_);
    /// TSS2_TCTI_TRANSMIT_FCN
    type TransmitFn = unsafe extern "C" fn(*mut Context_, usize, *const u8) -> u32;
    /// TSS2_TCTI_RECEIVE_FCN
    type ReceiveFn = unsafe extern "C" fn(*mut Context_, *mut usize, *mut u8, i32) -> u32;

    /// TSS2_TCTI_CONTEXT_COMMON_V1 (tss2_tcti.h), the head of every TCTI context; V2 only
    /// appends `makeSticky`, which the benchmark does not use.
    #[repr(C)]
    struct CommonV1 {
        magic: u64,
        version: u32,
        transmit: Option<TransmitFn>,
        receive: Option<ReceiveFn>,
        finalize: Option<unsafe extern "C" fn(*mut Context_)>,
        cancel: Option<unsafe extern "C" fn(*mut Context_) -> u32>,
        get_poll_handles:
            Option<unsafe extern "C" fn(*mut Context_, *mut c_void, *mut usize) -> u32>,
        set_locality: Option<unsafe extern "C" fn(*mut Context_, u8) -> u32>,
    }

    /// Wait at most this long for a response (TSS2_TCTI_TIMEOUT_BLOCK would be -1).
    const RECEIVE_TIMEOUT_MS: i32 = 30_000;

    /// A TCTI context made by Tss2_TctiLdr_Initialize; finalized on drop.
    pub struct Tcti {
        context: *mut Context_,
        transmit: TransmitFn,
        receive: ReceiveFn,
        finalize: FinalizeFn,
        // Declared last: the library stays loaded until after `Drop::drop` has finalized the
        // context, so the function pointers above stay valid for the whole life of `Tcti`.
        _library: libloading::Library,
    }

    impl Tcti {
        /// Load `library` (the TCTI loader) and open a TCTI with `conf`, e.g.
        /// "swtpm:host=127.0.0.1,port=2321".
        pub fn connect(library: &str, conf: &str) -> Result<Tcti> {
            let conf_c = CString::new(conf).context("TCTI configuration contains NUL")?;
            // SAFETY: loading tpm2-tss runs its ELF initialisers, which have no preconditions.
            let lib = unsafe { libloading::Library::new(library) }
                .with_context(|| format!("loading {library} (Debian package libtss2-tctildr0)"))?;
            // SAFETY: the declared types are those of tss2_tctildr.h; the copied function
            // pointers are only used while `lib` is alive (it moves into the returned Tcti).
            let (initialize, finalize) = unsafe {
                let i = lib.get::<InitializeFn>(b"Tss2_TctiLdr_Initialize\0")?;
                let f = lib.get::<FinalizeFn>(b"Tss2_TctiLdr_Finalize\0")?;
                (*i, *f)
            };
            let mut context: *mut Context_ = std::ptr::null_mut();
            // SAFETY: conf_c is NUL-terminated and outlives the call; context is a valid
            // out-pointer.
            let rc = unsafe { initialize(conf_c.as_ptr(), &mut context) };
            if rc != 0 || context.is_null() {
                bail!("Tss2_TctiLdr_Initialize(\"{conf}\") failed: 0x{rc:x}");
            }
            let head = context as *const CommonV1;
            // SAFETY: a context from Tss2_TctiLdr_Initialize begins with the common V1 head
            // (tss2_tcti.h); the fields are read in place, without assuming anything beyond V1.
            let (version, transmit, receive) = unsafe {
                (
                    addr_of!((*head).version).read(),
                    addr_of!((*head).transmit).read(),
                    addr_of!((*head).receive).read(),
                )
            };
            match (version, transmit, receive) {
                (1.., Some(transmit), Some(receive)) => Ok(Tcti {
                    context,
                    transmit,
                    receive,
                    finalize,
                    _library: lib,
                }),
                _ => {
                    // SAFETY: the context came from Tss2_TctiLdr_Initialize and is not used again.
                    unsafe { finalize(&mut context) };
                    bail!("TCTI context version {version} lacks transmit/receive")
                }
            }
        }

        /// Send one command and receive its response into `response`; returns its length.
        pub fn exchange(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize> {
            // SAFETY: the context is live until drop; `command` is readable for its length.
            let rc = unsafe { (self.transmit)(self.context, command.len(), command.as_ptr()) };
            if rc != 0 {
                bail!("TCTI transmit failed: 0x{rc:x}");
            }
            let mut size = response.len();
            // SAFETY: `response` is writable for `size` bytes and `size` is a valid in/out
            // pointer; the TCTI writes at most `size` bytes.
            let rc = unsafe {
                (self.receive)(
                    self.context,
                    &mut size,
                    response.as_mut_ptr(),
                    RECEIVE_TIMEOUT_MS,
                )
            };
            if rc != 0 {
                bail!("TCTI receive failed: 0x{rc:x}");
            }
            if size > response.len() {
                bail!(
                    "TCTI reported a {size}-byte response for a {}-byte buffer",
                    response.len()
                );
            }
            Ok(size)
        }
    }

    impl Drop for Tcti {
        fn drop(&mut self) {
            // SAFETY: the context came from Tss2_TctiLdr_Initialize, is finalized exactly once,
            // and the library is still loaded (fields drop after this).
            unsafe { (self.finalize)(&mut self.context) };
        }
    }
}

/// A server on the swtpm socket protocol that does no TPM work: canned, well-formed answers to
/// the benchmark's commands. It measures the floor of a client, not a TPM.
mod null_server {
    use anyhow::Result;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener};

    pub struct NullServer {
        pub port: u16,
    }

    fn answer(code: u32) -> Vec<u8> {
        let mut r = match code {
            // GetRandom(32): 32 zero bytes.
            0x17B => [vec![0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32], vec![0; 32]].concat(),
            // PCR_Extend with one password session.
            0x182 => vec![
                0x80, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0,
            ],
            // PCR_Read of sha256 PCRs 0-7: counter, selection, eight zero digests.
            0x17E => {
                let mut r = vec![0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
                r.extend([0, 0, 0, 1, 0, 0x0B, 3, 0xFF, 0, 0, 0, 0, 0, 8]);
                for _ in 0..8 {
                    r.extend([0, 32]);
                    r.extend([0u8; 32]);
                }
                r
            }
            _ => vec![0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0],
        };
        let len = (r.len() as u32).to_be_bytes();
        r[2..6].copy_from_slice(&len);
        r
    }

    impl NullServer {
        /// Listen on a free port pair (data N, control N+1) and serve until the process exits.
        pub fn start() -> Result<NullServer> {
            for _ in 0..16 {
                // Outside the ephemeral range, as the other servers are (super::free_port_pair).
                let port = super::free_port_pair();
                let Ok(data) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) else {
                    continue;
                };
                let Ok(ctrl) = TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)) else {
                    continue;
                };
                std::thread::spawn(move || {
                    for mut s in ctrl.incoming().flatten() {
                        let mut b = [0u8; 64];
                        let _ = s.read(&mut b);
                        let _ = s.write_all(&[0, 0, 0, 0]);
                    }
                });
                std::thread::spawn(move || {
                    let mut b = vec![0u8; 8192];
                    for mut s in data.incoming().flatten() {
                        if let Ok(n) = s.read(&mut b) {
                            if n >= 10 {
                                let code = u32::from_be_bytes([b[6], b[7], b[8], b[9]]);
                                let _ = s.write_all(&answer(code));
                            }
                        }
                        while matches!(s.read(&mut b), Ok(n) if n > 0) {}
                    }
                });
                return Ok(NullServer { port });
            }
            anyhow::bail!("no free port pair for the floor server")
        }
    }
}
