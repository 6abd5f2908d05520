//! The `trustlaunch` command: wires the library crates to the outside world.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let result = match cli::secureboot_args() {
        Some(args) => cli::run_secureboot(cli::SecurebootCli::parse_from(args)),
        None => cli::run(cli::Cli::parse()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}
