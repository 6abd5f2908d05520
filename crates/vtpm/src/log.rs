//! A small line logger with swtpm's `--log` semantics: a sink (stderr, a file, or
//! nothing), a level (0 = silent, 1 = errors and warnings, 2 = lifecycle and
//! connections, 3 = every command, 4 = hex dumps) and an optional line prefix.

use std::fmt::Display;
use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// Log levels.
pub mod level {
    pub const ERROR: u32 = 1;
    pub const INFO: u32 = 2;
    pub const DEBUG: u32 = 3;
    pub const TRACE: u32 = 4;
}

enum Sink {
    None,
    Stderr,
    File(File),
}

struct Inner {
    level: u32,
    prefix: String,
    sink: Mutex<Sink>,
}

/// A cloneable handle to one log.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("level", &self.inner.level)
            .finish_non_exhaustive()
    }
}

impl Log {
    fn new(sink: Sink, level: u32, prefix: Option<String>) -> Log {
        Log {
            inner: Arc::new(Inner {
                level,
                prefix: prefix.unwrap_or_default(),
                sink: Mutex::new(sink),
            }),
        }
    }
    /// Log to standard error.
    pub fn stderr(level: u32, prefix: Option<String>) -> Log {
        Log::new(Sink::Stderr, level, prefix)
    }
    /// Log to an open file (appending writes).
    pub fn file(file: File, level: u32, prefix: Option<String>) -> Log {
        Log::new(Sink::File(file), level, prefix)
    }
    /// Discard everything.
    pub fn none() -> Log {
        Log::new(Sink::None, 0, None)
    }

    /// Whether messages at `lvl` are written.
    pub fn enabled(&self, lvl: u32) -> bool {
        lvl <= self.inner.level
    }

    /// Write one line at `lvl`.
    pub fn write(&self, lvl: u32, msg: impl Display) {
        if !self.enabled(lvl) {
            return;
        }
        let line = format!("{}{}\n", self.inner.prefix, msg);
        let mut sink = self.inner.sink.lock().unwrap_or_else(|e| e.into_inner());
        // A log that cannot be written must not take the TPM down: errors are dropped.
        let _ = match &mut *sink {
            Sink::None => Ok(()),
            Sink::Stderr => io::stderr().write_all(line.as_bytes()),
            Sink::File(f) => f.write_all(line.as_bytes()),
        };
    }

    pub fn error(&self, msg: impl Display) {
        self.write(level::ERROR, format_args!("error: {msg}"));
    }
    pub fn warn(&self, msg: impl Display) {
        self.write(level::ERROR, format_args!("warning: {msg}"));
    }
    pub fn info(&self, msg: impl Display) {
        self.write(level::INFO, msg);
    }
    pub fn debug(&self, msg: impl Display) {
        self.write(level::DEBUG, msg);
    }
    /// Hex dump of `bytes` at trace level.
    pub fn trace_bytes(&self, what: &str, bytes: &[u8]) {
        if self.enabled(level::TRACE) {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            self.write(
                level::TRACE,
                format_args!("{what} ({} bytes): {hex}", bytes.len()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let f = File::create(&path).expect("create");
        let log = Log::file(f, 2, Some("vtpm: ".into()));
        log.error("bad");
        log.info("hello");
        log.debug("hidden");
        log.trace_bytes("cmd", &[1, 2]);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "vtpm: error: bad\nvtpm: hello\n");
        Log::none().error("nothing happens");
    }
}
