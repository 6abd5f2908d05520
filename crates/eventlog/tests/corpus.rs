//! Every log of testdata/ (real firmware logs; see testdata/README.md): parse, write back
//! byte for byte, and every prefix is an error or a shorter log, never a panic.

use std::path::PathBuf;

use eventlog::EventLog;

pub fn corpus() -> Vec<(String, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "bin") {
                let name = f.strip_prefix(&root).unwrap().display().to_string();
                out.push((name, std::fs::read(&f).unwrap()));
            }
        }
    }
    out.sort();
    assert!(out.len() >= 30, "corpus went missing: {}", out.len());
    out
}

/// Corpus logs this crate refuses, and the words its error must contain.
const REJECTED: &[(&str, &str)] = &[(
    // The Spec ID event's eventSize (37) stops before its 4 bytes of vendorInfo.
    "tpm2-tools/specid-vendordata.bin",
    "event 0 at offset 69: truncated: vendorInfo needs 4 bytes, 0 left",
)];

#[test]
fn every_corpus_log_parses_and_writes_back_byte_for_byte() {
    let mut failures = Vec::new();
    for (name, bytes) in corpus() {
        let expected_error = REJECTED.iter().find(|(n, _)| *n == name).map(|r| r.1);
        match (EventLog::parse(&bytes), expected_error) {
            (Ok(log), None) => {
                if log.to_bytes() != bytes {
                    failures.push(format!("{name}: written bytes differ"));
                }
            }
            (Err(e), Some(words)) if e.to_string().contains(words) => {}
            (Err(e), _) => failures.push(format!("{name}: {e}")),
            (Ok(_), Some(_)) => failures.push(format!("{name}: parsed, expected a rejection")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Every prefix of every corpus log is an error or a shorter log that writes back as that
/// prefix (and replays); a panic fails the test. Quadratic in the log sizes: the crate is
/// built optimised in test builds for it (root Cargo.toml).
#[test]
fn every_prefix_is_an_error_or_a_shorter_log() {
    let mut valid = 0usize;
    let mut prefixes = 0usize;
    for (name, bytes) in corpus() {
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            prefixes += 1;
            if let Ok(log) = EventLog::parse(prefix) {
                valid += 1;
                assert_eq!(
                    log.to_bytes(),
                    prefix,
                    "{name}: prefix {cut} writes back differently"
                );
                assert!(
                    log.replay().is_ok(),
                    "{name}: prefix {cut} parses but does not replay"
                );
            }
        }
    }
    // Only event boundaries (and cuts in zero padding) give logs.
    assert!(
        valid > 2000 && valid < prefixes / 100,
        "{valid} of {prefixes}"
    );
}

/// The PCRs the booted kernel read from swtpm (`.pcrs`, an independent record) equal the
/// replay of the log it was handed.
#[test]
fn ovmf_secure_boot_log_replays_to_the_pcrs_the_guest_read() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/ovmf-debian12");
    let log = EventLog::parse(&std::fs::read(dir.join("secureboot-shim-grub-linux.bin")).unwrap())
        .unwrap();
    let pcrs = log.replay().unwrap();
    let expected = std::fs::read_to_string(dir.join("secureboot-shim-grub-linux.pcrs")).unwrap();
    let mut compared = 0;
    for line in expected.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [_, bank, pcr, value] = f[..] else {
            panic!("bad line {line}")
        };
        let alg = eventlog::AlgorithmId::from_name(bank).unwrap();
        let pcr: u32 = pcr.parse().unwrap();
        let want = hex::decode(value).unwrap();
        match pcrs.get(alg, pcr) {
            Some(got) => {
                assert_eq!(hex::encode(got), hex::encode(&want), "{bank} {pcr}");
                compared += 1;
            }
            // Not extended by the log: the TPM must hold the reset value.
            None => assert!(
                want.iter().all(|&b| b == 0) || want.iter().all(|&b| b == 0xff),
                "{bank} {pcr}: log never extends it but the TPM has {value}"
            ),
        }
    }
    // 11 PCRs (0-9, 14) in each of SHA-1, SHA-256 and SHA-384.
    assert!(compared >= 33, "only {compared} PCRs compared");
}

#[test]
fn every_corpus_event_payload_decodes() {
    let mut failures = Vec::new();
    for (name, bytes) in corpus() {
        let Ok(log) = EventLog::parse(&bytes) else {
            continue;
        };
        for i in 0..log.events.len() {
            if let Err(e) = log.decode(i) {
                failures.push(format!("{name}: {} {e}", log.events[i].event_type));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Corpus logs whose Secure Boot state is refused, and why: each lacks the PCR 0-6
/// separators (fixtures of one or two events, and go-attestation's trimmed sb_cert log).
const NO_SECURE_BOOT_STATE: &[&str] = &[
    "go-attestation/sb_cert_eventlog.bin",
    "go-attestation/short_no_action_eventlog.bin",
    "tpm2-tools/event-uefiaction.bin",
    "tpm2-tools/event-uefiservices.bin",
    "tpm2-tools/event-uefivar.bin",
    "tpm2-tools/event.bin",
];

#[test]
fn secure_boot_state_of_every_corpus_log() {
    use eventlog::{Error, Rejection, SecureBootState};
    let mut enabled = 0;
    for (name, bytes) in corpus() {
        let Ok(log) = EventLog::parse(&bytes) else {
            continue;
        };
        let state = SecureBootState::from_log(&log);
        if NO_SECURE_BOOT_STATE.contains(&name.as_str()) {
            assert_eq!(
                state,
                Err(Error::Rejected(Rejection::MissingSeparator { pcr: 0 })),
                "{name}"
            );
            continue;
        }
        let state = state.unwrap_or_else(|e| panic!("{name}: {e}"));
        for var in ["SecureBoot", "PK", "KEK", "db", "dbx"] {
            assert!(state.variable(var).is_some(), "{name}: no {var}");
        }
        enabled += usize::from(state.enabled);
    }
    assert_eq!(enabled, 12, "logs with Secure Boot on");
}

/// go-attestation's sb_cert log: shim logged its "Shim" certificate with one byte more
/// than it hashed. With the separators the trimmed log lacks put back, it is accepted and
/// the certificate is read as shim's raw DER entry.
#[test]
fn shim_certificate_quirk_is_accepted_and_read_as_der() {
    use eventlog::{AuthorityKind, Digest, Event, EventType, SecureBootState};
    let (_, bytes) = corpus()
        .into_iter()
        .find(|(n, _)| n == "go-attestation/sb_cert_eventlog.bin")
        .unwrap();
    let mut log = EventLog::parse(&bytes).unwrap();
    for pcr in 0..7 {
        let data = vec![0u8; 4];
        let digests = log
            .banks()
            .into_iter()
            .map(|alg| Digest {
                alg,
                bytes: alg.hash(&data).unwrap(),
            })
            .collect();
        log.events.push(Event {
            pcr,
            event_type: EventType::EV_SEPARATOR,
            digests,
            data,
            offset: 0,
        });
    }
    let state = SecureBootState::from_log(&log).unwrap();
    let shim: Vec<_> = state
        .authorities
        .iter()
        .filter_map(|a| match &a.kind {
            AuthorityKind::ShimCertificate(der) => Some(der),
            _ => None,
        })
        .collect();
    assert_eq!(shim.len(), 2);
    assert_eq!(&shim[0][..2], &[0x30, 0x82], "DER SEQUENCE");
}

fn corpus_log(name: &str) -> EventLog {
    let (_, bytes) = corpus().into_iter().find(|(n, _)| n == name).unwrap();
    EventLog::parse(&bytes).unwrap()
}

/// Upstream grub (Ubuntu) and Red Hat's older grub log their strings differently (prefix,
/// NUL hashed or not, PCR 9 tags instead of paths); both logs' digests verify under
/// their form and both boot chains read out.
#[test]
fn boot_components_of_upstream_and_red_hat_grub() {
    use eventlog::{BootComponents, BootRole, Error, Rejection};
    let ubuntu = BootComponents::from_log(&corpus_log(
        "uefi-eventlog/ubuntu_qemu-css-flex14vm4-bootlog.bin",
    ))
    .unwrap();
    assert_eq!(
        ubuntu.kernel_file.unwrap().text,
        "/boot/vmlinuz-5.4.0-81-generic"
    );
    assert_eq!(
        ubuntu.initrd.unwrap().text,
        "/boot/initrd.img-5.4.0-81-generic"
    );
    assert!(ubuntu
        .kernel_cmdline
        .unwrap()
        .text
        .contains("root=UUID=68a3fb48"));
    let roles: Vec<BootRole> = ubuntu.applications.iter().map(|a| a.role).collect();
    assert_eq!(roles, [BootRole::Shim, BootRole::Grub, BootRole::Kernel]);

    let mut rhcos = corpus_log("uefi-eventlog/rhcos-rhcos.bin");
    let chain = BootComponents::from_log(&rhcos).unwrap();
    assert_eq!(chain.grub_commands.len(), 36);
    assert!(chain
        .kernel_cmdline
        .unwrap()
        .text
        .starts_with("(hd0,gpt3)/ostree/rhcos-"));
    assert_eq!(chain.kernel_file.unwrap().text, "grub_linuxefi Kernel");
    assert_eq!(chain.initrd.unwrap().text, "grub_linuxefi Initrd");
    // One byte of a Red Hat style command changed: its digest (of the command and its NUL)
    // no longer matches.
    let i = chain.grub_commands[0].event;
    let last = rhcos.events[i].data.len() - 2;
    rhcos.events[i].data[last] ^= 0x20;
    assert!(matches!(
        BootComponents::from_log(&rhcos),
        Err(Error::Rejected(Rejection::DigestMismatch { event, .. })) if event == i
    ));
}

/// Decoded payloads encode back to the logged bytes: UEFI variables, image loads with
/// their device paths, firmware blobs and handoff tables of every corpus log, byte for byte
/// (bytes some firmware and shim log after a payload are kept as `extra`).
#[test]
fn decoded_payloads_encode_back_to_the_logged_bytes() {
    use eventlog::EventData;
    let mut checked = 0;
    let mut differ = Vec::new();
    for (name, bytes) in corpus() {
        let Ok(log) = EventLog::parse(&bytes) else {
            continue;
        };
        // The 64-bit UINTN encoders apply to logs that say UINTN is 64-bit.
        if log.spec_id().is_some_and(|s| s.uintn_size != 2) {
            continue;
        }
        for (i, e) in log.events.iter().enumerate() {
            let encoded = match log.decode(i) {
                Ok(EventData::Variable(v)) => v.to_bytes(),
                Ok(EventData::ImageLoad(l)) => l.to_bytes(),
                Ok(EventData::FirmwareBlob(b)) => b.to_bytes(),
                Ok(EventData::HandoffTables(h)) => h.to_bytes(),
                _ => continue,
            };
            checked += 1;
            if encoded != e.data {
                differ.push(format!("{name} {i} {}", e.event_type));
            }
        }
    }
    assert!(checked > 400, "{checked}");
    assert!(differ.is_empty(), "{differ:#?}");
}

/// PFP 10.4.1: an S-CRTM version is a CHAR16 string or a GUID; both forms are in the corpus.
#[test]
fn s_crtm_version_as_text_or_guid() {
    use eventlog::EventData;
    let sha1 = corpus_log("tpm2-tools/event-uefi-sha1-log.bin");
    let EventData::Guid(g) = sha1.decode(0).unwrap() else {
        panic!("not a GUID")
    };
    assert_eq!(g.to_string(), "546bfb1e-1d0c-4055-a4ad-4ef4bf17b83a");
    let ideapad = corpus_log("uefi-eventlog/ideapad-ideapad1.bin");
    assert_eq!(
        ideapad.decode(1).unwrap(),
        EventData::Text("AVCN22WW(V1.12)".into())
    );
}
