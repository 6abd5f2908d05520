//! `trustlaunch bench pool`: a node pool created to all-attested with the embedded backend
//! (seconds, the server's peak RSS), then a pool reimaged rolling with `--max-surge 10%`
//! (seconds) — through the same CLI and server an operator uses.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The target for creating the large pool to all-attested.
const TARGET_CREATE_SECS: f64 = 60.0;

#[derive(Debug, Args)]
pub struct PoolBench {
    /// The node images (`lab/build-node-image.sh DIR` builds DIR/images).
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// Nodes of the pool created to all-attested.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    nodes: u32,
    /// Nodes of the pool reimaged with --max-surge 10%.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    reimage: u32,
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tl(data: &Path, args: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new(std::env::current_exe()?)
        .args(args)
        .args(["-o", "json"])
        .env("TRUSTLAUNCH_DATA_DIR", data)
        .env_remove("TRUSTLAUNCH_ENDPOINT")
        .env_remove("TRUSTLAUNCH_TOKEN")
        .output()?;
    if !out.status.success() {
        bail!(
            "trustlaunch {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null))
}

fn healthy(data: &Path, pool: &str) -> Result<usize> {
    let v = tl(
        data,
        &[
            "aks",
            "nodepool",
            "list-nodes",
            "-g",
            "bench",
            "--cluster-name",
            "bench",
            "--name",
            pool,
        ],
    )?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter(|n| n["attestation"]["status"] == "Healthy")
                .count()
        })
        .unwrap_or(0))
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn bench_pool(a: &PoolBench) -> Result<ExitCode> {
    let tmp = tempfile::Builder::new()
        .prefix("trustlaunch-bench-pool-")
        .tempdir()?;
    let data = tmp.path();
    let child = Command::new(std::env::current_exe()?)
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "embedded",
            "--data-dir",
        ])
        .arg(data)
        .arg("--images")
        .arg(&a.images)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .context("starting trustlaunch up")?;
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !data.join(super::up::ENDPOINT_FILE).exists() {
        if Instant::now() > deadline {
            bail!("the server did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let n = a.nodes.to_string();
    let t = Instant::now();
    tl(
        data,
        &[
            "aks",
            "create",
            "-n",
            "bench",
            "-g",
            "bench",
            "--node-count",
            &n,
            "--enable-secure-boot",
            "--enable-vtpm",
        ],
    )?;
    let create = t.elapsed().as_secs_f64();
    let attested = healthy(data, "nodepool1")?;
    let rss = peak_rss_kib(server.0.id()).unwrap_or(0);

    let r = a.reimage.to_string();
    tl(
        data,
        &[
            "aks",
            "nodepool",
            "add",
            "-g",
            "bench",
            "--cluster-name",
            "bench",
            "-n",
            "reimage",
            "--node-count",
            &r,
            "--enable-vtpm",
        ],
    )?;
    let t = Instant::now();
    tl(
        data,
        &[
            "aks",
            "nodepool",
            "update",
            "-g",
            "bench",
            "--cluster-name",
            "bench",
            "-n",
            "reimage",
            "--enable-secure-boot",
            "--max-surge",
            "10%",
        ],
    )?;
    let reimage = t.elapsed().as_secs_f64();
    let reattested = healthy(data, "reimage")?;
    drop(server);

    println!(
        "embedded backend through the CLI (aks create / nodepool update against trustlaunch up)"
    );
    println!("  {:>4} nodes created to all-attested   {create:>7.1} s   ({attested} Healthy; target <= {TARGET_CREATE_SECS} s)", a.nodes);
    println!(
        "  server peak RSS                       {:>7.1} MiB",
        rss as f64 / 1024.0
    );
    println!(
        "  {:>4} nodes reimaged, max surge 10%   {reimage:>7.1} s   ({reattested} Healthy)",
        a.reimage
    );
    let ok = create <= TARGET_CREATE_SECS
        && attested == a.nodes as usize
        && reattested == a.reimage as usize;
    println!("target: {}", if ok { "met" } else { "NOT met" });
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
