//! Parsers for swtpm's comma-separated `key=value` option values (`--server`, `--ctrl`,
//! `--tpmstate`, `--flags`, `--log`, `--pid`, `--seccomp`, `--locality`) into typed
//! configuration. Errors name the option and the rule that was broken, e.g.
//! `--server: unknown key 'prot'`.

use crate::instance::StartupType;
use crate::net::Endpoint;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

/// A rejected option value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {message}")]
pub struct OptionError {
    /// The option, e.g. `--server`.
    pub option: &'static str,
    /// What is wrong.
    pub message: String,
}

fn err(option: &'static str, message: impl Into<String>) -> OptionError {
    OptionError {
        option,
        message: message.into(),
    }
}

/// How a key takes its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `key=value`, value required.
    Value,
    /// `key` alone or `key=true|false|1|0`.
    Bool,
}

/// The items of one option value, in order, checked against the allowed keys.
struct Items<'a> {
    option: &'static str,
    items: Vec<(&'a str, Option<&'a str>)>,
}

impl<'a> Items<'a> {
    fn parse(
        option: &'static str,
        s: &'a str,
        keys: &[(&str, Kind)],
    ) -> Result<Items<'a>, OptionError> {
        if s.is_empty() {
            return Err(err(option, "empty value"));
        }
        let mut items: Vec<(&'a str, Option<&'a str>)> = Vec::new();
        for tok in s.split(',') {
            if tok.is_empty() {
                return Err(err(option, format!("empty item in '{s}'")));
            }
            let (key, value) = match tok.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (tok, None),
            };
            let Some(&(_, kind)) = keys.iter().find(|(k, _)| *k == key) else {
                let known: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
                return Err(err(
                    option,
                    format!("unknown key '{key}' (known keys: {})", known.join(", ")),
                ));
            };
            if items.iter().any(|(k, _)| *k == key) {
                return Err(err(option, format!("key '{key}' given more than once")));
            }
            match (kind, value) {
                (Kind::Value, None) => {
                    return Err(err(
                        option,
                        format!("key '{key}' needs a value ({key}=...)"),
                    ))
                }
                (Kind::Value, Some("")) => {
                    return Err(err(option, format!("key '{key}' has an empty value")))
                }
                _ => {}
            }
            items.push((key, value));
        }
        Ok(Items { option, items })
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.items
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| *v)
    }

    fn has(&self, key: &str) -> bool {
        self.items.iter().any(|(k, _)| *k == key)
    }

    fn flag(&self, key: &str) -> Result<bool, OptionError> {
        match self.items.iter().find(|(k, _)| *k == key) {
            None => Ok(false),
            Some((_, None)) => Ok(true),
            Some((_, Some(v))) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(err(
                    self.option,
                    format!("key '{key}' takes true or false, not '{v}'"),
                )),
            },
        }
    }

    fn reject(&self, key: &str, why: &str) -> Result<(), OptionError> {
        if self.has(key) {
            return Err(err(
                self.option,
                format!("key '{key}' is not supported: {why}"),
            ));
        }
        Ok(())
    }

    fn port(&self) -> Result<Option<u16>, OptionError> {
        self.get("port")
            .map(|v| {
                v.parse::<u16>().map_err(|_| {
                    err(
                        self.option,
                        format!("port '{v}' is not a number in 0-65535"),
                    )
                })
            })
            .transpose()
    }

    fn mode(&self) -> Result<Option<u32>, OptionError> {
        self.get("mode")
            .map(|v| {
                let digits = v
                    .strip_prefix('0')
                    .filter(|d| !d.is_empty())
                    .ok_or_else(|| {
                        err(
                            self.option,
                            format!(
                                "mode '{v}' must be an octal number starting with 0, e.g. 0640"
                            ),
                        )
                    })?;
                match u32::from_str_radix(digits, 8) {
                    Ok(m) if m <= 0o777 => Ok(m),
                    _ => Err(err(
                        self.option,
                        format!("mode '{v}' is not an octal mode in 0-0777"),
                    )),
                }
            })
            .transpose()
    }

    fn id(&self, key: &str) -> Result<Option<u32>, OptionError> {
        self.get(key)
            .map(|v| {
                v.parse::<u32>()
                    .map_err(|_| err(self.option, format!("{key} '{v}' must be a numeric id")))
            })
            .transpose()
    }

    fn fd(&self) -> Result<Option<i32>, OptionError> {
        self.get("fd")
            .map(|v| match v.parse::<i32>() {
                Ok(fd) if fd >= 3 => Ok(fd),
                Ok(_) => Err(err(
                    self.option,
                    format!("fd {v} is not allowed: 0, 1 and 2 are stdio"),
                )),
                Err(_) => Err(err(
                    self.option,
                    format!("fd '{v}' is not a file descriptor number"),
                )),
            })
            .transpose()
    }
}

