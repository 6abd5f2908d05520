//! `trustlaunch bench pool`: a node pool created to all-attested with the embedded backend
//! (seconds, the server's peak RSS), then a pool reimaged rolling with `--max-surge 10%`
//! (seconds) — through the same CLI and server an operator uses.

use super::up::EmbeddedServer;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

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

fn healthy(server: &EmbeddedServer, pool: &str) -> Result<usize> {
    let v = server.json(&[
        "aks",
        "nodepool",
        "list-nodes",
        "-g",
        "bench",
        "--cluster-name",
        "bench",
        "--name",
        pool,
    ])?;
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
    let server = EmbeddedServer::start(data, &a.images)?;
    let n = a.nodes.to_string();
    let t = Instant::now();
    server.json(&[
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
    ])?;
    let create = t.elapsed().as_secs_f64();
    let attested = healthy(&server, "nodepool1")?;
    let rss = peak_rss_kib(server.pid()).unwrap_or(0);

    let r = a.reimage.to_string();
    server.json(&[
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
    ])?;
    let t = Instant::now();
    server.json(&[
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
    ])?;
    let reimage = t.elapsed().as_secs_f64();
    let reattested = healthy(&server, "reimage")?;
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
