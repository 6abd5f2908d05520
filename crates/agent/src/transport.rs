//! Ways to reach a TPM: the kernel's resource manager (`/dev/tpmrm0`, what a VM's agent
//! uses), or a TPM simulator's command socket (swtpm's or `trustlaunch vtpm socket`'s
//! `--server`, over TCP or a Unix socket: raw TPM 2.0 commands, one response each).

use crate::Transport;
use std::io::{Read, Write};

/// Largest response accepted (TPM2 responses are at most a few KiB).
const MAX_RESPONSE: usize = 64 * 1024;

/// Where the TPM is, as the agent's `--tpm` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmAddress {
    /// A character device: `/dev/tpmrm0` or `device:PATH`.
    Device(String),
    /// `tcp:HOST:PORT`.
    Tcp(String),
    /// `unix:PATH`.
    Unix(String),
}

impl std::str::FromStr for TpmAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(a) = s.strip_prefix("tcp:") {
            if a.rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(format!(
                    "{s:?}: tcp:HOST:PORT needs a host and a port number"
                ));
            }
            Ok(Self::Tcp(a.to_string()))
        } else if let Some(p) = s.strip_prefix("unix:") {
            Ok(Self::Unix(p.to_string()))
        } else if let Some(p) = s.strip_prefix("device:") {
            Ok(Self::Device(p.to_string()))
        } else if s.starts_with('/') {
            Ok(Self::Device(s.to_string()))
        } else {
            Err(format!(
                "{s:?}: use /dev/tpmrm0 (or device:PATH), tcp:HOST:PORT or unix:PATH"
            ))
        }
    }
}

/// A connected TPM.
pub enum Connection {
    Device(std::fs::File),
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl TpmAddress {
    pub fn connect(&self) -> Result<Connection, String> {
        let ctx = |e: std::io::Error| format!("{self}: {e}");
        Ok(match self {
            Self::Device(p) => Connection::Device(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(p)
                    .map_err(ctx)?,
            ),
            Self::Tcp(a) => {
                let s = std::net::TcpStream::connect(a).map_err(ctx)?;
                s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
                    .map_err(ctx)?;
                Connection::Tcp(s)
            }
            Self::Unix(p) => {
                let s = std::os::unix::net::UnixStream::connect(p).map_err(ctx)?;
                s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
                    .map_err(ctx)?;
                Connection::Unix(s)
            }
        })
    }
}

impl std::fmt::Display for TpmAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Device(p) => write!(f, "{p}"),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
            Self::Unix(p) => write!(f, "unix:{p}"),
        }
    }
}

/// One response from a stream: the 10-byte header, then the rest its size field gives.
fn read_response(s: &mut impl Read) -> Result<Vec<u8>, String> {
    let mut header = [0u8; 10];
    s.read_exact(&mut header).map_err(|e| e.to_string())?;
    let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
    if !(10..=MAX_RESPONSE).contains(&size) {
        return Err(format!("response size {size} out of range"));
    }
    let mut out = header.to_vec();
    out.resize(size, 0);
    s.read_exact(&mut out[10..]).map_err(|e| e.to_string())?;
    Ok(out)
}

impl Transport for Connection {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            // The character device takes a whole command per write and returns a whole
            // response per read.
            Self::Device(f) => {
                f.write_all(command).map_err(|e| e.to_string())?;
                let mut buf = vec![0u8; MAX_RESPONSE];
                let n = f.read(&mut buf).map_err(|e| e.to_string())?;
                buf.truncate(n);
                if n < 10 {
                    return Err(format!("short response ({n} bytes)"));
                }
                Ok(buf)
            }
            Self::Tcp(s) => {
                s.write_all(command).map_err(|e| e.to_string())?;
                read_response(s)
            }
            Self::Unix(s) => {
                s.write_all(command).map_err(|e| e.to_string())?;
                read_response(s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_say_the_rule() {
        assert_eq!(
            "/dev/tpmrm0".parse::<TpmAddress>(),
            Ok(TpmAddress::Device("/dev/tpmrm0".into()))
        );
        assert_eq!(
            "tcp:127.0.0.1:2321".parse::<TpmAddress>(),
            Ok(TpmAddress::Tcp("127.0.0.1:2321".into()))
        );
        assert_eq!(
            "unix:/run/t.sock".parse::<TpmAddress>(),
            Ok(TpmAddress::Unix("/run/t.sock".into()))
        );
        assert!("tcp:host"
            .parse::<TpmAddress>()
            .unwrap_err()
            .contains("HOST:PORT"));
        assert!("tpm0"
            .parse::<TpmAddress>()
            .unwrap_err()
            .contains("tcp:HOST:PORT"));
    }
}
