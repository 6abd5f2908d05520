//! `trustlaunch bench density`: the third vTPM issue's figures. One `trustlaunch vtpm host`
//! with N idle instances created through its API, against one idle swtpm process: resident
//! memory per idle instance (VmRSS before and after, over N), and the time from "create"
//! to the first answered command against starting an swtpm process and getting its first
//! answer. Both are started as QEMU starts its vTPM: the control socket only, the data
//! channel passed over it with CMD_SET_DATAFD, then CMD_INIT, TPM2_Startup, TPM2_GetRandom.
//! Starts are timed back to back (the host's bare and EK creates alternating) and again
//! each after a pause with nothing running ([`REST`]), where idle CPUs have gone to sleep
//! and every wake-up costs more; both figures must meet the target. The wait for swtpm's
//! socket is woken by inotify, so no polling interval is counted against it.

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use std::io::{IoSlice, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use vtpm::host;

#[derive(Debug, Args)]
pub struct DensityBench {
    /// Idle instances to create in the host.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    instances: u32,
    /// Create-to-first-answer measurements per side (the figure is the median).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..))]
    starts: u32,
    /// The swtpm executable to compare against.
    #[arg(long, default_value = "swtpm")]
    swtpm: PathBuf,
}

const TARGET_KIB_PER_INSTANCE: f64 = 256.0;
const TARGET_START_RATIO: f64 = 10.0;
const GET_RANDOM: [u8; 12] = [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x7b, 0, 8];

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// Waits for a server's Unix socket: an inotify watch on its directory, made before the
/// server is started, wakes the wait when the socket file appears, so the measured start
/// holds no polling interval.
struct SocketWatch(std::os::fd::OwnedFd);

impl SocketWatch {
    fn new(dir: &Path) -> Result<SocketWatch> {
        use rustix::fs::inotify;
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .context("inotify_init1")?;
        inotify::add_watch(&fd, dir, inotify::WatchFlags::CREATE)
            .with_context(|| format!("inotify_add_watch {}", dir.display()))?;
        Ok(SocketWatch(fd))
    }

    /// Connect to `path` once the server listens on it.
    fn connect(&self, path: &Path, child: &mut Child) -> Result<UnixStream> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = UnixStream::connect(path) {
                return Ok(s);
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} never appeared: the server exited ({status})",
                    path.display()
                );
            }
            if Instant::now() > deadline {
                bail!("{} never appeared", path.display());
            }
            if path.exists() {
                // Bound but not yet listening.
                std::thread::sleep(Duration::from_micros(20));
                continue;
            }
            let mut fds = [rustix::event::PollFd::new(
                &self.0,
                rustix::event::PollFlags::IN,
            )];
            let wait = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 5_000_000,
            };
            rustix::event::poll(&mut fds, Some(&wait)).context("poll")?;
            let mut events = [0u8; 4096];
            while rustix::io::read(&self.0, &mut events).is_ok_and(|n| n > 0) {}
        }
    }
}

fn wait_for_socket(path: &Path, child: &mut Child, watch: &SocketWatch) -> Result<UnixStream> {
    watch.connect(path, child)
}

/// CMD_SET_DATAFD over a control connection, as QEMU does it: one end of a new socket pair
/// passed with SCM_RIGHTS; the other end is the data channel.
fn set_datafd(ctrl: &mut UnixStream) -> Result<UnixStream> {
    let (mine, theirs) = UnixStream::pair()?;
    let fds = [theirs.as_fd()];
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut ancillary = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !ancillary.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)) {
        bail!("CMD_SET_DATAFD: no room for the descriptor");
    }
    rustix::net::sendmsg(
        &*ctrl,
        &[IoSlice::new(&[0, 0, 0, 0x10])],
        &mut ancillary,
        rustix::net::SendFlags::empty(),
    )?;
    let mut r = [0u8; 4];
    ctrl.read_exact(&mut r)?;
    if r != [0; 4] {
        bail!("CMD_SET_DATAFD answered {r:?}");
    }
    Ok(mine)
}

/// CMD_INIT over a control connection.
fn ctrl_init(ctrl: &mut UnixStream) -> Result<()> {
    ctrl.write_all(&[0, 0, 0, 2, 0, 0, 0, 0])?;
    let mut r = [0u8; 4];
    ctrl.read_exact(&mut r)?;
    if r != [0; 4] {
        bail!("CMD_INIT answered {r:?}");
    }
    Ok(())
}

