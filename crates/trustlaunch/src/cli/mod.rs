//! Command-line surface: what was typed, resolved into typed configuration, then run.

mod bench;
mod bench_density;
mod bench_keys;
mod bench_secureboot;
mod secureboot;
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
    /// UEFI Secure Boot: image verdicts as OVMF and shim reach them, Authenticode digests,
    /// OVMF variable stores.
    #[command(subcommand)]
    Secureboot(secureboot::SecurebootCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Vtpm(cmd) => vtpm::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Secureboot(cmd) => secureboot::run(cmd),
    }
}
