//! Command-line surface: what was typed, resolved into typed configuration, then run.

mod agent;
mod aks;
mod aks_output;
mod attest;
mod bench;
mod bench_boot;
mod bench_density;
mod bench_eventlog;
mod bench_keys;
mod bench_pool;
mod bench_secureboot;
mod eventlog;
mod files;
mod firmware;
mod quickstart;
mod secureboot;
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
    /// The virtual Generation 2 UEFI firmware: boot node images into their vTPM.
    #[command(subcommand)]
    Firmware(firmware::FirmwareCommand),
    /// Side-by-side benchmarks against peer implementations.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    #[command(subcommand, about = SECUREBOOT_ABOUT)]
    Secureboot(secureboot::SecurebootCommand),
    /// TCG event logs: show, replay, verified boot components.
    #[command(subcommand)]
    Eventlog(eventlog::EventlogCommand),
    /// Remote attestation: verify any TPM's evidence, write reference policies.
    #[command(subcommand)]
    Attest(attest::AttestCommand),
    /// Run the server: the AKS-shaped control plane and its operations, the Kubernetes node
    /// API, the registrar and verifier, and (with the node images) the embedded node host.
    Up(Box<up::UpArgs>),
    /// Managed clusters and node pools, as `az aks` (needs a `trustlaunch up` server).
    Aks(Box<aks::AksArgs>),
    /// The product in one command: build the node images, start the server with the
    /// embedded backend, and walk through Trusted Launch (attested nodes, labels, an
    /// integrity alert naming a tampered kernel, a rolling reimage back to health).
    Quickstart(quickstart::QuickstartArgs),
    /// The node agent, for nodes that are real VMs: enroll the node's TPM, then attest at
    /// start and periodically, pushing evidence to the verifier.
    Agent(Box<agent::AgentArgs>),
    /// Integrity alerts raised by the verifier (list, acknowledge).
    Alerts(Box<aks::AlertsArgs>),
    /// One node's VM: reboot, attestation history, and tamper (for demos and tests).
    Node(Box<aks::NodeArgs>),
}

const SECUREBOOT_ABOUT: &str =
    "UEFI Secure Boot: image verdicts as OVMF and shim reach them, Authenticode digests, OVMF \
     variable stores.";

/// `trustlaunch secureboot …` alone: the same arguments, help and errors as through [`Cli`],
/// without building the parsers of every other command (the whole tree takes about 0.5 ms,
/// as long as a Secure Boot verdict itself).
#[derive(Debug, Parser)]
#[command(name = "trustlaunch secureboot", bin_name = "trustlaunch secureboot", about = SECUREBOOT_ABOUT)]
pub struct SecurebootCli {
    #[command(subcommand)]
    command: secureboot::SecurebootCommand,
}

/// The arguments of `trustlaunch secureboot …` for [`SecurebootCli`] (the program name
/// replaced), if that is the command.
pub fn secureboot_args() -> Option<Vec<std::ffi::OsString>> {
    let mut args = std::env::args_os();
    let _program = args.next();
    if args.next()? != "secureboot" {
        return None;
    }
    Some(
        std::iter::once("trustlaunch secureboot".into())
            .chain(args)
            .collect(),
    )
}

pub fn run_secureboot(cli: SecurebootCli) -> anyhow::Result<ExitCode> {
    secureboot::run(cli.command)
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Vtpm(cmd) => vtpm::run(cmd),
        Command::Firmware(cmd) => firmware::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Secureboot(cmd) => secureboot::run(cmd),
        Command::Eventlog(cmd) => eventlog::run(cmd),
        Command::Attest(cmd) => attest::run(cmd),
        Command::Up(args) => up::run(*args),
        Command::Aks(args) => aks::run(*args),
        Command::Quickstart(args) => quickstart::run(args),
        Command::Agent(args) => agent::run(*args),
        Command::Alerts(args) => aks::run_alerts(*args),
        Command::Node(args) => aks::run_node(*args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every help text of `trustlaunch secureboot …` is the same whether the whole command
    /// tree or [`SecurebootCli`] alone parses it.
    #[test]
    fn secureboot_parses_alone_with_the_same_help() {
        let mut full = Cli::command();
        full.build();
        let whole = full
            .find_subcommand("secureboot")
            .expect("secureboot")
            .clone();
        let mut alone = SecurebootCli::command();
        alone.build();
        fn helps(c: &clap::Command, out: &mut Vec<(String, String)>) {
            let mut c = c.clone();
            out.push((
                c.get_bin_name().unwrap_or("").to_string(),
                c.render_long_help().to_string(),
            ));
            for s in c.get_subcommands() {
                helps(s, out);
            }
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        helps(&whole, &mut a);
        helps(&alone, &mut b);
        assert!(a.len() > 10, "{} help texts", a.len());
        assert_eq!(a, b);
    }
}
