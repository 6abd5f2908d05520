//! `trustlaunch eventlog show|replay|components`: read a TCG PC Client event log file and
//! print it, its replayed PCRs, or its verified boot chain. A log that cannot be read, does
//! not parse or is rejected exits 2 with the library's message (event index and offset);
//! never a panic.
//!
//! Machine output (`-o json|yaml`) has stable field names, documented on the view structs
//! below; byte strings are lowercase hex, algorithms and event types are spec names.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use eventlog::{
    AuthorityKind, BootComponents, BootRole, Digest, EventData, EventLog, IplString, LogFormat,
    SecureBootState,
};
use serde::Serialize;

#[derive(Debug, Subcommand)]
pub enum EventlogCommand {
    /// Every event with its digests and decoded data.
    Show(ShowArgs),
    /// The PCR values the log claims: one `<bank> <pcr> <hex>` line per PCR it extends.
    Replay(ReplayArgs),
    /// The verified boot chain: firmware, shim, grub, kernel, initrd, command line, Secure
    /// Boot variables and authorities, with digests (the log is rejected on known attacks).
    Components(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The log (e.g. /sys/kernel/security/tpm0/binary_bios_measurements).
    file: PathBuf,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Yaml)]
    output: Output,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The log.
    file: PathBuf,
    /// An EFI_TCG2_FINAL_EVENTS_TABLE to append (events logged after the log was read).
    #[arg(long)]
    final_events: Option<PathBuf>,
    /// How many of the Final Events Table's first events the log already holds.
    #[arg(long, default_value_t = 0, requires = "final_events")]
    final_events_skip: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Yaml,
    Json,
}

/// Exit status for a log that cannot be read, does not parse or is rejected.
const EXIT_BAD_LOG: u8 = 2;

pub fn run(cmd: EventlogCommand) -> anyhow::Result<ExitCode> {
    let outcome = match cmd {
        EventlogCommand::Show(a) => show(&a),
        EventlogCommand::Replay(a) => replay(&a),
        EventlogCommand::Components(a) => components(&a),
    };
    match outcome {
        Ok(Ok(text)) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(bad_log)) => {
            eprintln!("error: {bad_log}");
            Ok(ExitCode::from(EXIT_BAD_LOG))
        }
        // A file that cannot be read is no more usable than a malformed one.
        Err(io) => {
            eprintln!("error: {io:#}");
            Ok(ExitCode::from(EXIT_BAD_LOG))
        }
    }
}

/// Outer error: I/O; inner: the log is bad, with the file named. Both exit 2.
type Outcome = anyhow::Result<Result<String, String>>;

fn read_log(path: &Path) -> anyhow::Result<Result<EventLog, String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(EventLog::parse(&bytes).map_err(|e| format!("{}: {e}", path.display())))
}

fn render<T: Serialize>(value: &T, output: Output) -> anyhow::Result<String> {
    Ok(match output {
        Output::Json => {
            let mut s = serde_json::to_string_pretty(value)?;
            s.push('\n');
            s
        }
        Output::Yaml => serde_yaml::to_string(value)?,
    })
}

fn replay(a: &ReplayArgs) -> Outcome {
    let mut log = match read_log(&a.file)? {
        Ok(log) => log,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(path) = &a.final_events {
        let table = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if let Err(e) = log.append_final_events(&table, a.final_events_skip) {
            return Ok(Err(format!("{}: {e}", path.display())));
        }
    }
    let pcrs = match log.replay() {
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("{}: {e}", a.file.display()))),
    };
    for alg in &pcrs.unsupported {
        eprintln!("note: bank {alg} not replayed (no implementation of that hash)");
    }
    let mut out = String::new();
    for bank in &pcrs.banks {
        for (pcr, value) in &bank.pcrs {
            out.push_str(&format!("{} {pcr} {}\n", bank.alg, hex(value)));
        }
    }
    Ok(Ok(out))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One digest: `algorithm` (tpm2-tools name or 0x hex), `digest` (hex).
#[derive(Serialize)]
struct DigestView {
    algorithm: String,
    digest: String,
}

fn digests(d: &[Digest]) -> Vec<DigestView> {
    d.iter()
        .map(|d| DigestView {
            algorithm: d.alg.to_string(),
            digest: hex(&d.bytes),
        })
        .collect()
}

/// `show` output.
#[derive(Serialize)]
struct LogView {
    /// `sha1` (TCG_PCR_EVENT records) or `crypto-agile` (TCG_PCR_EVENT2 after a Spec ID).
    format: &'static str,
    /// Banks in the log's order.
    banks: Vec<String>,
    /// Zero bytes after the last event.
    padding: usize,
    events: Vec<EventView>,
}

