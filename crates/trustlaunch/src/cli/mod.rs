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

/// `trustlaunch secureboot verify …` alone, the Secure Boot command run most (and
/// benchmarked as a whole process): its arguments, help and errors, without the parsers of
/// the other secureboot commands (those took a third of the parsing time).
#[derive(Debug, Parser)]
#[command(
    name = "trustlaunch secureboot verify",
    bin_name = "trustlaunch secureboot verify",
    about = secureboot::VERIFY_ABOUT
)]
pub struct SecurebootVerifyCli {
    #[command(flatten)]
    args: secureboot::VerifyArgs,
}

/// How the command line reads, for the parsers that need less than the whole tree.
pub enum Invocation {
    /// `trustlaunch secureboot verify …`: arguments for [`SecurebootVerifyCli`].
    SecurebootVerify(Vec<std::ffi::OsString>),
    /// `trustlaunch secureboot …`: arguments for [`SecurebootCli`].
    Secureboot(Vec<std::ffi::OsString>),
    /// Anything else: [`Cli`] parses it.
    Any,
}

/// Which parser the command line needs, with its arguments (the program name replaced by
/// the command's).
pub fn invocation() -> Invocation {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.next_if(|a| a == "secureboot").is_none() {
        return Invocation::Any;
    }
    if args.next_if(|a| a == "verify").is_some() {
        return Invocation::SecurebootVerify(
            std::iter::once("trustlaunch secureboot verify".into())
                .chain(args)
                .collect(),
        );
    }
    Invocation::Secureboot(
        std::iter::once("trustlaunch secureboot".into())
            .chain(args)
            .collect(),
    )
}

pub fn run_secureboot(cli: SecurebootCli) -> anyhow::Result<ExitCode> {
    secureboot::run(cli.command)
}

pub fn run_secureboot_verify(cli: SecurebootVerifyCli) -> anyhow::Result<ExitCode> {
    secureboot::run(secureboot::SecurebootCommand::Verify(cli.args))
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
        let mut verify = SecurebootVerifyCli::command();
        verify.build();
        let (mut c, mut d) = (Vec::new(), Vec::new());
        helps(whole.find_subcommand("verify").expect("verify"), &mut c);
        helps(&verify, &mut d);
        assert_eq!(c, d);
    }

    /// Usage errors read the same through the verify parser alone as through the tree.
    #[test]
    fn secureboot_verify_errors_read_the_same_alone() {
        for args in [
            &[][..],
            &["shim.efi"],
            &["shim.efi", "--bogus"],
            &["shim.efi", "--vars", "a", "--db", "b"],
            &["--vars"],
        ] {
            let whole = Cli::try_parse_from(
                ["trustlaunch", "secureboot", "verify"]
                    .iter()
                    .chain(args.iter()),
            )
            .expect_err("an error");
            let alone = SecurebootVerifyCli::try_parse_from(
                ["trustlaunch secureboot verify"].iter().chain(args.iter()),
            )
            .expect_err("an error");
            assert_eq!(whole.kind(), alone.kind(), "{args:?}");
            assert_eq!(
                whole.render().to_string(),
                alone.render().to_string(),
                "{args:?}"
            );
        }
    }
}
