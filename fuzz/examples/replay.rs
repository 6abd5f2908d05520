//! Replay `tpm_execute` inputs outside libFuzzer, and derive `tpm_state` seeds from them.
//!
//! cargo run --example replay -- FILE...               one line per command: control byte,
//!                                                     command name, size, response code
//! cargo run --example replay -- --hex FILE...         also the command and response bytes
//! cargo run --example replay -- --restore FILE...     whether each permanent-state blob restores
//! cargo run --example replay -- --states OUT_DIR FILE...
//!                                                     also write, per FILE, the permanent state
//!                                                     after its last command (OUT_DIR/NAME), its
//!                                                     largest (OUT_DIR/NAME.max, most NV data) and
//!                                                     after a Shutdown(STATE) (OUT_DIR/NAME.su)
//!
//! The same harness as the tpm_execute target (fixed entropy, Startup(CLEAR), the control
//! bits), with the same checks, so a crash input reproduces here under a debugger too.

use std::path::{Path, PathBuf};

use tpm::Tpm;
use tpm_fuzz::{
    check_restore, ctl, execute_checked, records, response_code, ENTROPY, SHUTDOWN_STATE,
    STARTUP_CLEAR,
};

fn replay(path: &Path, states: Option<&Path>, hex: bool) -> std::io::Result<()> {
    let data = std::fs::read(path)?;
    println!("== {}", path.display());
    let mut tpm = Tpm::manufacture(&ENTROPY);
    tpm.init();
    execute_checked(&mut tpm, 0, &STARTUP_CLEAR);
    let mut largest = tpm.permanent_state();
    for rec in records(&data).take(64) {
        if rec.control & ctl::INIT != 0 {
            tpm.init();
        }
        let resp = execute_checked(&mut tpm, rec.control & ctl::LOCALITY, rec.command);
        let code = rec
            .command
            .get(6..10)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        let name = code.and_then(tpm::command_name).unwrap_or("?");
        println!(
            "{:02x} {:<24} {:>5} B -> rc {:#05x}",
            rec.control,
            name,
            rec.command.len(),
            response_code(&resp)
        );
        if hex {
            println!("   > {}", to_hex(rec.command));
            println!("   < {}", to_hex(&resp));
        }
        if rec.control & ctl::POWER_CYCLE != 0 {
            tpm = check_restore(&tpm);
        } else if rec.control & ctl::CHECK_RESTORE != 0 {
            check_restore(&tpm);
        }
        if states.is_some() {
            let blob = tpm.permanent_state();
            if blob.len() > largest.len() {
                largest = blob;
            }
        }
    }
    if let Some(dir) = states {
        let name = path.file_name().map(PathBuf::from).unwrap_or_default();
        let with_suffix = |suffix: &str| {
            let mut n = name.clone().into_os_string();
            n.push(suffix);
            dir.join(n)
        };
        std::fs::write(dir.join(&name), tpm.permanent_state())?;
        std::fs::write(with_suffix(".max"), &largest)?;
        if !tpm.is_started() {
            tpm.init();
            execute_checked(&mut tpm, 0, &STARTUP_CLEAR);
        }
        let rc = response_code(&execute_checked(&mut tpm, 0, &SHUTDOWN_STATE));
        if rc == 0 {
            std::fs::write(with_suffix(".su"), tpm.permanent_state())?;
        }
    }
    Ok(())
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() -> std::io::Result<()> {
    let mut args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.first().and_then(|a| a.to_str()) == Some("--restore") {
        for path in &args[1..] {
            let blob = std::fs::read(path)?;
            match Tpm::restore(&blob, &ENTROPY) {
                Ok(_) => println!("{}: restores", path.display()),
                Err(e) => println!("{}: {e}", path.display()),
            }
        }
        return Ok(());
    }
    let hex = args.first().and_then(|a| a.to_str()) == Some("--hex");
    if hex {
        args.remove(0);
    }
    let mut states = None;
    if args.first().and_then(|a| a.to_str()) == Some("--states") && args.len() >= 2 {
        states = Some(args.remove(1));
        args.remove(0);
        std::fs::create_dir_all(states.as_deref().unwrap_or(Path::new(".")))?;
    }
    for path in &args {
        replay(path, states.as_deref(), hex)?;
    }
    Ok(())
}