#[derive(Serialize)]
struct EventView {
    /// Index in the log (0 = first event), as tpm2_eventlog's EventNum.
    index: usize,
    /// Byte offset of the event in the file.
    offset: usize,
    pcr: u32,
    /// Spec name (`EV_SEPARATOR`) or `0x` hex for unknown values.
    #[serde(rename = "type")]
    event_type: String,
    digests: Vec<DigestView>,
    /// The event data, hex.
    data: String,
    /// The decoded data (absent for types kept raw).
    #[serde(skip_serializing_if = "Option::is_none")]
    decoded: Option<serde_json::Value>,
    /// Why the data did not decode, if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    decode_error: Option<String>,
}

fn show(a: &ShowArgs) -> Outcome {
    let log = match read_log(&a.file)? {
        Ok(log) => log,
        Err(e) => return Ok(Err(e)),
    };
    let mut events = Vec::new();
    for (index, e) in log.events.iter().enumerate() {
        let (decoded, decode_error) = match log.decode(index) {
            Ok(d) => (decoded_view(&d), None),
            Err(err) => (None, Some(err.to_string())),
        };
        events.push(EventView {
            index,
            offset: e.offset,
            pcr: e.pcr,
            event_type: e.event_type.to_string(),
            digests: digests(&e.digests),
            data: hex(&e.data),
            decoded,
            decode_error,
        });
    }
    let view = LogView {
        format: match log.format {
            LogFormat::Sha1 => "sha1",
            LogFormat::CryptoAgile(_) => "crypto-agile",
        },
        banks: log.banks().iter().map(ToString::to_string).collect(),
        padding: log.padding.len(),
        events,
    };
    Ok(Ok(render(&view, a.output)?))
}

/// Decoded data: an object whose `kind` names the payload (`spec_id`, `startup_locality`,
/// `no_action`, `separator`, `action`, `variable`, `image_load`, `gpt`, `firmware_blob`,
/// `handoff_tables`, `ipl`, `text`, `guid`). `extra` (variables, image loads): hex of bytes the event
/// holds after the structure (usually empty).
fn decoded_view(d: &EventData) -> Option<serde_json::Value> {
    use serde_json::json;
    Some(match d {
        EventData::SpecId(s) => json!({
            "kind": "spec_id",
            "platform_class": s.platform_class,
            "spec_version": format!("{}.{}", s.spec_version_major, s.spec_version_minor),
            "spec_errata": s.spec_errata,
            "uintn_size": s.uintn_size,
            "algorithms": s.algorithms.iter().map(|a| json!({
                "algorithm": a.algorithm_id.to_string(), "digest_size": a.digest_size
            })).collect::<Vec<_>>(),
            "vendor_info": hex(&s.vendor_info),
        }),
        EventData::StartupLocality(l) => json!({"kind": "startup_locality", "locality": l.0}),
        EventData::NoAction(n) => json!({"kind": "no_action", "signature": n.signature}),
        EventData::Separator(v) => json!({"kind": "separator", "value": v}),
        EventData::Action(s) => json!({"kind": "action", "text": s}),
        EventData::Variable(v) => json!({
            "kind": "variable",
            "vendor_guid": v.vendor_guid.to_string(),
            "name": v.name,
            "data": hex(&v.data),
            "extra": hex(&v.extra),
        }),
        EventData::ImageLoad(i) => json!({
            "kind": "image_load",
            "location_in_memory": i.location_in_memory,
            "length_in_memory": i.length_in_memory,
            "link_time_address": i.link_time_address,
            "device_path": i.device_path.to_string(),
            "extra": hex(&i.extra),
        }),
        EventData::Gpt(g) => json!({
            "kind": "gpt",
            "disk_guid": g.disk_guid.to_string(),
            "partitions": g.partitions.iter().map(|p| json!({
                "type_guid": p.type_guid.to_string(),
                "unique_guid": p.unique_guid.to_string(),
                "starting_lba": p.starting_lba,
                "ending_lba": p.ending_lba,
                "attributes": p.attributes,
                "name": p.name,
            })).collect::<Vec<_>>(),
        }),
        EventData::FirmwareBlob(b) => json!({
            "kind": "firmware_blob",
            "description": b.description,
            "base": b.base,
            "length": b.length,
        }),
        EventData::HandoffTables(h) => json!({
            "kind": "handoff_tables",
            "description": h.description,
            "tables": h.tables.iter().map(|(g, a)| json!({"vendor_guid": g.to_string(), "address": a})).collect::<Vec<_>>(),
        }),
        EventData::Ipl(s) => {
            let (kind, text) = match s {
                IplString::GrubCommand(t) => ("grub_cmd", t),
                IplString::KernelCmdline(t) => ("kernel_cmdline", t),
                IplString::ModuleCmdline(t) => ("module_cmdline", t),
                IplString::ShimVariable(t) => ("shim_variable", t),
                IplString::Text(t) => ("text", t),
            };
            json!({"kind": "ipl", "ipl_kind": kind, "text": text})
        }
        EventData::Text(t) => json!({"kind": "text", "text": t}),
        EventData::Guid(g) => json!({"kind": "guid", "guid": g.to_string()}),
        EventData::Raw => return None,
    })
}

