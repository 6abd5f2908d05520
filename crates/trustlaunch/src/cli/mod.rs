//! Command-line surface: what was typed, resolved into typed configuration, then run.

mod aks;
mod aks_output;
mod bench;
mod bench_density;
mod bench_keys;
mod up;
mod vtpm;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Trusted Launch for Kubernetes node pools: vTPM, Secure Boot, measured boot, attestation.
#[derive(Debug, Parser)]
#[command(name = "trustlaunch", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Virtual TPM 2.0 instances and their transports (swtpm and mssim protocols).
    #[command(subcommand)]
    Vtpm(vtpm::VtpmCommand),
    /// Side-by-side benchmarks against peer implementations.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run the control plane: the AKS-shaped API, operations, the Kubernetes node API.
    Up(Box<up::UpArgs>),
    /// Managed clusters and node pools, as `az aks` (needs a `trustlaunch up` server).
    Aks(Box<aks::AksArgs>),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Vtpm(cmd) => vtpm::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Up(args) => up::run(*args),
        Command::Aks(args) => aks::run(*args),
    }
}