fn parse_bindaddr(option: &'static str, v: &str) -> Result<IpAddr, OptionError> {
    let trimmed = v
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(v);
    trimmed.parse::<IpAddr>().map_err(|_| {
        err(
            option,
            format!("bindaddr '{v}' is not an IPv4 or IPv6 address"),
        )
    })
}

/// swtpm's defaults bind TCP sockets to the loopback address.
const DEFAULT_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Parse the endpoint part shared by `--server` and `--ctrl`.
fn endpoint(items: &Items<'_>, ty: &str) -> Result<Endpoint, OptionError> {
    let option = items.option;
    items.reject("ifname", "link-local IPv6 binding is not implemented")?;
    items.reject("fd", "socket file descriptors cannot be passed in yet")?;
    items.reject(
        "clientfd",
        "socket file descriptors cannot be passed in yet",
    )?;
    match ty {
        "tcp" => {
            for k in ["path", "mode", "uid", "gid"] {
                if items.has(k) {
                    return Err(err(
                        option,
                        format!("key '{k}' is only valid with type=unixio"),
                    ));
                }
            }
            let port = items
                .port()?
                .ok_or_else(|| err(option, "type=tcp needs port=N"))?;
            let addr = match items.get("bindaddr") {
                Some(v) => parse_bindaddr(option, v)?,
                None => DEFAULT_BIND,
            };
            Ok(Endpoint::Tcp { addr, port })
        }
        "unixio" => {
            for k in ["port", "bindaddr"] {
                if items.has(k) {
                    return Err(err(
                        option,
                        format!("key '{k}' is only valid with type=tcp"),
                    ));
                }
            }
            let path = items
                .get("path")
                .ok_or_else(|| err(option, "type=unixio needs path=P"))?;
            Ok(Endpoint::Unix {
                path: PathBuf::from(path),
                mode: items.mode()?,
                uid: items.id("uid")?,
                gid: items.id("gid")?,
            })
        }
        other => Err(err(
            option,
            format!("type '{other}' is not one of tcp, unixio"),
        )),
    }
}

const SOCKET_KEYS: [(&str, Kind); 9] = [
    ("type", Kind::Value),
    ("port", Kind::Value),
    ("bindaddr", Kind::Value),
    ("ifname", Kind::Value),
    ("path", Kind::Value),
    ("mode", Kind::Value),
    ("uid", Kind::Value),
    ("gid", Kind::Value),
    ("fd", Kind::Value),
];

/// `--server [type=tcp][,port=N][,bindaddr=A][,disconnect] | type=unixio,path=P[,mode=0...][,uid=U][,gid=G]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOption {
    pub endpoint: Endpoint,
    /// Close the data connection after each response.
    pub disconnect: bool,
}

/// Parse `--server`.
pub fn parse_server(s: &str) -> Result<ServerOption, OptionError> {
    let mut keys = SOCKET_KEYS.to_vec();
    keys.push(("disconnect", Kind::Bool));
    let items = Items::parse("--server", s, &keys)?;
    let ty = items.get("type").unwrap_or("tcp");
    let endpoint = endpoint(&items, ty)?;
    let disconnect = items.flag("disconnect")?;
    Ok(ServerOption {
        endpoint,
        disconnect,
    })
}

/// `--ctrl type=tcp,port=N[,bindaddr=A] | type=unixio,path=P[,mode=0...][,uid=U][,gid=G]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtrlOption {
    pub endpoint: Endpoint,
}

