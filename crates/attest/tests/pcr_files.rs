//! PcrValues parsers: tpm2-tools' serialized "pcrs" file (built here byte by byte from the
//! layout of tpm2-tools' `pcr_fwrite_serialized`: raw little-endian tpm2-tss structs) and the
//! `<bank> <pcr> <hex>` text format. Truncations and arbitrary bytes never panic.

#![allow(clippy::unwrap_used)]

use attest::tpm2_tools_layout as layout;
use attest::{Error, HashAlg, PcrValues};
use proptest::prelude::*;

/// One bank of a selection: (TPM_ALG_ID, sizeofSelect, PCRs).
type Bank = (u16, u8, Vec<u8>);

fn value(bank: u16, pcr: u8) -> Vec<u8> {
    let size = match bank {
        0x0004 => 20,
        0x000B => 32,
        0x000C => 48,
        _ => 64,
    };
    (0..size)
        .map(|i| pcr.wrapping_mul(31).wrapping_add(i))
        .collect()
}

/// tpm2-tools' serialized file for `banks`, with each selected PCR's `value`, split into
/// TPML_DIGESTs of at most 8 digests as PCR_Read returns them.
fn pcrs_file(banks: &[Bank]) -> Vec<u8> {
    let mut o = Vec::new();
    o.extend_from_slice(&(banks.len() as u32).to_le_bytes());
    for slot in 0..16 {
        let mut s = [0u8; 8];
        if let Some((hash, size, pcrs)) = banks.get(slot) {
            s[..2].copy_from_slice(&hash.to_le_bytes());
            s[2] = *size;
            for p in pcrs {
                s[3 + usize::from(*p / 8)] |= 1 << (p % 8);
            }
            s[7] = 0xEE; // padding: whatever was in memory
        }
        o.extend_from_slice(&s);
    }
    assert_eq!(o.len(), 132);
    let digests: Vec<Vec<u8>> = banks
        .iter()
        .flat_map(|(hash, _, pcrs)| pcrs.iter().map(move |p| value(*hash, *p)))
        .collect();
    let lists: Vec<&[Vec<u8>]> = digests.chunks(8).collect();
    o.extend_from_slice(&(lists.len() as u32).to_le_bytes());
    for list in lists {
        o.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for slot in 0..8 {
            let mut d = [0u8; 66];
            if let Some(v) = list.get(slot) {
                d[..2].copy_from_slice(&(v.len() as u16).to_le_bytes());
                d[2..2 + v.len()].copy_from_slice(v);
                if v.len() < 64 {
                    d[65] = 0xDD; // past the digest: ignored
                }
            }
            o.extend_from_slice(&d);
        }
    }
    o
}

fn sha256_0_1_7() -> Vec<u8> {
    pcrs_file(&[(0x000B, 3, vec![0, 1, 7])])
}

#[test]
fn layout_constants_are_tpm2_tss_sizes() {
    assert_eq!(layout::SELECTION_LIST_SIZE, 132);
    assert_eq!(layout::DIGEST_LIST_SIZE, 532);
    // What tpm2_quote -o writes for one list: 132 + 4 + 532 (a real file is 668 bytes).
    assert_eq!(sha256_0_1_7().len(), 668);
}

#[test]
fn one_bank_file_parses() {
    let v = PcrValues::from_tpm2_tools(&sha256_0_1_7()).unwrap();
    assert_eq!(v.len(), 3);
    for p in [0, 1, 7] {
        assert_eq!(v.get(HashAlg::Sha256, p), Some(&value(0x000B, p)[..]));
    }
    assert_eq!(v.get(HashAlg::Sha256, 2), None);
}

#[test]
fn several_banks_and_lists_parse_in_selection_order() {
    // 10 + 2 + 1 values: two TPML_DIGESTs (8 + 5); the sha1 bank comes first.
    let banks = vec![
        (0x0004, 3, vec![0, 23]),
        (0x000B, 3, (0..10).collect()),
        (0x000C, 3, vec![16]),
    ];
    let v = PcrValues::from_tpm2_tools(&pcrs_file(&banks)).unwrap();
    assert_eq!(v.len(), 13);
    assert_eq!(v.get(HashAlg::Sha1, 23), Some(&value(0x0004, 23)[..]));
    assert_eq!(v.get(HashAlg::Sha256, 9), Some(&value(0x000B, 9)[..]));
    assert_eq!(v.get(HashAlg::Sha384, 16), Some(&value(0x000C, 16)[..]));
    // A 4-octet select reaches PCR 31.
    let v = PcrValues::from_tpm2_tools(&pcrs_file(&[(0x000D, 4, vec![31])])).unwrap();
    assert_eq!(v.get(HashAlg::Sha512, 31), Some(&value(0x000D, 31)[..]));
}

