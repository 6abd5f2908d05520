//! `-o/--output` for the `aks` commands, as `az` prints: `json` (indented, keys sorted),
//! `jsonc` (the same, coloured), `yaml`, `tsv` (scalar fields of each object, tab-separated,
//! in key order; nested values left out) and `table` (a fixed column set per resource kind).

use clap::ValueEnum;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Jsonc,
    Table,
    Tsv,
    Yaml,
}

/// What is being printed, for the table columns.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Cluster,
    AgentPool,
    Node,
    Alert,
}

/// Keys sorted at every level, whatever map order serde_json was built with.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn items(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn tsv(v: &Value) -> String {
    let mut out = String::new();
    for item in items(v) {
        let line: Vec<String> = match sorted(item) {
            Value::Object(m) => m.values().filter_map(scalar).collect(),
            other => scalar(&other).into_iter().collect(),
        };
        out.push_str(&line.join("\t"));
        out.push('\n');
    }
    out
}

/// The value at a dotted path (`securityProfile.enableSecureBoot`).
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| {
        match (v, k.parse::<usize>()) {
            (Value::Array(a), Ok(i)) => a.get(i),
            _ => v.get(k),
        }
        .unwrap_or(&Value::Null)
    })
}

fn columns(kind: Kind) -> &'static [(&'static str, &'static str)] {
    match kind {
        Kind::Cluster => &[
            ("Name", "name"),
            ("Location", "location"),
            ("ResourceGroup", "resourceGroup"),
            ("KubernetesVersion", "kubernetesVersion"),
            ("CurrentKubernetesVersion", "currentKubernetesVersion"),
            ("ProvisioningState", "provisioningState"),
            ("Fqdn", "fqdn"),
        ],
        Kind::AgentPool => &[
            ("Name", "name"),
            ("OsType", "osType"),
            ("KubernetesVersion", "orchestratorVersion"),
            ("VmSize", "vmSize"),
            ("Count", "count"),
            ("SecureBoot", "securityProfile.enableSecureBoot"),
            ("VTPM", "securityProfile.enableVTPM"),
            ("ProvisioningState", "provisioningState"),
            ("Mode", "mode"),
        ],
        Kind::Node => &[
            ("Name", "name"),
            ("Pool", "poolName"),
            ("SecureBoot", "securityProfile.enableSecureBoot"),
            ("VTPM", "securityProfile.enableVTPM"),
            ("BootCount", "bootCount"),
            ("Cordoned", "cordoned"),
            ("Attestation", "attestation.status"),
            ("NodeImageVersion", "nodeImageVersion"),
        ],
        Kind::Alert => &[
            ("Id", "id"),
            ("Severity", "severity"),
            ("Node", "node"),
            ("Pool", "pool"),
            ("Acknowledged", "acknowledged"),
            ("Component", "failures.0.component"),
            ("Reason", "failures.0.reason"),
        ],
    }
}

fn table(v: &Value, kind: Kind) -> String {
    let cols = columns(kind);
    let rows: Vec<Vec<String>> = items(v)
        .into_iter()
        .map(|item| {
            cols.iter()
                .map(|(_, path)| scalar(at(item, path)).unwrap_or_default())
                .collect()
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(cols.iter().map(|(h, _)| h.to_string()).collect());
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// Colours JSON as az's `jsonc` does (keys, strings, literals).
fn colour(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            let mut s = String::from('"');
            let mut escaped = false;
            for d in chars.by_ref() {
                s.push(d);
                if escaped {
                    escaped = false;
                } else if d == '\\' {
                    escaped = true;
                } else if d == '"' {
                    break;
                }
            }
            let is_key = chars.peek() == Some(&':');
            let code = if is_key { "94" } else { "32" };
            out.push_str(&format!("\x1b[{code}m{s}\x1b[0m"));
        } else if c.is_ascii_digit() || c == '-' || c == 't' || c == 'f' || c == 'n' {
            let mut s = String::from(c);
            while let Some(&d) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '.' || d == '-' || d == '+' {
                    s.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push_str(&format!("\x1b[96m{s}\x1b[0m"));
        } else {
            out.push(c);
        }
    }
    out
}

/// The text printed for `value` in `format`.
pub fn render(value: &Value, format: OutputFormat, kind: Kind) -> String {
    let v = sorted(value);
    match format {
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()),
        OutputFormat::Jsonc => format!(
            "{}\n",
            colour(&serde_json::to_string_pretty(&v).unwrap_or_default())
        ),
        OutputFormat::Yaml => serde_yaml::to_string(&v).unwrap_or_default(),
        OutputFormat::Tsv => tsv(&v),
        OutputFormat::Table => table(&v, kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats() {
        let v = json!([{"name": "np", "count": 3, "securityProfile": {"enableSecureBoot": true, "enableVTPM": false}, "osType": "Linux"}]);
        assert_eq!(
            render(&v, OutputFormat::Tsv, Kind::AgentPool),
            "3\tnp\tLinux\n"
        );
        let t = render(&v, OutputFormat::Table, Kind::AgentPool);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("Name  OsType"), "{t}");
        assert!(
            lines[2].contains("True") && lines[2].contains("False"),
            "{t}"
        );
        let y = render(&v, OutputFormat::Yaml, Kind::AgentPool);
        assert!(y.contains("enableSecureBoot: true"), "{y}");
        let j = render(&json!({"b": 1, "a": 2}), OutputFormat::Json, Kind::Cluster);
        assert_eq!(j, "{\n  \"a\": 2,\n  \"b\": 1\n}\n");
        assert!(render(&json!({"a": true}), OutputFormat::Jsonc, Kind::Cluster).contains("\x1b["));
    }
}
