//! `swtpm_setup`: a drop-in for swtpm_setup (TPM 2.0), as libvirt runs it before starting
//! swtpm: `trustlaunch vtpm setup` with the same arguments (the same parser; the CLI
//! module is compiled into this executable too).

#[allow(dead_code)] // the rest of the `trustlaunch vtpm` CLI, unused by this entry
#[path = "../cli/vtpm.rs"]
mod vtpm_cli;

fn main() -> std::process::ExitCode {
    match vtpm_cli::swtpm_setup_main(std::env::args_os().collect()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("swtpm_setup: error: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}
