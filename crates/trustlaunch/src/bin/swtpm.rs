//! `swtpm`: a drop-in for swtpm under QEMU, libvirt and test harnesses. `swtpm socket ARGS`
//! runs `trustlaunch vtpm socket ARGS` (the same parser and server; the CLI module is
//! compiled into this executable too).

#[allow(dead_code)] // the rest of the `trustlaunch vtpm` CLI, unused by this entry
#[path = "../cli/vtpm.rs"]
mod vtpm_cli;

fn main() -> std::process::ExitCode {
    match vtpm_cli::swtpm_main(std::env::args_os().collect()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("swtpm: error: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}
