//! `trustlaunch bench keys`: the second vTPM issue's figures, against swtpm in one run and
//! through the same tpm2-tss client: Quote with an ECC P-256 key (ops/s), the first RSA-2048
//! CreatePrimary on a fresh TPM (ms), and CreatePrimary repeated with the same template.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use super::bench::{
    command, figure, median, response_code, startup, tcti, version_line, Server, RESPONSE_BUFFER,
    TPM_RC_SUCCESS, TPM_RS_PW, TPM_ST_NO_SESSIONS, TPM_ST_SESSIONS,
};

#[derive(Debug, Args)]
pub struct KeysBench {
    /// Quotes per server per round.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    quotes: u32,
    /// Repeated CreatePrimary calls per server per round.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    primaries: u32,
    /// First CreatePrimary measurements, each under a new storage seed (TPM2_Clear).
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..))]
    firsts: u32,
    /// Rounds; the figures are medians over rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// The swtpm executable to compare against.
    #[arg(long, default_value = "swtpm")]
    swtpm: PathBuf,
    /// The tpm2-tss TCTI loader library to load.
    #[arg(long, default_value = "libtss2-tctildr.so.0", hide = true)]
    tctildr: String,
}

const TPM_CC_CREATE_PRIMARY: u32 = 0x131;
const TPM_CC_FLUSH_CONTEXT: u32 = 0x165;
const TPM_CC_QUOTE: u32 = 0x158;
const TPM_RH_OWNER: u32 = 0x4000_0001;
const TPM_RH_LOCKOUT: u32 = 0x4000_000A;
const TPM_CC_CLEAR: u32 = 0x126;

/// tpm2-tools' default RSA-2048 storage primary (restricted decrypt, AES-128-CFB).
const RSA_STORAGE_TEMPLATE: &str = "0001000b00030072000000060080004300100800000000000000";
/// An ECC P-256 restricted signing key (an AK): ECDSA with SHA-256.
const ECC_AK_TEMPLATE: &str = "0023000b00050072000000100018000b0003001000000000";

fn create_primary_command(template: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(TPM_RH_OWNER.to_be_bytes());
    body.extend(9u32.to_be_bytes());
    body.extend(TPM_RS_PW.to_be_bytes());
    body.extend([0, 0, 0, 0, 0]); // empty nonce, attributes, empty password
    body.extend([0, 4, 0, 0, 0, 0]); // TPM2B_SENSITIVE_CREATE: no auth, no data
    body.extend((template.len() as u16).to_be_bytes());
    body.extend(template);
    body.extend([0, 0, 0, 0, 0, 0]); // outsideInfo, creationPCR
    command(TPM_ST_SESSIONS, TPM_CC_CREATE_PRIMARY, &body)
}

