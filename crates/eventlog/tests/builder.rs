//! Building logs as a virtual firmware will: the result parses back to the same events,
//! replays to the PCRs computed here by hand (SHA-256 of old || digest, PCR 0 starting at
//! the Startup Locality), and a Final Events Table merges back to the whole log. Property
//! tests: any built log round-trips; arbitrary bytes never panic the parser.

use eventlog::{AlgorithmId, Digest, EventLog, EventType, LogBuilder};
use proptest::prelude::*;
use sha2::{Digest as _, Sha256};

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().to_vec()
}

#[test]
fn built_log_parses_back_and_replays_from_the_startup_locality() {
    let mut b = LogBuilder::new(&[AlgorithmId::SHA256, AlgorithmId::SHA384], b"tl").unwrap();
    b.startup_locality(3);
    let crtm = b.measure(0, EventType::EV_S_CRTM_VERSION, &[0, 0]);
    let image = b
        .record(
            4,
            EventType::EV_EFI_BOOT_SERVICES_APPLICATION,
            vec![
                Digest {
                    alg: AlgorithmId::SHA256,
                    bytes: vec![0xaa; 32],
                },
                Digest {
                    alg: AlgorithmId::SHA384,
                    bytes: vec![0xbb; 48],
                },
            ],
            vec![0; 32],
        )
        .unwrap();
    b.measure(7, EventType::EV_SEPARATOR, &[0; 4]);
    // Wrong bank order or size is refused, not written.
    assert!(b
        .record(
            4,
            EventType::EV_IPL,
            vec![Digest {
                alg: AlgorithmId::SHA256,
                bytes: vec![0; 32]
            }],
            vec![]
        )
        .is_err());

    let bytes = b.to_bytes();
    let log = EventLog::parse(&bytes).unwrap();
    assert_eq!(&log, b.log());
    assert_eq!(log.to_bytes(), bytes);
    assert_eq!(log.startup_locality().map(|l| l.0), Some(3));
    assert_eq!(log.spec_id().unwrap().vendor_info, b"tl");

    let pcrs = log.replay().unwrap();
    let mut pcr0 = vec![0u8; 32];
    pcr0[31] = 3;
    let crtm_digest = crtm.digest(AlgorithmId::SHA256).unwrap();
    assert_eq!(crtm_digest, sha256(&[&[0, 0]]));
    assert_eq!(
        pcrs.get(AlgorithmId::SHA256, 0).unwrap(),
        sha256(&[&pcr0, crtm_digest])
    );
    assert_eq!(
        pcrs.get(AlgorithmId::SHA256, 4).unwrap(),
        sha256(&[&[0u8; 32], image.digest(AlgorithmId::SHA256).unwrap()])
    );
    assert_eq!(
        pcrs.get(AlgorithmId::SHA256, 7).unwrap(),
        sha256(&[&[0u8; 32], &sha256(&[&[0u8; 4]])])
    );
    assert_eq!(pcrs.get(AlgorithmId::SHA256, 1), None);
}

#[test]
fn final_events_table_completes_the_log_the_os_read() {
    let mut b = LogBuilder::new(&[AlgorithmId::SHA256], b"").unwrap();
    for i in 0..6u8 {
        b.measure(u32::from(i % 3), EventType::EV_EFI_ACTION, &[i]);
    }
    // The OS reads the log after event 5 (index 0 is the Spec ID event) ...
    let read_at = 5;
    let mut os_copy = EventLog::parse(&b.to_bytes()).unwrap();
    os_copy.events.truncate(read_at);
    let os_bytes = os_copy.to_bytes();
    // ... then ExitBootServices is measured.
    b.exit_boot_services();
    let full = EventLog::parse(&b.to_bytes()).unwrap();

    // The table holds everything from the 4th event on: the first 2 are in the OS copy.
    let table = b.final_events_table(read_at - 2);
    let mut merged = EventLog::parse(&os_bytes).unwrap();
    assert_eq!(merged.append_final_events(&table, 2).unwrap(), 4);
    assert_eq!(merged.to_bytes(), full.to_bytes());
    assert_eq!(merged.replay().unwrap(), full.replay().unwrap());

    // A truncated table is an error naming its offset; a SHA-1 log refuses a table.
    let mut again = EventLog::parse(&os_bytes).unwrap();
    let err = again
        .append_final_events(&table[..table.len() - 3], 2)
        .unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    let mut sha1 = EventLog::parse(&[0u8; 32]).unwrap();
    assert!(sha1.append_final_events(&table, 0).is_err());
}