/// Parse `--ctrl`.
pub fn parse_ctrl(s: &str) -> Result<CtrlOption, OptionError> {
    let mut keys = SOCKET_KEYS.to_vec();
    keys.push(("clientfd", Kind::Value));
    let items = Items::parse("--ctrl", s, &keys)?;
    let ty = items
        .get("type")
        .ok_or_else(|| err("--ctrl", "type=tcp or type=unixio is required"))?;
    Ok(CtrlOption {
        endpoint: endpoint(&items, ty)?,
    })
}

/// `--tpmstate dir=D[,mode=0...] | backend-uri=dir://D`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmStateOption {
    pub dir: PathBuf,
    /// Mode bits of the state file (default 0640).
    pub mode: u32,
}

/// Parse `--tpmstate`.
pub fn parse_tpmstate(s: &str) -> Result<TpmStateOption, OptionError> {
    const O: &str = "--tpmstate";
    let items = Items::parse(
        O,
        s,
        &[
            ("dir", Kind::Value),
            ("mode", Kind::Value),
            ("backend-uri", Kind::Value),
        ],
    )?;
    let dir = match (items.get("dir"), items.get("backend-uri")) {
        (Some(_), Some(_)) => return Err(err(O, "give either dir= or backend-uri=, not both")),
        (Some(d), None) => PathBuf::from(d),
        (None, Some(uri)) => match uri.strip_prefix("dir://") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            Some(_) => return Err(err(O, "backend-uri dir:// needs a path")),
            None => {
                return Err(err(
                    O,
                    format!("backend-uri '{uri}' is not supported (only dir://PATH is)"),
                ))
            }
        },
        (None, None) => return Err(err(O, "dir=D is required")),
    };
    Ok(TpmStateOption {
        dir,
        mode: items.mode()?.unwrap_or(0o640),
    })
}

/// `--flags [not-need-init][,startup-clear|startup-state|startup-none]`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlagsOption {
    /// Power the TPM on at start, without waiting for CMD_INIT. Implied by
    /// `startup-clear` and `startup-state`.
    pub not_need_init: bool,
    /// Send TPM2_Startup of this type at start.
    pub startup: Option<StartupType>,
}

/// Parse `--flags`.
pub fn parse_flags(s: &str) -> Result<FlagsOption, OptionError> {
    const O: &str = "--flags";
    let items = Items::parse(
        O,
        s,
        &[
            ("not-need-init", Kind::Bool),
            ("startup-clear", Kind::Bool),
            ("startup-state", Kind::Bool),
            ("startup-deactivated", Kind::Bool),
            ("startup-none", Kind::Bool),
            ("disable-auto-shutdown", Kind::Bool),
        ],
    )?;
    if items.flag("startup-deactivated")? {
        return Err(err(O, "startup-deactivated only exists for TPM 1.2"));
    }
    let mut startups = Vec::new();
    for (key, kind) in [
        ("startup-clear", Some(StartupType::Clear)),
        ("startup-state", Some(StartupType::State)),
        ("startup-none", None),
    ] {
        if items.flag(key)? {
            startups.push((key, kind));
        }
    }
    if startups.len() > 1 {
        return Err(err(
            O,
            format!("{} and {} exclude each other", startups[0].0, startups[1].0),
        ));
    }
    let startup = startups.first().and_then(|(_, k)| *k);
    Ok(FlagsOption {
        not_need_init: items.flag("not-need-init")? || startup.is_some(),
        startup,
    })
}

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// `file=-`: no logging (swtpm's meaning).
    Suppressed,
    /// `file=P`.
    File { path: PathBuf, truncate: bool },
    /// `fd=N`: an inherited file descriptor.
    Fd(i32),
}

/// `--log file=P|fd=N[,level=N][,prefix=S][,truncate]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOption {
    pub target: LogTarget,
    pub level: u32,
    pub prefix: Option<String>,
}

