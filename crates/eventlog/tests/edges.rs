//! Hand-made logs for what the corpus does not hold: an algorithm this crate does not know
//! (its digest size comes from the Spec ID event), caps on sizes, extends into PCRs a PC
//! Client TPM does not have, a Spec ID event that lies about digest sizes.

use eventlog::{AlgorithmId, Error, EventLog, Problem};

/// A Spec ID event (PFP 10.4.5.1) listing `algs` as (id, size), as a TCG_PCR_EVENT.
fn header(algs: &[(u16, u16)]) -> Vec<u8> {
    let mut data = b"Spec ID Event03\0".to_vec();
    data.extend_from_slice(&0u32.to_le_bytes());
    data.extend_from_slice(&[0, 2, 0, 2]);
    data.extend_from_slice(&(algs.len() as u32).to_le_bytes());
    for (id, size) in algs {
        data.extend_from_slice(&id.to_le_bytes());
        data.extend_from_slice(&size.to_le_bytes());
    }
    data.push(0);
    let mut out = 0u32.to_le_bytes().to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&[0; 20]);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// A TCG_PCR_EVENT2 with the given digests.
fn event2(pcr: u32, event_type: u32, digests: &[(u16, Vec<u8>)], data: &[u8]) -> Vec<u8> {
    let mut out = pcr.to_le_bytes().to_vec();
    out.extend_from_slice(&event_type.to_le_bytes());
    out.extend_from_slice(&(digests.len() as u32).to_le_bytes());
    for (id, d) in digests {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(d);
    }
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn unknown_algorithm_parses_by_its_spec_id_size_and_is_not_replayed() {
    let mut bytes = header(&[(0x000B, 32), (0x7777, 24)]);
    bytes.extend(event2(
        4,
        0xD,
        &[(0x000B, vec![1; 32]), (0x7777, vec![2; 24])],
        b"x",
    ));
    let log = EventLog::parse(&bytes).unwrap();
    assert_eq!(log.to_bytes(), bytes);
    assert_eq!(
        log.events[1].digest(AlgorithmId(0x7777)),
        Some(&[2u8; 24][..])
    );
    let pcrs = log.replay().unwrap();
    assert_eq!(pcrs.unsupported, vec![AlgorithmId(0x7777)]);
    assert!(pcrs.get(AlgorithmId::SHA256, 4).is_some());
}

#[test]
fn digest_of_an_algorithm_missing_from_the_spec_id_is_an_error_with_its_offset() {
    let mut bytes = header(&[(0x000B, 32)]);
    let at = bytes.len();
    bytes.extend(event2(4, 0xD, &[(0x0004, vec![1; 20])], b"x"));
    let err = EventLog::parse(&bytes).unwrap_err();
    assert_eq!(
        err,
        Error::Parse {
            event: 1,
            offset: at + 12,
            problem: Problem::UnknownAlgorithm(AlgorithmId::SHA1)
        }
    );
}

#[test]
fn spec_id_lying_about_a_known_digest_size_is_refused() {
    let err = EventLog::parse(&header(&[(0x000B, 20)])).unwrap_err();
    assert!(err.to_string().contains("digest size differs"), "{err}");
}

#[test]
fn caps_refuse_before_allocating() {
    let mut bytes = header(&[(0x000B, 32)]);
    let mut e = event2(0, 1, &[(0x000B, vec![0; 32])], b"");
    let n = e.len();
    e[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend(e);
    let err = EventLog::parse(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Parse {
                event: 1,
                problem: Problem::TooLarge {
                    what: "eventSize",
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    // A digest count above the cap.
    let mut bytes = header(&[(0x000B, 32)]);
    let mut e = event2(0, 1, &[], b"");
    e[8..12].copy_from_slice(&1000u32.to_le_bytes());
    bytes.extend(e);
    assert!(matches!(
        EventLog::parse(&bytes).unwrap_err(),
        Error::Parse {
            problem: Problem::TooLarge {
                what: "digests.count",
                ..
            },
            ..
        }
    ));
}

#[test]
fn extend_into_a_pcr_above_23_is_a_replay_error_but_no_action_there_is_fine() {
    let mut bytes = header(&[(0x000B, 32)]);
    bytes.extend(event2(u32::MAX, 3, &[(0x000B, vec![0; 32])], b"Windows"));
    let log = EventLog::parse(&bytes).unwrap();
    assert!(log.replay().unwrap().banks[0].pcrs.is_empty());
    bytes.extend(event2(24, 0xD, &[(0x000B, vec![0; 32])], b""));
    let err = EventLog::parse(&bytes).unwrap().replay().unwrap_err();
    assert!(err.to_string().starts_with("event 2 at offset"), "{err}");
}

/// Found by the eventlog_parse fuzz target: a Final Events Table of all-zero records (no
/// digests) was appended, and the merged log then re-parsed without them (zeros after the
/// last event are padding). An event without digests is now an error wherever it is read.
#[test]
fn fuzz_regression_zero_digest_events_in_a_final_events_table() {
    let mut table = 1u64.to_le_bytes().to_vec();
    table.extend_from_slice(&3u64.to_le_bytes());
    table.extend_from_slice(&[0; 48]);
    let mut log = EventLog::parse(&header(&[(0x0004, 20), (0x000B, 32)])).unwrap();
    let err = log.append_final_events(&table, 1).unwrap_err();
    assert_eq!(
        err,
        Error::Parse {
            event: 1,
            offset: 24,
            problem: Problem::Invalid {
                what: "digests.count",
                detail: "is 0"
            }
        }
    );
    assert_eq!(log.events.len(), 1, "nothing appended on error");
}