proptest! {
    #[test]
    fn any_built_log_round_trips_and_replays(
        events in prop::collection::vec((0u32..24, any::<u32>(), prop::collection::vec(any::<u8>(), 0..64)), 0..24)
    ) {
        let mut b = LogBuilder::new(&[AlgorithmId::SHA1, AlgorithmId::SHA256], b"").unwrap();
        let mut expected: std::collections::BTreeMap<u32, Vec<u8>> = Default::default();
        for (pcr, t, data) in &events {
            let e = b.measure(*pcr, EventType(*t), data);
            if e.is_extended() {
                let old = expected.entry(*pcr).or_insert_with(|| vec![0; 32]);
                *old = sha256(&[old, &sha256(&[data])]);
            }
        }
        let bytes = b.to_bytes();
        let log = EventLog::parse(&bytes).unwrap();
        prop_assert_eq!(log.to_bytes(), bytes);
        let pcrs = log.replay().unwrap();
        for (pcr, value) in expected {
            prop_assert_eq!(pcrs.get(AlgorithmId::SHA256, pcr).unwrap(), &value[..]);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_parsed_logs_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(log) = EventLog::parse(&bytes) {
            prop_assert_eq!(log.to_bytes(), bytes);
            let _ = log.replay();
            for i in 0..log.events.len() {
                let _ = log.decode(i);
            }
            let _ = eventlog::SecureBootState::from_log(&log);
            let _ = eventlog::BootComponents::from_log(&log);
        }
    }

    /// A crypto-agile header followed by random bytes: reaches the TCG_PCR_EVENT2 reader.
    #[test]
    fn random_events_after_a_real_header_never_panic(tail in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = LogBuilder::new(&[AlgorithmId::SHA256], b"").unwrap().to_bytes();
        bytes.extend_from_slice(&tail);
        if let Ok(log) = EventLog::parse(&bytes) {
            prop_assert_eq!(log.to_bytes(), bytes);
            let _ = log.replay();
            let _ = eventlog::SecureBootState::from_log(&log);
        }
    }

    /// Any bytes that parse as a device path write back identically (nodes that would not
    /// stay raw).
    #[test]
    fn device_paths_write_back_byte_for_byte(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(path) = eventlog::DevicePath::parse_bytes(&bytes) {
            prop_assert_eq!(path.to_bytes(), bytes);
        }
    }

    /// UEFI_VARIABLE_DATA and UEFI_IMAGE_LOAD_EVENT as a firmware would log them decode back
    /// to the same values.
    #[test]
    fn payloads_built_for_firmware_decode_back(
        guid in any::<[u8; 16]>(),
        name in "[A-Za-z0-9]{0,16}",
        data in prop::collection::vec(any::<u8>(), 0..64),
        location in any::<u64>(),
        file in "[A-Za-z0-9\\\\.]{1,24}",
    ) {
        use eventlog::{DevicePath, DevicePathNode, EventData, Guid, ImageLoadEvent, UefiVariableData};
        let var = UefiVariableData { vendor_guid: Guid(guid), name, data, extra: Vec::new() };
        let image = ImageLoadEvent {
            location_in_memory: location,
            length_in_memory: 4096,
            link_time_address: 0,
            device_path: DevicePath {
                nodes: vec![
                    DevicePathNode::Acpi { hid: 0x0a03_41d0, uid: 0 },
                    DevicePathNode::Pci { function: 1, device: 2 },
                    DevicePathNode::FilePath(file),
                    DevicePathNode::End { sub_type: 0xff },
                ],
            },
            extra: Vec::new(),
        };
        let mut b = LogBuilder::new(&[AlgorithmId::SHA256], b"").unwrap();
        b.measure(7, EventType::EV_EFI_VARIABLE_DRIVER_CONFIG, &var.to_bytes());
        b.measure_other(4, EventType::EV_EFI_BOOT_SERVICES_APPLICATION, b"pe image", image.to_bytes());
        let log = EventLog::parse(&b.to_bytes()).unwrap();
        prop_assert_eq!(log.decode(1).unwrap(), EventData::Variable(var));
        prop_assert_eq!(log.decode(2).unwrap(), EventData::ImageLoad(image));
    }
}