/// Parse `--log`.
pub fn parse_log(s: &str) -> Result<LogOption, OptionError> {
    const O: &str = "--log";
    let items = Items::parse(
        O,
        s,
        &[
            ("file", Kind::Value),
            ("fd", Kind::Value),
            ("level", Kind::Value),
            ("prefix", Kind::Value),
            ("truncate", Kind::Bool),
        ],
    )?;
    let truncate = items.flag("truncate")?;
    let target = match (items.get("file"), items.fd()?) {
        (Some(_), Some(_)) => return Err(err(O, "give either file= or fd=, not both")),
        (Some("-"), None) => LogTarget::Suppressed,
        (Some(p), None) => LogTarget::File {
            path: PathBuf::from(p),
            truncate,
        },
        (None, Some(fd)) => LogTarget::Fd(fd),
        (None, None) => return Err(err(O, "file=PATH or fd=N is required")),
    };
    let level = match items.get("level") {
        Some(v) => v
            .parse::<u32>()
            .map_err(|_| err(O, format!("level '{v}' is not a number")))?,
        None => 1,
    };
    Ok(LogOption {
        target,
        level,
        prefix: items.get("prefix").map(str::to_owned),
    })
}

/// `--pid file=P|fd=N`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidOption {
    File(PathBuf),
    Fd(i32),
}

/// Parse `--pid`.
pub fn parse_pid(s: &str) -> Result<PidOption, OptionError> {
    const O: &str = "--pid";
    let items = Items::parse(O, s, &[("file", Kind::Value), ("fd", Kind::Value)])?;
    match (items.get("file"), items.fd()?) {
        (Some(_), Some(_)) => Err(err(O, "give either file= or fd=, not both")),
        (Some(p), None) => Ok(PidOption::File(PathBuf::from(p))),
        (None, Some(fd)) => Ok(PidOption::Fd(fd)),
        (None, None) => Err(err(O, "file=PATH or fd=N is required")),
    }
}

/// swtpm's `--seccomp action=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompAction {
    None,
    Kill,
    Log,
}

/// Parse `--seccomp`.
pub fn parse_seccomp(s: &str) -> Result<SeccompAction, OptionError> {
    const O: &str = "--seccomp";
    let items = Items::parse(O, s, &[("action", Kind::Value)])?;
    match items.get("action") {
        Some("none") => Ok(SeccompAction::None),
        Some("kill") => Ok(SeccompAction::Kill),
        Some("log") => Ok(SeccompAction::Log),
        Some(v) => Err(err(
            O,
            format!("action '{v}' is not one of none, kill, log"),
        )),
        None => Err(err(O, "action=none|kill|log is required")),
    }
}

/// `--locality [reject-locality-4]`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalityOption {
    /// Refuse CMD_SET_LOCALITY to locality 4.
    pub reject_locality_4: bool,
}

