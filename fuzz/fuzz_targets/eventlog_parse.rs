//! TCG event logs (crates/eventlog) from untrusted bytes: the parser and everything a
//! verifier runs on a parsed log.
//!
//! Checked for every input: nothing panics; a log that parses writes back to exactly the
//! input; replay, payload decoding, Secure Boot state and boot components run to an answer;
//! a decoded image load (with its device path) encodes back to the event's bytes;
//! a log accepted by the Secure Boot reader also passes `validate`. The input is also tried
//! as an EFI Final Events Table after a built crypto-agile header.
#![no_main]

use eventlog::{AlgorithmId, BootComponents, EventData, EventLog, LogBuilder, SecureBootState};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = EventLog::parse(data) {
        assert_eq!(
            log.to_bytes(),
            data,
            "parsed log does not write back byte for byte"
        );
        let _ = log.replay();
        let uintn64 = log.spec_id().is_some_and(|s| s.uintn_size == 2);
        for (i, e) in log.events.iter().enumerate() {
            // Image loads (device paths included) encode back to the logged bytes.
            if let Ok(EventData::ImageLoad(image)) = log.decode(i) {
                if uintn64 {
                    assert_eq!(
                        image.to_bytes(),
                        e.data,
                        "event {i}: image load re-encodes differently"
                    );
                }
            }
        }
        if SecureBootState::from_log(&log).is_ok() {
            assert!(eventlog::validate(&log).is_ok());
            let _ = BootComponents::from_log(&log);
        }
    }

    let builder = LogBuilder::new(&[AlgorithmId::SHA1, AlgorithmId::SHA256], b"");
    if let Ok(builder) = builder {
        let mut log = builder.into_log();
        let before = log.events.len();
        if let Ok(n) = log.append_final_events(data, 1) {
            assert_eq!(log.events.len(), before + n);
            let reparsed = EventLog::parse(&log.to_bytes()).expect("merged log must parse");
            assert_eq!(reparsed.events.len(), log.events.len());
            let _ = log.replay();
        }
    }
});
