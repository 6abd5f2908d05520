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

#[cfg(test)]
mod tests {
    /// build.rs links the unwinder statically: a panic still unwinds to catch_unwind
    /// (without an unwinder the process aborts) and backtraces still walk the stack.
    #[test]
    fn panics_unwind_and_backtraces_walk_with_the_static_unwinder() {
        let caught = std::panic::catch_unwind(|| {
            let v: Vec<u8> = Vec::new();
            std::hint::black_box(&v)[1]
        });
        assert!(caught.is_err());
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        assert!(
            trace.contains("panics_unwind_and_backtraces_walk_with_the_static_unwinder"),
            "{trace}"
        );
    }
}