/// TPM2_Startup(CLEAR) then TPM2_GetRandom(8) over a data connection.
fn first_commands(data: &mut impl ReadWrite) -> Result<()> {
    for cmd in [&vtpm::StartupType::Clear.command()[..], &GET_RANDOM[..]] {
        data.write_all(cmd)?;
        let mut head = [0u8; 10];
        data.read_exact(&mut head)?;
        let size = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
        let mut rest = vec![0u8; size.saturating_sub(10)];
        data.read_exact(&mut rest)?;
        let rc = u32::from_be_bytes([head[6], head[7], head[8], head[9]]);
        if rc != 0 {
            bail!("command {:02x?} answered rc {rc:#x}", &cmd[6..10]);
        }
    }
    Ok(())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The median, the 10th and the 90th percentile, in milliseconds.
fn spread_ms(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let at = |q: usize| v[(v.len() - 1) * q / 100].as_secs_f64() * 1000.0;
    (at(50), at(10), at(90))
}

/// The pause before each start "at rest": longer than the host's wait before it makes
/// prepared directories again (`host::QUIET`), long enough for idle CPUs to sleep.
const REST: Duration = Duration::from_millis(10);

/// `POST /v1/instances`.
fn create(api: &Path, name: &str, ek: bool) -> Result<serde_json::Value> {
    let body = json!({"name": name, "ek_cert": ek});
    let (status, v) = host::request(api, "POST", "/v1/instances", Some(&body))?;
    if !(200..300).contains(&status) {
        bail!("POST /v1/instances: {status} {v}");
    }
    Ok(v)
}

/// `swtpm socket` with only a control socket, as QEMU's `-tpmdev emulator` wants it.
fn swtpm_command(swtpm: &Path, ctrl: &Path, state: &Path) -> Command {
    let mut c = Command::new(swtpm);
    c.args(["socket", "--tpm2", "--ctrl"])
        .arg(format!("type=unixio,path={}", ctrl.display()))
        .arg("--tpmstate")
        .arg(format!("dir={}", state.display()))
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Create an instance through the host's API and start it as QEMU does: the time until
/// TPM2_GetRandom is answered.
fn start_instance(api: &Path, name: &str, ek: bool) -> Result<Duration> {
    let t = Instant::now();
    let v = create(api, name, ek)?;
    let mut ctrl = UnixStream::connect(v["ctrl_socket"].as_str().unwrap_or(""))?;
    let mut data = set_datafd(&mut ctrl)?;
    ctrl_init(&mut ctrl)?;
    first_commands(&mut data)?;
    Ok(t.elapsed())
}

/// Start an swtpm process and start its TPM as QEMU does: the time until TPM2_GetRandom
/// is answered.
fn start_swtpm(swtpm: &Path) -> Result<Duration> {
    let d = tempfile::tempdir()?;
    // The socket in a directory of its own: the state files swtpm creates wake nobody.
    let sock_dir = d.path().join("sock");
    std::fs::create_dir(&sock_dir)?;
    let ctrl_path = sock_dir.join("ctrl.sock");
    let watch = SocketWatch::new(&sock_dir)?;
    let t = Instant::now();
    let mut child = swtpm_command(swtpm, &ctrl_path, d.path()).spawn()?;
    let mut ctrl = wait_for_socket(&ctrl_path, &mut child, &watch)?;
    let child = Kill(child);
    let mut data = set_datafd(&mut ctrl)?;
    ctrl_init(&mut ctrl)?;
    first_commands(&mut data)?;
    let took = t.elapsed();
    drop(child);
    Ok(took)
}

pub fn bench_density(a: &DensityBench) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("host");
    let ca = tmp.path().join("ca");
    let mut host_cmd = Command::new(&exe);
    host_cmd
        .args(["vtpm", "host", "--log-level", "0", "--dir"])
        .arg(&dir)
        .arg("--ca-dir")
        .arg(&ca)
        .stdin(Stdio::null());
    println!(
        "host:  {} vtpm host --dir {} --ca-dir {}",
        exe.display(),
        dir.display(),
        ca.display()
    );
    std::fs::create_dir(&dir)?;
    let watch = SocketWatch::new(&dir)?;
    let mut child = host_cmd.spawn().context("starting the vTPM host")?;
    let pid = child.id();
    drop(wait_for_socket(
        &dir.join(host::API_SOCKET),
        &mut child,
        &watch,
    )?);
    let host = Kill(child);
    let api = dir.join(host::API_SOCKET);

    // Resident memory per idle instance.
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib(pid)?;
    let started = Instant::now();
    for i in 0..a.instances {
        create(&api, &format!("idle-{i}"), false)?;
    }
    let create_all = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid)?;
    let per = after.saturating_sub(before) as f64 / f64::from(a.instances);

    // One idle swtpm.
    let sw_tmp = tempfile::tempdir()?;
    let sw_ctrl = sw_tmp.path().join("ctrl.sock");
    let watch = SocketWatch::new(sw_tmp.path())?;
    let mut sw = swtpm_command(&a.swtpm, &sw_ctrl, sw_tmp.path())
        .spawn()
        .with_context(|| format!("starting {}", a.swtpm.display()))?;
    drop(wait_for_socket(&sw_ctrl, &mut sw, &watch)?);
    let sw = Kill(sw);
    std::thread::sleep(Duration::from_millis(500));
    let sw_rss = rss_kib(sw.0.id())?;
    drop(sw);

    // Create → first answer: back to back (bare and EK creates alternating), then each
    // start after a pause with nothing running (both sides).
    let mut ours = Vec::new();
    let mut ours_ek = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..a.starts {
        for ek in [false, true] {
            let name = format!("start-{}-{i}", if ek { "ek" } else { "bare" });
            let took = start_instance(&api, &name, ek)?;
            if ek { &mut ours_ek } else { &mut ours }.push(took);
        }
    }
    for _ in 0..a.starts {
        theirs.push(start_swtpm(&a.swtpm)?);
    }
    let mut ours_rested = Vec::new();
    let mut theirs_rested = Vec::new();
    for i in 0..a.starts {
        std::thread::sleep(REST);
        ours_rested.push(start_instance(&api, &format!("rested-{i}"), false)?);
    }
    for _ in 0..a.starts {
        std::thread::sleep(REST);
        theirs_rested.push(start_swtpm(&a.swtpm)?);
    }
    let rss_after_all = rss_kib(pid)?;
    drop(host);

    let ours = spread_ms(ours);
    let (ours_ek_ms, ..) = spread_ms(ours_ek);
    let theirs = spread_ms(theirs);
    let ours_rested = spread_ms(ours_rested);
    let theirs_rested = spread_ms(theirs_rested);
    let mem_ratio = sw_rss as f64 / per.max(f64::MIN_POSITIVE);
    let start_ratio = theirs.0 / ours.0;
    let rested_ratio = theirs_rested.0 / ours_rested.0;
    println!(
        "swtpm: {} socket --tpm2 --ctrl type=unixio,... --tpmstate dir=...",
        a.swtpm.display()
    );
    println!();
    println!("memory (VmRSS)");
    println!("  host, empty                    {before:>9} KiB");
    println!(
        "  host, {:>5} idle instances     {after:>9} KiB   (created in {:.0} ms)",
        a.instances,
        create_all.as_secs_f64() * 1000.0
    );
    println!(
        "  per idle instance              {per:>9.1} KiB   target <= {TARGET_KIB_PER_INSTANCE} KiB"
    );
    println!("  one idle swtpm process         {sw_rss:>9} KiB   ({mem_ratio:.1}x an instance)");
    println!();
    println!(
        "create -> first answer (as QEMU starts a vTPM: CMD_SET_DATAFD, CMD_INIT, TPM2_Startup, \
         TPM2_GetRandom), median of {} (10th-90th percentile)",
        a.starts
    );
    let cell =
        |(median, p10, p90): (f64, f64, f64)| format!("{median:>6.2} ms ({p10:.2}-{p90:.2})");
    println!(
        "                                 {:<24} after {} ms at rest",
        "back to back",
        REST.as_millis()
    );
    println!(
        "  host instance, no EK           {:<24} {}",
        cell(ours),
        cell(ours_rested)
    );
    println!(
        "  swtpm process start            {:<24} {}",
        cell(theirs),
        cell(theirs_rested)
    );
    println!(
        "  ratio of the medians           {:<24} {:>6.1}x   target >= {TARGET_START_RATIO}x",
        format!("{start_ratio:>6.1}x"),
        rested_ratio
    );
    println!(
        "  host instance, EK certificates {ours_ek_ms:>6.2} ms (back to back; RSA-2048 + P-256 EKs derived and certified at create)"
    );
    println!("  host VmRSS at the end          {rss_after_all:>9} KiB");
    let ok = per <= TARGET_KIB_PER_INSTANCE
        && start_ratio >= TARGET_START_RATIO
        && rested_ratio >= TARGET_START_RATIO;
    println!();
    println!("targets: {}", if ok { "met" } else { "NOT met" });
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
