//! `trustlaunch bench vtpm` runs end to end: it starts swtpm and our server, drives both
//! through tpm2-tss's swtpm TCTI (a real client library), checks every response (the bench
//! fails on a TPM error or a malformed response) and prints the table.
//!
//! These tests check the harness and the output, not speed: they run short, in a debug build,
//! next to other tests.

use std::process::{Command, Stdio};
use std::time::Duration;
use wait_timeout::ChildExt;

const OPERATIONS: [&str; 3] = ["PCR_Extend", "PCR_Read", "GetRandom"];

struct Row {
    peer: f64,
    ours: f64,
    floor: f64,
    ratio: f64,
    floor_ratio: f64,
}

/// The child's exit status; killed, and the test failed, if it runs past 180 s.
fn finish(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    match child.wait_timeout(Duration::from_secs(180)) {
        Ok(Some(status)) => status,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within 180 s");
        }
    }
}

fn run_bench(extra: &[&str]) -> (String, Vec<Row>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out_path = dir.path().join("bench.out");
    let err_path = dir.path().join("bench.err");
    let mut args = vec!["bench", "vtpm", "--ops", "100", "--rounds", "3"];
    args.extend_from_slice(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_trustlaunch"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("run trustlaunch bench");
    let status = finish(&mut child, "trustlaunch bench vtpm");
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success(),
        "trustlaunch {} failed ({status})\nstdout:\n{out}\nstderr:\n{err}",
        args.join(" ")
    );

    let rows = OPERATIONS
        .iter()
        .map(|op| {
            let line = out
                .lines()
                .find(|l| l.starts_with(op))
                .unwrap_or_else(|| panic!("no {op} row in\n{out}"));
            // "<name…>  14,000 (13,900-14,100)  21,000 (…)  1.50x  14,600 (…)  1.04x": the
            // medians (swtpm, ours, floor) are the numbers right before each "(", the ratios
            // end in "x": ours/swtpm first, floor/swtpm last.
            let words: Vec<&str> = line.split_whitespace().collect();
            let number = |w: &str| -> f64 {
                w.replace(',', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("not a number {w:?} in {line:?}"))
            };
            let medians: Vec<f64> = words
                .windows(2)
                .filter(|w| {
                    w[1].starts_with('(') && w[0].chars().all(|c| c.is_ascii_digit() || c == ',')
                })
                .map(|w| number(w[0]))
                .collect();
            assert_eq!(medians.len(), 3, "three medians in {line:?}");
            let ratios: Vec<f64> = words
                .iter()
                .filter_map(|w| w.strip_suffix('x'))
                .filter(|w| w.parse::<f64>().is_ok())
                .map(number)
                .collect();
            assert_eq!(ratios.len(), 2, "two ratios in {line:?}");
            Row {
                peer: medians[0],
                ours: medians[1],
                floor: medians[2],
                ratio: ratios[0],
                floor_ratio: ratios[1],
            }
        })
        .collect();
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("command: ") && last.contains("bench vtpm --ops 100 --rounds 3"),
        "final line names the command: {last:?}"
    );
    (out, rows)
}

fn check_rows(out: &str, rows: &[Row]) {
    for row in rows {
        assert!(
            row.peer > 0.0 && row.ours > 0.0 && row.floor > 0.0,
            "positive rates\n{out}"
        );
        let want_floor = row.floor / row.peer;
        assert!(
            (row.floor_ratio - want_floor).abs() <= 0.01 + want_floor * 0.01,
            "floor ratio {} vs {want_floor}\n{out}",
            row.floor_ratio
        );
        // The printed ratio is ours/swtpm of the printed medians (to the printed precision).
        let want = row.ours / row.peer;
        assert!(
            (row.ratio - want).abs() <= 0.01 + want * 0.01,
            "ratio {} vs {want}\n{out}",
            row.ratio
        );
    }
}

/// The harness itself, with swtpm on both sides: only tpm2-tss and swtpm involved.
#[test]
fn bench_harness_swtpm_against_itself() {
    let (out, rows) = run_bench(&["--as-ours", "swtpm"]);
    check_rows(&out, &rows);
}

/// The real comparison: swtpm against `trustlaunch vtpm socket`.
#[test]
fn bench_swtpm_against_ours() {
    let (out, rows) = run_bench(&[]);
    check_rows(&out, &rows);
    assert!(out.contains("vtpm socket"), "{out}");
}

/// `trustlaunch bench density` runs end to end, small: a host with a few idle instances and
/// swtpm both started as QEMU starts a vTPM (CMD_SET_DATAFD, CMD_INIT, TPM2_Startup,
/// TPM2_GetRandom; the bench fails on any error answer), and prints every figure. Exit 1
/// only says a target was missed (speed is not tested here).
#[test]
fn bench_density_drives_host_and_swtpm_the_way_qemu_does() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trustlaunch"))
        .args(["bench", "density", "--instances", "5", "--starts", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run trustlaunch bench density");
    let status = finish(&mut child, "trustlaunch bench density");
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "bench density failed ({status})\nstdout:\n{out}\nstderr:\n{err}"
    );
    for row in [
        "per idle instance",
        "one idle swtpm process",
        "host instance, no EK",
        "host instance, EK certificates",
        "swtpm process start",
    ] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(row))
            .unwrap_or_else(|| panic!("no {row:?} row in\n{out}"));
        let value: f64 = line
            .trim_start()
            .trim_start_matches(row)
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no figure in {line:?}"));
        assert!(value > 0.0, "{line}");
    }
}
