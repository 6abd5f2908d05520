//! Log attacks built from a real log (the OVMF Secure Boot of Debian in testdata/): each
//! forged log must be rejected with its named reason and the event it names. The digests
//! an attacker can recompute are recomputed, so only the rule under test can catch it.

use eventlog::{AlgorithmId, Error, Event, EventLog, EventType, Rejection, SecureBootState};

fn ovmf() -> EventLog {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/ovmf-debian12/secureboot-shim-grub-linux.bin"
    );
    EventLog::parse(&std::fs::read(path).unwrap()).unwrap()
}

/// Recompute an event's digests over its data, as an attacker who controls the data can.
fn rehash(e: &mut Event) {
    for d in &mut e.digests {
        d.bytes = d.alg.hash(&e.data).unwrap();
    }
}

/// The forged log goes through bytes, as a verifier would receive it.
fn verdict(log: &EventLog) -> Result<SecureBootState, Error> {
    let reparsed = EventLog::parse(&log.to_bytes()).unwrap();
    SecureBootState::from_log(&reparsed)
}

fn rejection(log: &EventLog) -> Rejection {
    match verdict(log) {
        Err(Error::Rejected(r)) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

const SECURE_BOOT_VAR: usize = 4;
const PK_VAR: usize = 5;
const PCR7_SEPARATOR: usize = 9;

#[test]
fn the_genuine_log_is_accepted() {
    let log = ovmf();
    assert_eq!(
        log.events[SECURE_BOOT_VAR].event_type,
        EventType::EV_EFI_VARIABLE_DRIVER_CONFIG
    );
    assert_eq!(
        log.events[PCR7_SEPARATOR].event_type,
        EventType::EV_SEPARATOR
    );
    assert_eq!(log.events[PCR7_SEPARATOR].pcr, 7);
    let state = verdict(&log).unwrap();
    assert!(state.enabled);
    assert_eq!(state.authorities.len(), 3);
}

#[test]
fn retyped_secure_boot_variable_is_rejected() {
    let mut log = ovmf();
    log.events[SECURE_BOOT_VAR].event_type = EventType::EV_EVENT_TAG;
    assert!(matches!(
        rejection(&log),
        Rejection::RetypedEvent {
            event: SECURE_BOOT_VAR,
            pcr: 7,
            event_type: EventType::EV_EVENT_TAG,
            ..
        }
    ));
    // Retyped to a type that PCR 7 never holds, with unrelated data.
    let mut log = ovmf();
    log.events[PK_VAR].event_type = EventType::EV_POST_CODE;
    log.events[PK_VAR].data = b"harmless".to_vec();
    rehash(&mut log.events[PK_VAR]);
    assert!(matches!(
        rejection(&log),
        Rejection::RetypedEvent {
            event: PK_VAR,
            pcr: 7,
            ..
        }
    ));
}

#[test]
fn extra_separator_is_rejected() {
    let mut log = ovmf();
    let sep = log.events[PCR7_SEPARATOR].clone();
    log.events.insert(PCR7_SEPARATOR, sep);
    assert_eq!(
        rejection(&log),
        Rejection::ExtraSeparator {
            event: PCR7_SEPARATOR + 1,
            pcr: 7
        }
    );
}

#[test]
fn forged_separator_data_is_rejected() {
    let mut log = ovmf();
    log.events[PCR7_SEPARATOR].data = vec![0xff, 0, 0, 0];
    rehash(&mut log.events[PCR7_SEPARATOR]);
    assert_eq!(
        rejection(&log),
        Rejection::InvalidSeparator {
            event: PCR7_SEPARATOR,
            pcr: 7
        }
    );
}

#[test]
fn event_after_separator_is_rejected() {
    let mut log = ovmf();
    // A second "db" configuration event after the separator: a verifier reading the last
    // db would see a database the firmware never enforced.
    let db = log.events[7].clone();
    log.events.insert(PCR7_SEPARATOR + 1, db);
    assert_eq!(
        rejection(&log),
        Rejection::EventAfterSeparator {
            event: PCR7_SEPARATOR + 1,
            event_type: EventType::EV_EFI_VARIABLE_DRIVER_CONFIG
        }
    );
}

#[test]
fn duplicated_secure_boot_variable_is_rejected() {
    let mut log = ovmf();
    let pk = log.events[PK_VAR].clone();
    log.events.insert(PK_VAR + 1, pk);
    assert_eq!(
        rejection(&log),
        Rejection::DuplicateVariable {
            event: PK_VAR + 1,
            name: "PK".into()
        }
    );
}

#[test]
fn data_that_is_not_what_was_measured_is_rejected() {
    let mut log = ovmf();
    // SecureBoot = 0 → 1 without the digest changing (the TPM was extended with 0).
    let last = log.events[SECURE_BOOT_VAR].data.len() - 1;
    log.events[SECURE_BOOT_VAR].data[last] ^= 1;
    assert_eq!(
        rejection(&log),
        Rejection::DigestMismatch {
            event: SECURE_BOOT_VAR,
            alg: AlgorithmId::SHA1
        }
    );
}

#[test]
fn look_alike_variable_guid_is_rejected() {
    let mut log = ovmf();
    log.events[PK_VAR].data[0] ^= 0x80;
    rehash(&mut log.events[PK_VAR]);
    assert!(matches!(
        rejection(&log),
        Rejection::WrongVariableGuid { event: PK_VAR, .. }
    ));
}

#[test]
fn truncated_log_is_rejected() {
    let log = ovmf();
    let bytes = log.to_bytes();
    // Cut at an event boundary before the PCR 0-6 separators: a valid but shorter log.
    let cut = log.events[16].offset;
    let short = EventLog::parse(&bytes[..cut]).unwrap();
    assert_eq!(
        SecureBootState::from_log(&short).unwrap_err(),
        Error::Rejected(Rejection::MissingSeparator { pcr: 0 })
    );
    // Cut inside an event: a parse error naming the event and the offset.
    let err = EventLog::parse(&bytes[..cut + 10]).unwrap_err();
    assert!(matches!(err, Error::Parse { event: 16, .. }), "{err}");
    assert!(err.to_string().starts_with("event 16 at offset"), "{err}");
}

const KERNEL_CMDLINE: usize = 43;

#[test]
fn altered_kernel_command_line_is_rejected() {
    let mut log = ovmf();
    assert_eq!(
        log.events[KERNEL_CMDLINE].data,
        b"kernel_cmdline: /vmlinuz console=ttyS0 panic=-1\0"
    );
    log.events[KERNEL_CMDLINE].data = b"kernel_cmdline: /vmlinuz console=ttyS0 panic=-2\0".to_vec();
    assert_eq!(
        rejection(&log),
        Rejection::DigestMismatch {
            event: KERNEL_CMDLINE,
            alg: AlgorithmId::SHA1
        }
    );
}

#[test]
fn retyped_kernel_command_line_is_rejected() {
    // Retyped, the line would vanish from the components while the replay still matches.
    let mut log = ovmf();
    log.events[KERNEL_CMDLINE].event_type = EventType::EV_EVENT_TAG;
    assert!(matches!(
        rejection(&log),
        Rejection::RetypedEvent {
            event: KERNEL_CMDLINE,
            pcr: 8,
            ..
        }
    ));
}

#[test]
fn measured_event_retyped_as_no_action_is_rejected() {
    // EV_NO_ACTION is not extended: retyped so, dbx would vanish from the reader's view.
    let mut log = ovmf();
    log.events[8].event_type = EventType::EV_NO_ACTION;
    assert!(matches!(
        rejection(&log),
        Rejection::RetypedEvent {
            event: 8,
            pcr: 7,
            event_type: EventType::EV_NO_ACTION,
            ..
        }
    ));
}