/// `components` output.
#[derive(Serialize)]
struct ComponentsView {
    secure_boot: SecureBootView,
    firmware: Vec<serde_json::Value>,
    /// PCR 4 applications in order, `role` = shim|grub|kernel.
    applications: Vec<serde_json::Value>,
    /// The kernel file grub loaded (PCR 9).
    kernel_file: Option<serde_json::Value>,
    /// The initrd grub loaded (PCR 9).
    initrd: Option<serde_json::Value>,
    /// The kernel command line (PCR 8).
    kernel_cmdline: Option<serde_json::Value>,
    /// grub commands (PCR 8).
    grub_commands: Vec<serde_json::Value>,
}

#[derive(Serialize)]
struct SecureBootView {
    enabled: bool,
    /// SecureBoot, PK, KEK, db, dbx, ...: `event`, `vendor_guid`, `data` (the EFI signature
    /// lists, hex), `digests`.
    variables: serde_json::Map<String, serde_json::Value>,
    /// `event`, `name`, `vendor_guid`, `kind` (signature_data|shim_certificate|variable),
    /// `owner` (signature data), `data` (hex), `digests`.
    authorities: Vec<serde_json::Value>,
}

fn components(a: &ShowArgs) -> Outcome {
    use serde_json::json;
    let log = match read_log(&a.file)? {
        Ok(log) => log,
        Err(e) => return Ok(Err(e)),
    };
    let (state, chain) = match SecureBootState::from_log(&log)
        .and_then(|s| Ok((s, BootComponents::from_log(&log)?)))
    {
        Ok(v) => v,
        Err(e) => return Ok(Err(format!("{}: {e}", a.file.display()))),
    };
    let string = |s: &eventlog::BootString| json!({"event": s.event, "pcr": s.pcr, "text": s.text, "digests": digests(&s.digests)});
    let variables = state
        .variables
        .iter()
        .map(|(name, v)| {
            let value = json!({
                "event": v.event,
                "vendor_guid": v.vendor_guid.to_string(),
                "data": hex(&v.data),
                "digests": digests(&v.digests),
            });
            (name.clone(), value)
        })
        .collect();
    let authorities = state
        .authorities
        .iter()
        .map(|au| {
            let (kind, owner, data) = match &au.kind {
                AuthorityKind::SignatureData { owner, data } => {
                    ("signature_data", Some(owner.to_string()), data)
                }
                AuthorityKind::ShimCertificate(der) => ("shim_certificate", None, der),
                AuthorityKind::Variable(data) => ("variable", None, data),
            };
            json!({
                "event": au.event,
                "name": au.name,
                "vendor_guid": au.vendor_guid.to_string(),
                "kind": kind,
                "owner": owner,
                "data": hex(data),
                "digests": digests(&au.digests),
            })
        })
        .collect();
    let view = ComponentsView {
        secure_boot: SecureBootView {
            enabled: state.enabled,
            variables,
            authorities,
        },
        firmware: chain
            .firmware
            .iter()
            .map(|f| {
                json!({
                    "event": f.event, "pcr": f.pcr, "type": f.event_type.to_string(),
                    "description": f.description, "digests": digests(&f.digests),
                })
            })
            .collect(),
        applications: chain
            .applications
            .iter()
            .map(|app| {
                let role = match app.role {
                    BootRole::Shim => "shim",
                    BootRole::Grub => "grub",
                    BootRole::Kernel => "kernel",
                };
                json!({
                    "event": app.event, "role": role, "device_path": app.device_path,
                    "digests": digests(&app.digests),
                })
            })
            .collect(),
        kernel_file: chain.kernel_file.as_ref().map(string),
        initrd: chain.initrd.as_ref().map(string),
        kernel_cmdline: chain.kernel_cmdline.as_ref().map(string),
        grub_commands: chain.grub_commands.iter().map(string).collect(),
    };
    Ok(Ok(render(&view, a.output)?))
}
