//! Command-line surface: what was typed, resolved into typed configuration, then run.

mod attest;
mod bench;
mod bench_density;
mod bench_eventlog;
mod bench_keys;
mod bench_secureboot;
mod eventlog;
mod firmware;
mod node_tpm;
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
    /// The virtual Generation 2 UEFI firmware: boot node images into their vTPM.
    #[command(subcommand)]
    Firmware(firmware::FirmwareCommand),
    /// Side-by-side benchmarks against peer implementations.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// UEFI Secure Boot: image verdicts as OVMF and shim reach them, Authenticode digests,
    /// OVMF variable stores.
    #[command(subcommand)]
    Secureboot(secureboot::SecurebootCommand),
    /// TCG event logs: show, replay, verified boot components.
    #[command(subcommand)]
    Eventlog(eventlog::EventlogCommand),
    /// Remote attestation: verify any TPM's evidence, write reference policies.
    #[command(subcommand)]
    Attest(attest::AttestCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Vtpm(cmd) => vtpm::run(cmd),
        Command::Firmware(cmd) => firmware::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Secureboot(cmd) => secureboot::run(cmd),
        Command::Eventlog(cmd) => eventlog::run(cmd),
        Command::Attest(cmd) => attest::run(cmd),
    }
}