#[test]
fn file_errors_are_precise() {
    let good = sha256_0_1_7();
    let malformed = |bytes: &[u8]| match PcrValues::from_tpm2_tools(bytes) {
        Err(Error::Malformed {
            input,
            offset,
            what,
        }) => {
            assert_eq!(input, "tpm2-tools PCR file");
            (offset, what)
        }
        other => panic!("{other:?}"),
    };

    let mut f = good.clone();
    f[0] = 17;
    assert_eq!(
        malformed(&f),
        (0, "TPML_PCR_SELECTION count 17 exceeds 16".into())
    );

    let mut f = good.clone();
    f[6] = 5;
    let (offset, what) = malformed(&f);
    assert_eq!(offset, 6);
    assert!(what.contains("sizeofSelect 5"), "{what}");

    let mut f = good.clone();
    f[4..6].copy_from_slice(&0x0012u16.to_le_bytes());
    assert_eq!(
        PcrValues::from_tpm2_tools(&f).unwrap_err(),
        Error::UnsupportedPcrBank { alg: 0x0012 }
    );

    // The selection asks for a fourth PCR that has no value.
    let mut f = good.clone();
    f[8] |= 0x04;
    assert!(malformed(&f).1.contains("none for sha256 PCR 10"));

    // One value more than selected.
    let mut f = good.clone();
    f[7] = 0x03;
    assert!(malformed(&f)
        .1
        .contains("more PCR values than its selection"));

    // A digest of the wrong size for its bank (at list 0, digest 1: offset 136 + 4 + 66).
    let mut f = good.clone();
    f[206..208].copy_from_slice(&20u16.to_le_bytes());
    let (offset, what) = malformed(&f);
    assert_eq!(offset, 206);
    assert!(what.contains("value of 20 bytes"), "{what}");

    let mut f = good.clone();
    f[206..208].copy_from_slice(&65u16.to_le_bytes());
    assert!(malformed(&f).1.contains("digest size 65 exceeds 64"));

    let mut f = good.clone();
    f[136] = 9;
    assert!(malformed(&f).1.contains("count 9 exceeds 8"));

    let mut f = good.clone();
    f[132] = 33;
    assert!(malformed(&f).1.contains("33 TPML_DIGEST lists"));

    let mut f = good.clone();
    f.push(0);
    assert_eq!(
        malformed(&f),
        (668, "1 trailing bytes after the PCR file".into())
    );
}

#[test]
fn every_truncation_of_a_file_is_an_error() {
    let good = pcrs_file(&[(0x000B, 3, (0..10).collect()), (0x0004, 3, vec![0])]);
    PcrValues::from_tpm2_tools(&good).unwrap();
    for n in 0..good.len() {
        assert!(
            matches!(
                PcrValues::from_tpm2_tools(&good[..n]),
                Err(Error::Malformed { .. })
            ),
            "{n}"
        );
    }
}

#[test]
fn text_format_parses_and_round_trips() {
    let text = format!(
        "# replayed event log\n\nsha256 0 {}\nSHA1 7 0x{}   # comment\n  sha384\t16  {}\n",
        "ab".repeat(32),
        "CD".repeat(20),
        "01".repeat(48)
    );
    let v = PcrValues::from_text(&text).unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(v.get(HashAlg::Sha256, 0), Some(&[0xAB; 32][..]));
    assert_eq!(v.get(HashAlg::Sha1, 7), Some(&[0xCD; 20][..]));
    assert_eq!(v.get(HashAlg::Sha384, 16), Some(&[0x01; 48][..]));
    let printed = v.to_string();
    assert_eq!(
        printed,
        format!(
            "sha1 7 {}\nsha256 0 {}\nsha384 16 {}\n",
            "cd".repeat(20),
            "ab".repeat(32),
            "01".repeat(48)
        )
    );
    assert_eq!(PcrValues::from_text(&printed).unwrap(), v);
    assert!(PcrValues::from_text("").unwrap().is_empty());
}

#[test]
fn text_errors_name_the_line() {
    let err = |text: &str| match PcrValues::from_text(text) {
        Err(Error::PcrLine { line, what }) => (line, what),
        other => panic!("{other:?}"),
    };
    let z = "00".repeat(32);
    let cases: Vec<(String, usize, &str)> = vec![
        (format!("sha256 0 {z}\nsha256 1"), 2, "got 2 fields"),
        (format!("sha256 0 {z} extra"), 1, "got 4 fields"),
        (format!("\n\nsm3_256 0 {z}"), 3, "unknown bank \"sm3_256\""),
        (format!("sha256 256 {z}"), 1, "PCR index \"256\""),
        (format!("sha256 -1 {z}"), 1, "PCR index \"-1\""),
        ("sha256 0 xyz".to_string(), 1, "not hex"),
        ("sha256 0 abc".to_string(), 1, "not hex"),
        (
            format!("sha256 0 {}", "00".repeat(20)),
            1,
            "value of 20 bytes",
        ),
        (format!("sha256 3 {z}\nsha256 3 {z}"), 2, "given twice"),
    ];
    for (text, line, words) in cases {
        let (l, what) = err(&text);
        assert_eq!(l, line, "{text}: {what}");
        assert!(what.contains(words), "{text}: {what}");
    }
}

#[test]
fn insert_checks_the_value_size() {
    let mut v = PcrValues::new();
    assert_eq!(
        v.insert(HashAlg::Sha256, 4, vec![0; 20]).unwrap_err(),
        Error::PcrValueSize {
            bank: HashAlg::Sha256,
            index: 4,
            len: 20,
            expected: 32
        }
    );
    v.insert(HashAlg::Sha1, 4, vec![0; 20]).unwrap();
    assert_eq!(v.iter().count(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let _ = PcrValues::from_tpm2_tools(&bytes);
    }

    #[test]
    fn mutated_files_never_panic(pos in 0usize..668, byte in any::<u8>()) {
        let mut f = sha256_0_1_7();
        f[pos] = byte;
        let _ = PcrValues::from_tpm2_tools(&f);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "(sha(1|256|384|512)? ?[0-9]{0,4} ?(0x)?[0-9a-fA-F]{0,100}\n?){0,5}|.{0,200}") {
        let _ = PcrValues::from_text(&text);
    }

    #[test]
    fn printed_values_parse_back(values in proptest::collection::btree_map((0usize..4, any::<u8>()), any::<[u8; 64]>(), 0..20)) {
        let mut v = PcrValues::new();
        for ((bank, index), bytes) in values {
            let bank = HashAlg::ALL[bank];
            v.insert(bank, index, bytes[..bank.size()].to_vec()).unwrap();
        }
        prop_assert_eq!(PcrValues::from_text(&v.to_string()).unwrap(), v);
    }
}