fn template(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .filter_map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

/// One command, repeated while the TPM asks for it (TPM_RC_RETRY, YIELDED, TESTING), as
/// tpm2-tss's ESYS does: swtpm answers the first use of an authorization with TPM_RC_RETRY.
fn exchange_ok(t: &mut tcti::Tcti, cmd: &[u8], response: &mut [u8]) -> Result<usize> {
    for _ in 0..10 {
        let n = t.exchange(cmd, response)?;
        match response_code(&response[..n])? {
            TPM_RC_SUCCESS => return Ok(n),
            0x922 | 0x908 | 0x90A => continue,
            rc => bail!("response code 0x{rc:x}"),
        }
    }
    bail!("the TPM kept asking to retry")
}

/// CreatePrimary, returning the object handle (and flushing nothing).
fn create(t: &mut tcti::Tcti, cmd: &[u8], response: &mut [u8]) -> Result<u32> {
    let n = exchange_ok(t, cmd, response)?;
    let r = response.get(..n).context("short response")?;
    Ok(u32::from_be_bytes(
        r.get(10..14).context("no handle")?.try_into()?,
    ))
}

fn flush(t: &mut tcti::Tcti, h: u32, response: &mut [u8]) -> Result<()> {
    exchange_ok(
        t,
        &command(TPM_ST_NO_SESSIONS, TPM_CC_FLUSH_CONTEXT, &h.to_be_bytes()),
        response,
    )?;
    Ok(())
}

fn quote_command(key: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(key.to_be_bytes());
    body.extend(9u32.to_be_bytes());
    body.extend(TPM_RS_PW.to_be_bytes());
    body.extend([0, 0, 0, 0, 0]);
    body.extend(16u16.to_be_bytes());
    body.extend([0xA5u8; 16]); // qualifyingData: a 16-byte nonce
    body.extend([0x00, 0x10]); // inScheme: NULL (the key's ECDSA/SHA-256)
    body.extend(1u32.to_be_bytes());
    body.extend([0x00, 0x0B, 3, 0xFF, 0, 0]); // sha256: PCRs 0-7
    command(TPM_ST_SESSIONS, TPM_CC_QUOTE, &body)
}

pub fn bench_keys(args: &KeysBench) -> Result<ExitCode> {
    let ours_program = std::env::current_exe().context("locating the trustlaunch executable")?;
    let swtpm_version = version_line(&args.swtpm);
    let mut peer = Server::start("swtpm", &args.swtpm, &[])?;
    let mut ours = Server::start("trustlaunch", &ours_program, &["vtpm"])?;
    let mut clients = Vec::new();
    for server in [&peer, &ours] {
        let conf = format!("swtpm:host=127.0.0.1,port={}", server.port);
        let mut t = tcti::Tcti::connect(&args.tctildr, &conf)
            .with_context(|| format!("connecting to {} through tpm2-tss", server.label))?;
        startup(&mut t).with_context(|| format!("TPM2_Startup on {}", server.label))?;
        clients.push(t);
    }
    let labels = [peer.label, ours.label];
    let mut response = vec![0u8; RESPONSE_BUFFER];
    let rsa = create_primary_command(&template(RSA_STORAGE_TEMPLATE));
    let ecc = create_primary_command(&template(ECC_AK_TEMPLATE));

    // The first RSA-2048 CreatePrimary under a fresh storage seed (TPM2_Clear makes a new
    // one): prime generation from the seed, no cache. Its time varies with the seed (how far
    // the prime search goes), so it is measured `firsts` times and the median taken.
    let clear = {
        let mut body = Vec::new();
        body.extend(TPM_RH_LOCKOUT.to_be_bytes());
        body.extend(9u32.to_be_bytes());
        body.extend(TPM_RS_PW.to_be_bytes());
        body.extend([0, 0, 0, 0, 0]);
        command(TPM_ST_SESSIONS, TPM_CC_CLEAR, &body)
    };
    let mut first = [Vec::new(), Vec::new()];
    for i in 0..args.firsts {
        for s in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            let t = &mut clients[s];
            exchange_ok(t, &clear, &mut response)
                .with_context(|| format!("TPM2_Clear on {}", labels[s]))?;
            let start = Instant::now();
            let h = create(t, &rsa, &mut response)
                .with_context(|| format!("first CreatePrimary on {}", labels[s]))?;
            first[s].push(start.elapsed().as_secs_f64() * 1000.0);
            flush(t, h, &mut response)?;
        }
    }
    // Repeated CreatePrimary with the same template, and quotes with an ECC AK.
    let mut repeated = [Vec::new(), Vec::new()];
    let mut quotes = [Vec::new(), Vec::new()];
    let mut aks = [0u32; 2];
    for (s, t) in clients.iter_mut().enumerate() {
        aks[s] =
            create(t, &ecc, &mut response).with_context(|| format!("ECC AK on {}", labels[s]))?;
    }
    for round in 0..args.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for s in order {
            let t = &mut clients[s];
            let start = Instant::now();
            for _ in 0..args.primaries {
                let h = create(t, &rsa, &mut response)?;
                flush(t, h, &mut response)?;
            }
            repeated[s].push(f64::from(args.primaries) / start.elapsed().as_secs_f64().max(1e-9));
            let q = quote_command(aks[s]);
            let start = Instant::now();
            for _ in 0..args.quotes {
                exchange_ok(t, &q, &mut response)
                    .with_context(|| format!("Quote on {}", labels[s]))?;
            }
            quotes[s].push(f64::from(args.quotes) / start.elapsed().as_secs_f64().max(1e-9));
        }
    }
    drop(clients);
    peer.check_alive()?;
    ours.check_alive()?;

    println!(
        "vTPM key operations through tpm2-tss's swtpm TCTI, medians over {} rounds",
        args.rounds
    );
    println!("  swtpm:       {} ({swtpm_version})", args.swtpm.display());
    println!(
        "  trustlaunch: {} vtpm socket{}",
        ours_program.display(),
        if cfg!(debug_assertions) {
            " (DEBUG build: use --release)"
        } else {
            ""
        }
    );
    println!();
    println!(
        "{:<46} {:>22} {:>22} {:>10}",
        "operation", "swtpm", "trustlaunch", "ours/swtpm"
    );
    let q = median(&quotes[1]) / median(&quotes[0]);
    let r = median(&repeated[1]) / median(&repeated[0]);
    let f = median(&first[1]) / median(&first[0]).max(1e-9);
    println!(
        "{:<46} {:>22} {:>22} {:>9.2}x",
        "Quote, ECC P-256 AK, 8 PCRs (ops/s)",
        figure(&quotes[0]),
        figure(&quotes[1]),
        q
    );
    println!(
        "{:<46} {:>22} {:>22} {:>9.2}x",
        "CreatePrimary RSA-2048, same template (ops/s)",
        figure(&repeated[0]),
        figure(&repeated[1]),
        r
    );
    println!(
        "{:<46} {:>22} {:>22} {:>9.2}x",
        format!(
            "first CreatePrimary RSA-2048, new seed (ms, n={})",
            args.firsts
        ),
        figure(&first[0]),
        figure(&first[1]),
        f
    );
    println!();
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("target Quote >= 3x swtpm: {}", verdict(q >= 3.0));
    println!(
        "target repeated CreatePrimary >= 20x swtpm: {}",
        verdict(r >= 20.0)
    );
    println!(
        "target first CreatePrimary <= 2x swtpm's time: {}",
        verdict(f <= 2.0)
    );
    let argv: Vec<String> = std::env::args().collect();
    println!("command: {}", argv.join(" "));
    Ok(ExitCode::SUCCESS)
}
