//! `trustlaunch bench eventlog`: whole-process time of `trustlaunch eventlog replay LOG`
//! against `tpm2_eventlog LOG` (tpm2-tools) on the same log: process start, parse, replay,
//! print, exit, output to /dev/null. Runs alternate which tool goes first; figures are
//! medians. Both must succeed on every run, else the bench fails (a crash is not fast).

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use super::bench::{median, version_line};

#[derive(Debug, Args)]
pub struct EventlogBench {
    /// The log to replay (one tpm2_eventlog can read).
    log: PathBuf,
    /// Runs per tool; the figures are medians.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// The tpm2_eventlog executable to compare against.
    #[arg(long, default_value = "tpm2_eventlog")]
    tpm2_eventlog: PathBuf,
}

/// The target: ours at most this fraction of tpm2_eventlog's time.
const TARGET_RATIO: f64 = 0.5;

/// Milliseconds one run of `program args` takes, start to exit.
fn time_run(program: &Path, args: &[&Path]) -> Result<f64> {
    let start = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {}", program.display()))?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if !status.success() {
        bail!("{} failed on the log ({status})", program.display());
    }
    Ok(ms)
}

pub fn bench_eventlog(args: &EventlogBench) -> Result<ExitCode> {
    let ours = std::env::current_exe().context("locating the trustlaunch executable")?;
    let bytes =
        std::fs::read(&args.log).with_context(|| format!("reading {}", args.log.display()))?;
    let events = eventlog::EventLog::parse(&bytes)
        .map(|l| l.events.len().to_string())
        .unwrap_or_else(|e| format!("unparsed: {e}"));
    let replay = Path::new("replay");
    let eventlog_word = Path::new("eventlog");
    let ours_args = [eventlog_word, replay, args.log.as_path()];
    let peer_args = [args.log.as_path()];

    // Warm-up: page cache, dynamic loader caches.
    time_run(&args.tpm2_eventlog, &peer_args)?;
    time_run(&ours, &ours_args)?;
    let (mut peer_ms, mut ours_ms) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        if run % 2 == 0 {
            peer_ms.push(time_run(&args.tpm2_eventlog, &peer_args)?);
            ours_ms.push(time_run(&ours, &ours_args)?);
        } else {
            ours_ms.push(time_run(&ours, &ours_args)?);
            peer_ms.push(time_run(&args.tpm2_eventlog, &peer_args)?);
        }
    }
    let figure = |v: &[f64]| {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        format!("{:.2} ms ({min:.2}-{max:.2})", median(v))
    };
    let ratio = median(&ours_ms) / median(&peer_ms);
    println!(
        "event log replay, whole process (start, parse, replay, print to /dev/null, exit): \
         {} runs per tool, alternating order, median wall time",
        args.runs
    );
    println!(
        "  log:           {} ({} bytes, {events} events)",
        args.log.display(),
        bytes.len()
    );
    println!(
        "  tpm2_eventlog: {} ({})",
        args.tpm2_eventlog.display(),
        version_line(&args.tpm2_eventlog)
    );
    println!(
        "  trustlaunch:   {} eventlog replay{}",
        ours.display(),
        if cfg!(debug_assertions) {
            " (DEBUG build: build with --release for meaningful figures)"
        } else {
            ""
        }
    );
    println!();
    println!("{:<16} {:>28}", "tool", "median (min-max)");
    println!("{:<16} {:>28}", "tpm2_eventlog", figure(&peer_ms));
    println!("{:<16} {:>28}", "trustlaunch", figure(&ours_ms));
    println!("ours/tpm2_eventlog: {ratio:.2}x");
    println!(
        "target (ours <= {TARGET_RATIO}x tpm2_eventlog's time): {}",
        if ratio <= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
    let argv: Vec<String> = std::env::args().collect();
    println!("command: {}", argv.join(" "));
    Ok(ExitCode::SUCCESS)
}
