//! A bare swtpm-protocol TCP server around the engine, only for capturing seed corpora from
//! tpm2-tools (fuzz/corpus/capture.sh): the tools then take the paths this engine supports
//! (password sessions, no parameter encryption) instead of the HMAC sessions swtpm offers.
//! Not the project's vTPM host (that is crates/vtpm): no persistence, no options.
//!
//! Usage: cargo run --example serve -- SERVER_PORT CTRL_PORT [bare]
//! The TPM is manufactured from the fuzz targets' fixed entropy and, unless `bare`, started
//! with Startup(CLEAR) as tpm_execute starts it: replaying a capture in tpm_execute then
//! draws the same nonces from the DRBG, so the HMAC sessions of the capture verify.
//! Data port: raw TPM commands and responses. Control port: the swtpm control commands
//! CMD_GET_CAPABILITY (1), CMD_INIT (2, a power cycle through the saved state),
//! CMD_SHUTDOWN (3, exit), CMD_GET_TPMESTABLISHED (4), CMD_SET_LOCALITY (5) and
//! CMD_RESET_TPMESTABLISHED (0x0b).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use tpm::Tpm;
use tpm_fuzz::ENTROPY;

struct Server {
    tpm: Tpm,
    locality: u8,
}

fn u32_at(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn serve_data(mut s: TcpStream, server: Arc<Mutex<Server>>) -> std::io::Result<()> {
    loop {
        let mut cmd = vec![0u8; 10];
        s.read_exact(&mut cmd)?;
        let size = u32_at(&cmd[2..6]) as usize;
        if !(10..=1 << 20).contains(&size) {
            return Ok(());
        }
        cmd.resize(size, 0);
        s.read_exact(&mut cmd[10..])?;
        let resp = {
            let mut sv = server.lock().unwrap_or_else(|e| e.into_inner());
            let locality = sv.locality;
            sv.tpm.execute(locality, &cmd)
        };
        s.write_all(&resp)?;
    }
}

fn serve_ctrl(mut s: TcpStream, server: Arc<Mutex<Server>>) -> std::io::Result<()> {
    loop {
        let mut code = [0u8; 4];
        s.read_exact(&mut code)?;
        let mut sv = server.lock().unwrap_or_else(|e| e.into_inner());
        match u32::from_be_bytes(code) {
            1 => {
                s.write_all(&0u32.to_be_bytes())?;
                // PTM_CAP_INIT, SHUTDOWN, GET_TPMESTABLISHED, SET_LOCALITY, RESET_TPMESTABLISHED
                s.write_all(&(1u32 | 2 | 4 | 8 | 0x200).to_be_bytes())?;
            }
            2 => {
                let mut flags = [0u8; 4];
                s.read_exact(&mut flags)?;
                let blob = sv.tpm.permanent_state();
                sv.tpm = Tpm::restore(&blob, &ENTROPY).expect("own state restores");
                sv.tpm.init();
                s.write_all(&0u32.to_be_bytes())?;
            }
            3 => {
                s.write_all(&0u32.to_be_bytes())?;
                std::process::exit(0);
            }
            4 => {
                s.write_all(&0u32.to_be_bytes())?;
                s.write_all(&[u8::from(sv.tpm.established()), 0, 0, 0])?;
            }
            5 => {
                let mut l = [0u8; 1];
                s.read_exact(&mut l)?;
                sv.locality = l[0];
                s.write_all(&0u32.to_be_bytes())?;
            }
            0x0b => {
                let mut l = [0u8; 1];
                s.read_exact(&mut l)?;
                let ok = sv.tpm.reset_established(l[0]);
                s.write_all(&if ok { 0u32 } else { 0x0907 }.to_be_bytes())?; // TPM_BAD_LOCALITY
            }
            other => {
                eprintln!("serve: unsupported control command {other:#x}");
                s.write_all(&9u32.to_be_bytes())?; // TPM_FAIL
                return Ok(());
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let bare = args.last().map(String::as_str) == Some("bare");
    if bare {
        args.pop();
    }
    let ports: Vec<u16> = args
        .iter()
        .map(|a| {
            a.parse()
                .expect("usage: serve SERVER_PORT CTRL_PORT [bare]")
        })
        .collect();
    let [data_port, ctrl_port] = ports[..] else {
        panic!("usage: serve SERVER_PORT CTRL_PORT");
    };
    let server = Arc::new(Mutex::new(Server {
        tpm: Tpm::manufacture(&ENTROPY),
        locality: 0,
    }));
    {
        let mut sv = server.lock().unwrap_or_else(|e| e.into_inner());
        sv.tpm.init();
        if !bare {
            let resp = sv.tpm.execute(0, &tpm_fuzz::STARTUP_CLEAR);
            assert_eq!(tpm_fuzz::response_code(&resp), 0, "Startup(CLEAR)");
        }
    }
    let ctrl = TcpListener::bind(("127.0.0.1", ctrl_port))?;
    let sv = server.clone();
    std::thread::spawn(move || {
        for s in ctrl.incoming().flatten() {
            let _ = serve_ctrl(s, sv.clone());
        }
    });
    let data = TcpListener::bind(("127.0.0.1", data_port))?;
    for s in data.incoming().flatten() {
        let _ = serve_data(s, server.clone());
    }
    Ok(())
}