/// Parse `--locality`.
pub fn parse_locality(s: &str) -> Result<LocalityOption, OptionError> {
    const O: &str = "--locality";
    let items = Items::parse(
        O,
        s,
        &[
            ("reject-locality-4", Kind::Bool),
            ("allow-set-locality", Kind::Bool),
        ],
    )?;
    if items.flag("allow-set-locality")? {
        return Err(err(
            O,
            "allow-set-locality is not supported (there is no TPM2_SetLocality vendor command)",
        ));
    }
    Ok(LocalityOption {
        reject_locality_4: items.flag("reject-locality-4")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(e: OptionError) -> String {
        e.to_string()
    }

    #[test]
    fn server_tcp() {
        let s = parse_server("type=tcp,port=2321").expect("ok");
        assert_eq!(
            s.endpoint,
            Endpoint::Tcp {
                addr: DEFAULT_BIND,
                port: 2321
            }
        );
        assert!(!s.disconnect);
        let s = parse_server("port=1,bindaddr=::1,disconnect").expect("ok");
        assert_eq!(
            s.endpoint,
            Endpoint::Tcp {
                addr: "::1".parse().expect("ip"),
                port: 1
            }
        );
        assert!(s.disconnect);
        let s = parse_server("port=1,bindaddr=[::1],disconnect=false").expect("ok");
        assert!(!s.disconnect);
    }

    #[test]
    fn server_unixio() {
        let s = parse_server("type=unixio,path=/run/x.sock,mode=0600,uid=10,gid=20").expect("ok");
        assert_eq!(
            s.endpoint,
            Endpoint::Unix {
                path: "/run/x.sock".into(),
                mode: Some(0o600),
                uid: Some(10),
                gid: Some(20)
            }
        );
    }

    #[test]
    fn server_errors_name_option_and_rule() {
        assert_eq!(
            msg(parse_server("type=tcp,prot=1").expect_err("unknown")),
            "--server: unknown key 'prot' (known keys: type, port, bindaddr, ifname, path, mode, uid, gid, fd, disconnect)"
        );
        assert_eq!(
            msg(parse_server("type=tcp").expect_err("port")),
            "--server: type=tcp needs port=N"
        );
        assert_eq!(
            msg(parse_server("type=tcp,port=70000").expect_err("range")),
            "--server: port '70000' is not a number in 0-65535"
        );
        assert_eq!(
            msg(parse_server("type=udp,port=1").expect_err("type")),
            "--server: type 'udp' is not one of tcp, unixio"
        );
        assert_eq!(
            msg(parse_server("port=1,port=2").expect_err("dup")),
            "--server: key 'port' given more than once"
        );
        assert_eq!(
            msg(parse_server("port").expect_err("value")),
            "--server: key 'port' needs a value (port=...)"
        );
        assert_eq!(
            msg(parse_server("port=").expect_err("empty")),
            "--server: key 'port' has an empty value"
        );
        assert_eq!(
            msg(parse_server("port=1,,").expect_err("empty item")),
            "--server: empty item in 'port=1,,'"
        );
        assert_eq!(
            msg(parse_server("").expect_err("empty")),
            "--server: empty value"
        );
        assert_eq!(
            msg(parse_server("port=1,bindaddr=localhost").expect_err("addr")),
            "--server: bindaddr 'localhost' is not an IPv4 or IPv6 address"
        );
        assert_eq!(
            msg(parse_server("type=unixio,path=/x,port=1").expect_err("mix")),
            "--server: key 'port' is only valid with type=tcp"
        );
        assert_eq!(
            msg(parse_server("type=tcp,port=1,path=/x").expect_err("mix")),
            "--server: key 'path' is only valid with type=unixio"
        );
        assert_eq!(
            msg(parse_server("type=unixio,path=/x,mode=640").expect_err("mode")),
            "--server: mode '640' must be an octal number starting with 0, e.g. 0640"
        );
        assert_eq!(
            msg(parse_server("type=unixio,path=/x,mode=01777").expect_err("mode")),
            "--server: mode '01777' is not an octal mode in 0-0777"
        );
        assert_eq!(
            msg(parse_server("type=unixio,path=/x,uid=root").expect_err("uid")),
            "--server: uid 'root' must be a numeric id"
        );
        assert_eq!(
            msg(parse_server("type=tcp,fd=4").expect_err("fd")),
            "--server: key 'fd' is not supported: socket file descriptors cannot be passed in yet"
        );
        assert_eq!(
            msg(parse_server("port=1,disconnect=maybe").expect_err("bool")),
            "--server: key 'disconnect' takes true or false, not 'maybe'"
        );
        assert_eq!(
            msg(parse_server("type=unixio").expect_err("path")),
            "--server: type=unixio needs path=P"
        );
    }

    #[test]
    fn ctrl() {
        let c = parse_ctrl("type=tcp,port=2322,bindaddr=0.0.0.0").expect("ok");
        assert_eq!(
            c.endpoint,
            Endpoint::Tcp {
                addr: "0.0.0.0".parse().expect("ip"),
                port: 2322
            }
        );
        let c = parse_ctrl("type=unixio,path=/tmp/c").expect("ok");
        assert!(matches!(c.endpoint, Endpoint::Unix { .. }));
        assert_eq!(
            msg(parse_ctrl("port=1").expect_err("type")),
            "--ctrl: type=tcp or type=unixio is required"
        );
        assert_eq!(
            msg(parse_ctrl("type=unixio,clientfd=5").expect_err("clientfd")),
            "--ctrl: key 'clientfd' is not supported: socket file descriptors cannot be passed in yet"
        );
        assert!(
            msg(parse_ctrl("type=tcp,port=1,disconnect").expect_err("no disconnect"))
                .starts_with("--ctrl: unknown key 'disconnect'")
        );
    }

    #[test]
    fn tpmstate() {
        assert_eq!(
            parse_tpmstate("dir=/var/lib/tpm").expect("ok"),
            TpmStateOption {
                dir: "/var/lib/tpm".into(),
                mode: 0o640
            }
        );
        assert_eq!(parse_tpmstate("dir=/d,mode=0600").expect("ok").mode, 0o600);
        assert_eq!(
            parse_tpmstate("backend-uri=dir:///d").expect("ok").dir,
            PathBuf::from("/d")
        );
        assert_eq!(
            msg(parse_tpmstate("backend-uri=file:///d").expect_err("file")),
            "--tpmstate: backend-uri 'file:///d' is not supported (only dir://PATH is)"
        );
        assert_eq!(
            msg(parse_tpmstate("mode=0600").expect_err("dir")),
            "--tpmstate: dir=D is required"
        );
        assert_eq!(
            msg(parse_tpmstate("dir=/a,backend-uri=dir:///b").expect_err("both")),
            "--tpmstate: give either dir= or backend-uri=, not both"
        );
    }

    #[test]
    fn flags() {
        assert_eq!(
            parse_flags("not-need-init").expect("ok"),
            FlagsOption {
                not_need_init: true,
                startup: None
            }
        );
        assert_eq!(
            parse_flags("not-need-init,startup-clear").expect("ok"),
            FlagsOption {
                not_need_init: true,
                startup: Some(StartupType::Clear)
            }
        );
        assert_eq!(
            parse_flags("startup-state").expect("ok"),
            FlagsOption {
                not_need_init: true,
                startup: Some(StartupType::State)
            }
        );
        assert_eq!(
            parse_flags("startup-none").expect("ok"),
            FlagsOption::default()
        );
        assert_eq!(
            msg(parse_flags("startup-clear,startup-state").expect_err("both")),
            "--flags: startup-clear and startup-state exclude each other"
        );
        assert_eq!(
            msg(parse_flags("startup-deactivated").expect_err("1.2")),
            "--flags: startup-deactivated only exists for TPM 1.2"
        );
        assert!(msg(parse_flags("need-init").expect_err("unknown"))
            .starts_with("--flags: unknown key 'need-init'"));
    }

    #[test]
    fn log() {
        assert_eq!(
            parse_log("file=/tmp/l,level=20").expect("ok"),
            LogOption {
                target: LogTarget::File {
                    path: "/tmp/l".into(),
                    truncate: false
                },
                level: 20,
                prefix: None
            }
        );
        assert_eq!(
            parse_log("file=-").expect("ok").target,
            LogTarget::Suppressed
        );
        let l = parse_log("fd=5,prefix=tpm: ,truncate").expect("ok");
        assert_eq!(l.target, LogTarget::Fd(5));
        assert_eq!(l.prefix.as_deref(), Some("tpm: "));
        assert_eq!(l.level, 1);
        assert_eq!(
            msg(parse_log("level=2").expect_err("target")),
            "--log: file=PATH or fd=N is required"
        );
        assert_eq!(
            msg(parse_log("fd=2").expect_err("stdio")),
            "--log: fd 2 is not allowed: 0, 1 and 2 are stdio"
        );
        assert_eq!(
            msg(parse_log("file=x,level=hi").expect_err("level")),
            "--log: level 'hi' is not a number"
        );
    }

    #[test]
    fn pid_seccomp_locality() {
        assert_eq!(
            parse_pid("file=/run/p").expect("ok"),
            PidOption::File("/run/p".into())
        );
        assert_eq!(parse_pid("fd=7").expect("ok"), PidOption::Fd(7));
        assert_eq!(
            msg(parse_pid("fd=x").expect_err("fd")),
            "--pid: fd 'x' is not a file descriptor number"
        );
        assert_eq!(
            parse_seccomp("action=none").expect("ok"),
            SeccompAction::None
        );
        assert_eq!(
            msg(parse_seccomp("action=trap").expect_err("action")),
            "--seccomp: action 'trap' is not one of none, kill, log"
        );
        assert!(
            parse_locality("reject-locality-4")
                .expect("ok")
                .reject_locality_4
        );
        assert!(parse_locality("allow-set-locality").is_err());
    }
}
