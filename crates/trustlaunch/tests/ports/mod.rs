//! Loopback ports for test servers (shared by the integration tests that start swtpm or
//! `trustlaunch vtpm socket` on TCP).
#![allow(dead_code)]

use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};

/// A number that differs between calls, threads and test processes (no seed to manage:
/// it names temporary files and picks ports, nothing is reproduced from it).
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// Two consecutive loopback ports N, N+1 that were free a moment ago, below Linux's
/// ephemeral range. Another process may take them before the server binds: callers retry
/// with a fresh pair when the server fails to start.
pub fn free_port_pair() -> u16 {
    loop {
        let port = 20_000 + 2 * (random_u64() % 6_000) as u16;
        let a = TcpListener::bind((Ipv4Addr::LOCALHOST, port));
        let b = TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1));
        if a.is_ok() && b.is_ok() {
            return port;
        }
    }
}
