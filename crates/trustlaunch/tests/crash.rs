//! Crash safety of the state directory: `trustlaunch vtpm socket` (with the state
//! encrypted at rest) is killed with SIGKILL at random moments while a client writes
//! 8-byte counters to an NV index, 200 times. Every restart must load the state, and the
//! index must hold the last acknowledged value or the one in flight, never anything else.
//!
//! Raw TPM commands over the swtpm TCP data port keep it fast (no tpm2-tools).

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ITERATIONS: usize = 200;

mod raw_tpm;
use raw_tpm::*;

#[derive(Default, Clone, Copy)]
struct Progress {
    acked: u64,
    in_flight: u64,
    writes: u64,
}

#[test]
fn sigkill_during_nv_writes_never_loses_or_mixes_state() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("state");
    std::fs::create_dir(&dir).expect("mkdir");
    let log = tmp.path().join("vtpm.log");
    let key = tmp.path().join("key");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed:#x}");
    let mut rng = Rng(seed);
    let key_bytes: Vec<u8> = (0..4).flat_map(|_| rng.next().to_be_bytes()).collect();
    std::fs::write(&key, &key_bytes).expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // The index, with a first value.
    let mut server = start(&dir, &key, &log);
    let mut s = server.connect(&dir);
    assert_eq!(rc(&transact(&mut s, &nv_define()).expect("define")), 0);
    assert_eq!(rc(&transact(&mut s, &nv_write(1)).expect("write")), 0);
    drop(s);
    server.kill();

    let mut acked = 1u64;
    let mut in_flight = 1u64;
    let mut next = 2u64;
    let mut total_writes = 0u64;
    let mut in_flight_kept = 0u64;
    for iteration in 0..ITERATIONS {
        let mut server = start(&dir, &key, &log);
        let mut s = server.connect(&dir);
        let rsp = transact(&mut s, &nv_read()).expect("read after restart");
        assert_eq!(
            rc(&rsp),
            0,
            "iteration {iteration}: NV_Read failed after a restart"
        );
        assert_eq!(rsp.len(), 10 + 4 + 2 + 8 + 5, "NV_Read response");
        let value = u64::from_be_bytes(rsp[16..24].try_into().expect("8 bytes"));
        assert!(
            value == acked || value == in_flight,
            "iteration {iteration}: NV index holds {value}, expected {acked} (acknowledged) \
             or {in_flight} (in flight)"
        );
        if value != acked {
            in_flight_kept += 1;
        }
        acked = value;
        in_flight = value;

        // Write counters from another thread; kill the server after a random number of
        // acknowledged writes plus a random delay (mid-write, mid-save or between).
        let progress = Arc::new(Mutex::new(Progress {
            acked,
            in_flight,
            writes: 0,
        }));
        let writer = {
            let progress = Arc::clone(&progress);
            let first = next;
            std::thread::spawn(move || {
                let mut v = first;
                loop {
                    progress.lock().expect("lock").in_flight = v;
                    match transact(&mut s, &nv_write(v)) {
                        Ok(rsp) => {
                            assert_eq!(rc(&rsp), 0, "NV_Write({v}) failed");
                            let mut p = progress.lock().expect("lock");
                            p.acked = v;
                            p.writes += 1;
                        }
                        Err(_) => return v,
                    }
                    v += 1;
                }
            })
        };
        let target = rng.below(6);
        let wait = Instant::now() + Duration::from_secs(20);
        while progress.lock().expect("lock").writes < target {
            assert!(Instant::now() < wait, "writes stalled");
            std::thread::sleep(Duration::from_micros(100));
        }
        std::thread::sleep(Duration::from_micros(rng.below(4000)));
        server.kill();
        let last = writer.join().expect("writer");
        let p = *progress.lock().expect("lock");
        acked = p.acked;
        in_flight = p.in_flight;
        total_writes += p.writes;
        next = last + 1;
    }

    // The state at rest is encrypted, the previous copy too.
    for name in ["tpm2-state.bin", "tpm2-state.bin.prev"] {
        let bytes = std::fs::read(dir.join(name)).expect(name);
        assert_eq!(bytes[12..16], [0, 0, 0, 1], "{name} is encrypted");
    }
    eprintln!(
        "{ITERATIONS} kills, {total_writes} acknowledged NV writes, {in_flight_kept} \
         unacknowledged writes found persisted, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
