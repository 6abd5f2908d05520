//! The `trustlaunch` command: wires the library crates to the outside world.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let result = match cli::invocation() {
        cli::Invocation::SecurebootVerify(args) => {
            cli::run_secureboot_verify(cli::SecurebootVerifyCli::parse_from(args))
        }
        cli::Invocation::Secureboot(args) => {
            cli::run_secureboot(cli::SecurebootCli::parse_from(args))
        }
        cli::Invocation::Any => cli::run(cli::Cli::parse()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}
