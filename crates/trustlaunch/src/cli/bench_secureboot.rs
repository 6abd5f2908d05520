//! `trustlaunch bench secureboot`: the wall time of one whole `trustlaunch secureboot verify`
//! process against one `sbverify --cert` process on the same image, the way a person or a
//! script runs them (process start, file reads, digest, signature check). Rounds alternate
//! which program goes first; the figures are medians.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

#[derive(Debug, Args)]
pub struct SecurebootBench {
    /// The signed image both programs verify (e.g. shimx64.efi.signed).
    #[arg(long)]
    image: PathBuf,
    /// The OVMF_VARS image our verify reads db and dbx from.
    #[arg(long, default_value = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd")]
    vars: PathBuf,
    /// The PEM certificate sbverify checks against (the db certificate that allows IMAGE).
    #[arg(long)]
    cert: PathBuf,
    /// Runs of each program; the figures are medians.
    #[arg(long, default_value_t = 31, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// The sbverify executable to compare against.
    #[arg(long, default_value = "sbverify")]
    sbverify: PathBuf,
}

/// Runs `cmd` once; its wall time in milliseconds, failing unless it exits 0.
fn timed(cmd: &mut Command, what: &str) -> Result<f64> {
    let start = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {what}"))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if !status.success() {
        bail!("{what} did not accept the image ({status}); the comparison needs both to allow it");
    }
    Ok(ms)
}

pub fn bench_secureboot(args: &SecurebootBench) -> Result<ExitCode> {
    let ours = std::env::current_exe().context("locating the trustlaunch executable")?;
    let our_cmd = || {
        let mut c = Command::new(&ours);
        c.args(["secureboot", "verify"])
            .arg(&args.image)
            .arg("--vars")
            .arg(&args.vars);
        c
    };
    let peer_cmd = || {
        let mut c = Command::new(&args.sbverify);
        c.arg("--cert").arg(&args.cert).arg(&args.image);
        c
    };
    // One untimed run each warms the page cache and checks that both allow the image.
    timed(&mut our_cmd(), "trustlaunch secureboot verify")?;
    timed(&mut peer_cmd(), "sbverify")?;
    let (mut mine, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        if round % 2 == 0 {
            mine.push(timed(&mut our_cmd(), "trustlaunch secureboot verify")?);
            theirs.push(timed(&mut peer_cmd(), "sbverify")?);
        } else {
            theirs.push(timed(&mut peer_cmd(), "sbverify")?);
            mine.push(timed(&mut our_cmd(), "trustlaunch secureboot verify")?);
        }
    }
    let (m, t) = (super::bench::median(&mine), super::bench::median(&theirs));
    let ratio = m / t;
    println!(
        "Secure Boot verification of {}, whole processes, medians over {} rounds{}",
        args.image.display(),
        args.rounds,
        if cfg!(debug_assertions) {
            " (DEBUG BUILD: use --release for figures)"
        } else {
            ""
        }
    );
    println!(
        "  sbverify:    {} --cert {} ({})",
        args.sbverify.display(),
        args.cert.display(),
        super::bench::version_line(&args.sbverify)
    );
    println!(
        "  trustlaunch: {} secureboot verify --vars {}",
        ours.display(),
        args.vars.display()
    );
    println!();
    println!(
        "{:<40} {:>12} {:>12} {:>12}",
        "", "sbverify", "trustlaunch", "ours/theirs"
    );
    println!(
        "{:<40} {:>12.2} {:>12.2} {:>11.2}x",
        "wall time per verification (ms)", t, m, ratio
    );
    println!();
    println!(
        "target <= 0.5x sbverify's time: {}",
        if ratio <= 0.5 { "met" } else { "NOT met" }
    );
    let argv: Vec<String> = std::env::args().collect();
    println!("command: {}", argv.join(" "));
    Ok(ExitCode::SUCCESS)
}
