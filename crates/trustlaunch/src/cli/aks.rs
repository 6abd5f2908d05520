//! `trustlaunch aks …`: the `az aks` commands of the seed against a `trustlaunch up` server,
//! with az's subcommands, flags, defaults and output shapes (resources flattened out of
//! `properties`, keys sorted; `-o json|jsonc|table|tsv|yaml`; `--no-wait`).

use super::aks_output::{render, Kind, OutputFormat};
use super::up::{default_data_dir, ENDPOINT_FILE};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the long-running operation failed, or another error
  2  usage error (unknown flag, conflicting flags such as --enable-vtpm with --disable-vtpm)
  3  the request was refused (HTTP 400): a Trusted Launch rule or an invalid parameter;
     the message names the code (e.g. TrustedLaunchIncompatibleWithConfig) and the rule
  4  not found (HTTP 404)
  5  conflict (HTTP 409): another operation is running, or the resource exists
  6  no trustlaunch server reachable (start one with `trustlaunch up`)
  7  unauthorized (HTTP 401): wrong or missing admin token
  8  server error (HTTP 5xx)

The server is found through --endpoint, TRUSTLAUNCH_ENDPOINT, DATA_DIR/endpoint (written by
`trustlaunch up`), then http://127.0.0.1:7373; the admin token through --token,
TRUSTLAUNCH_TOKEN, then DATA_DIR/admin-token.";

const SUBSCRIPTION: &str = control::model::SUBSCRIPTION;

/// How the CLI reaches the server (shared by `aks`, `alerts` and `node`).
#[derive(Debug, Args)]
pub struct Connection {
    /// URL of the trustlaunch server.
    #[arg(long, global = true, env = "TRUSTLAUNCH_ENDPOINT", value_name = "URL")]
    endpoint: Option<String>,
    /// Admin bearer token.
    #[arg(
        long,
        global = true,
        env = "TRUSTLAUNCH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// The server's data directory (for its endpoint and admin-token files).
    #[arg(long, global = true, env = "TRUSTLAUNCH_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "json")]
    output: OutputFormat,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct AksArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: AksCommand,
}

/// `trustlaunch alerts`: integrity alerts raised by the verifier.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct AlertsArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: AlertsCommand,
}

#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// List integrity alerts (oldest first), all or one node's.
    List {
        /// Only this node's alerts.
        #[arg(long)]
        node: Option<String>,
    },
    /// Acknowledge an alert.
    Ack {
        /// The alert's id.
        id: u64,
    },
}

/// `trustlaunch node`: one node's VM.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct NodeArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Reboot the node (same disk, same vTPM): it boots, and attests, again.
    Reboot {
        /// The node's name.
        node: String,
    },
    /// For demos and tests: replace a component on the node's disk with a modified copy,
    /// as a bootkit would (the next boot shows it).
    Tamper {
        /// The node's name.
        node: String,
        /// What to modify.
        #[arg(long, value_parser = ["kernel", "grub", "shim", "module"])]
        component: String,
    },
    /// The node's attestation history.
    Attestations {
        /// The node's name.
        node: String,
    },
    /// Relearn the reference policy of the node's pool from the node's latest boot (its
    /// Secure Boot state, boot components, command line and firmware PCRs), after an
    /// intended change such as a firmware or kernel update. Prints the new policy.
    Relearn {
        /// The node's name.
        node: String,
    },
}

#[derive(Debug, Subcommand)]
enum AksCommand {
    /// Create a managed cluster (its first pool is a System pool named nodepool1).
    Create(CreateArgs),
    /// Show a managed cluster.
    Show(ClusterRef),
    /// List managed clusters (of one resource group with -g).
    List(ListArgs),
    /// Delete a managed cluster and its nodes.
    Delete(DeleteClusterArgs),
    /// Write or merge the cluster's kubeconfig entry (the Kubernetes node API of the server).
    GetCredentials(CredentialsArgs),
    /// Manage node pools.
    #[command(subcommand)]
    Nodepool(NodepoolCommand),
}

#[derive(Debug, Args)]
struct ClusterRef {
    /// Name of the managed cluster.
    #[arg(short = 'n', long)]
    name: String,
    /// Name of the resource group.
    #[arg(short = 'g', long)]
    resource_group: String,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Name of the resource group.
    #[arg(short = 'g', long)]
    resource_group: Option<String>,
}

#[derive(Debug, Args)]
struct DeleteClusterArgs {
    #[command(flatten)]
    cluster: ClusterRef,
    /// Do not prompt for confirmation (this command never prompts).
    #[arg(short = 'y', long)]
    yes: bool,
    /// Do not wait for the long-running operation to finish.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, Args)]
struct CredentialsArgs {
    #[command(flatten)]
    cluster: ClusterRef,
    /// Kubernetes configuration file to update [default: ~/.kube/config].
    #[arg(short = 'f', long)]
    file: Option<PathBuf>,
    /// Get cluster administrator credentials.
    #[arg(short = 'a', long)]
    admin: bool,
    /// Overwrite any existing cluster entry with the same name.
    #[arg(long)]
    overwrite_existing: bool,
    /// Use this context name instead of the cluster's name.
    #[arg(long)]
    context: Option<String>,
}

/// Pool settings shared by `aks create` (its first pool) and `aks nodepool add`.
#[derive(Debug, Args)]
struct PoolArgs {
    /// Number of nodes.
    #[arg(short = 'c', long, default_value_t = 3)]
    node_count: u32,
    /// VM size of the nodes [default: Standard_DS2_v2].
    #[arg(short = 's', long)]
    node_vm_size: Option<String>,
    /// OS SKU: Ubuntu or AzureLinux.
    #[arg(long)]
    os_sku: Option<String>,
    /// Enable UEFI Secure Boot on the nodes (Trusted Launch).
    #[arg(long)]
    enable_secure_boot: bool,
    /// Enable the vTPM and measured boot on the nodes (Trusted Launch).
    #[arg(long)]
    enable_vtpm: bool,
    /// Use FIPS-enabled OS images.
    #[arg(long)]
    enable_fips_image: bool,
    /// GPU driver installation: Install or None.
    #[arg(long)]
    gpu_driver: Option<String>,
    /// Skip GPU driver installation (the same as --gpu-driver None).
    #[arg(long)]
    skip_gpu_driver_install: bool,
    /// Node OS disk type: Managed or Ephemeral.
    #[arg(long)]
    node_osdisk_type: Option<String>,
    /// VirtualMachineScaleSets or AvailabilitySet.
    #[arg(long)]
    vm_set_type: Option<String>,
    /// Extra nodes (or percentage of the pool) reimaged at once during upgrades [default: 1].
    #[arg(long)]
    max_surge: Option<String>,
    /// Do not wait for the long-running operation to finish.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, Args)]
struct CreateArgs {
    #[command(flatten)]
    cluster: ClusterRef,
    /// Kubernetes version [default: the server's default].
    #[arg(short = 'k', long)]
    kubernetes_version: Option<String>,
    /// Location [default: eastus].
    #[arg(short = 'l', long)]
    location: Option<String>,
    /// Name of the first node pool.
    #[arg(long, default_value = "nodepool1")]
    nodepool_name: String,
    /// Add-ons to enable, comma-separated (virtual-node).
    #[arg(short = 'a', long)]
    enable_addons: Option<String>,
    /// Accepted for az compatibility; nodes take no SSH keys here.
    #[arg(long)]
    generate_ssh_keys: bool,
    #[command(flatten)]
    pool: PoolArgs,
}

#[derive(Debug, Subcommand)]
enum NodepoolCommand {
    /// Add a node pool to a managed cluster.
    Add(NodepoolAddArgs),
    /// Update a node pool: enable or disable Secure Boot and the vTPM (reimages the nodes, rolling).
    Update(NodepoolUpdateArgs),
    /// Change a node pool's node count (nodes are added or removed, others untouched).
    Scale(NodepoolScaleArgs),
    /// Show a node pool.
    Show(PoolRef),
    /// List a cluster's node pools.
    List(ClusterOfPools),
    /// Delete a node pool and its nodes.
    Delete(NodepoolDeleteArgs),
    /// List a node pool's nodes: labels, taints, image, Secure Boot/vTPM, boot count, attestation.
    ListNodes(PoolRef),
}

#[derive(Debug, Args)]
struct ClusterOfPools {
    /// Name of the resource group.
    #[arg(short = 'g', long)]
    resource_group: String,
    /// Name of the managed cluster.
    #[arg(long)]
    cluster_name: String,
}

#[derive(Debug, Args)]
struct PoolRef {
    #[command(flatten)]
    cluster: ClusterOfPools,
    /// Name of the node pool.
    #[arg(short = 'n', long)]
    name: String,
}

#[derive(Debug, Args)]
struct NodepoolAddArgs {
    #[command(flatten)]
    pool_ref: PoolRef,
    /// OS type: Linux or Windows.
    #[arg(long, default_value = "Linux")]
    os_type: String,
    /// Pool mode: System or User.
    #[arg(long, default_value = "User")]
    mode: String,
    /// Kubernetes version of the pool [default: the cluster's].
    #[arg(short = 'k', long)]
    kubernetes_version: Option<String>,
    #[command(flatten)]
    pool: PoolArgs,
}

#[derive(Debug, Args)]
struct NodepoolUpdateArgs {
    #[command(flatten)]
    pool_ref: PoolRef,
    /// Enable UEFI Secure Boot (reimages the nodes).
    #[arg(long)]
    enable_secure_boot: bool,
    /// Disable UEFI Secure Boot (reimages the nodes).
    #[arg(long)]
    disable_secure_boot: bool,
    /// Enable the vTPM (reimages the nodes).
    #[arg(long)]
    enable_vtpm: bool,
    /// Disable the vTPM (reimages the nodes).
    #[arg(long)]
    disable_vtpm: bool,
    /// Extra nodes (or percentage of the pool) reimaged at once.
    #[arg(long)]
    max_surge: Option<String>,
    /// Do not wait for the long-running operation to finish.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, Args)]
struct NodepoolScaleArgs {
    #[command(flatten)]
    pool_ref: PoolRef,
    /// Number of nodes.
    #[arg(short = 'c', long, default_value_t = 3)]
    node_count: u32,
    /// Do not wait for the long-running operation to finish.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, Args)]
struct NodepoolDeleteArgs {
    #[command(flatten)]
    pool_ref: PoolRef,
    /// Do not wait for the long-running operation to finish.
    #[arg(long)]
    no_wait: bool,
}

/// A failure with its exit code (see `EXIT_CODES`).
#[derive(Debug)]
struct Failure {
    exit: u8,
    message: String,
}

fn usage(message: String) -> Failure {
    Failure { exit: 2, message }
}

/// The configuration the commands run with, resolved once from flags, environment and files.
struct Client {
    endpoint: String,
    token: Option<String>,
    agent: ureq::Agent,
    output: OutputFormat,
    progress: bool,
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Client {
    fn new(args: &Connection) -> Self {
        let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
        let endpoint = args
            .endpoint
            .clone()
            .or_else(|| read_trimmed(&data_dir.join(ENDPOINT_FILE)))
            .unwrap_or_else(|| format!("http://{}", server::DEFAULT_LISTEN));
        let token = args
            .token
            .clone()
            .or_else(|| read_trimmed(&data_dir.join(server::ADMIN_TOKEN_FILE)));
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .timeout(Duration::from_secs(60))
                .build(),
            output: args.output,
            progress: std::io::stderr().is_terminal(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.endpoint)
        }
    }

    /// One request; the JSON answer (Null for an empty body) and the async-operation URL.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(Value, Option<String>), Failure> {
        let mut req = self.agent.request(method, &self.url(path));
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let result = match body {
            Some(b) => req.send_json(b.clone()),
            None => req.call(),
        };
        match result {
            Ok(resp) => {
                let op = resp.header("azure-asyncoperation").map(str::to_string);
                let text = resp.into_string().unwrap_or_default();
                let v = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).unwrap_or(Value::String(text))
                };
                Ok((v, op))
            }
            Err(ureq::Error::Status(status, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let (code, message) = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| {
                        let e = v.get("error")?;
                        Some((
                            e.get("code")?.as_str()?.to_string(),
                            e.get("message")?.as_str()?.to_string(),
                        ))
                    })
                    .unwrap_or_else(|| (format!("HTTP{status}"), text.trim().to_string()));
                let exit = match status {
                    400 | 413 => 3,
                    401 | 403 => 7,
                    404 => 4,
                    409 => 5,
                    s if s >= 500 => 8,
                    _ => 1,
                };
                Err(Failure {
                    exit,
                    message: format!("({code}) {message}"),
                })
            }
            Err(ureq::Error::Transport(t)) => Err(Failure {
                exit: 6,
                message: format!(
                    "no trustlaunch server reachable at {} ({t}).\n\
                     Start one with `trustlaunch up` (it listens on {} by default), or point the \
                     CLI at a running one with --endpoint URL or TRUSTLAUNCH_ENDPOINT=URL.",
                    self.endpoint,
                    server::DEFAULT_LISTEN
                ),
            }),
        }
    }

    /// Polls an operation until it ends, showing progress on a terminal.
    fn wait(&self, op_url: &str) -> Result<(), Failure> {
        loop {
            let (op, _) = self.call("GET", op_url, None)?;
            let status = op.get("status").and_then(Value::as_str).unwrap_or("");
            if self.progress {
                let pct = op
                    .get("percentComplete")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                let step = op.get("currentStep").and_then(Value::as_str).unwrap_or("");
                eprint!("\r\x1b[K{status} {pct:5.1}% {step}");
                let _ = std::io::stderr().flush();
            }
            match status {
                "InProgress" => std::thread::sleep(Duration::from_millis(200)),
                "Succeeded" => {
                    if self.progress {
                        eprintln!();
                    }
                    return Ok(());
                }
                _ => {
                    if self.progress {
                        eprintln!();
                    }
                    let code = op
                        .pointer("/error/code")
                        .and_then(Value::as_str)
                        .unwrap_or(status);
                    let msg = op
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    return Err(Failure {
                        exit: 1,
                        message: format!("({code}) {msg}"),
                    });
                }
            }
        }
    }

    fn print(&self, v: &Value, kind: Kind) {
        print!("{}", render(v, self.output, kind));
    }
}

fn cluster_path(rg: &str, name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters/{name}")
}

fn pool_path(p: &PoolRef) -> String {
    format!(
        "{}/agentPools/{}",
        cluster_path(&p.cluster.resource_group, &p.cluster.cluster_name),
        p.name
    )
}

/// An ARM resource as az prints it: `properties` lifted to the top level (a property named
/// `type` becomes `typePropertiesType`), plus `resourceGroup` from the id.
fn az_view(v: &Value) -> Value {
    let Some(obj) = v.as_object() else {
        return v.clone();
    };
    let mut out: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "properties")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, val) in props {
            let key = if k == "type" {
                "typePropertiesType".to_string()
            } else {
                k.clone()
            };
            out.insert(key, val.clone());
        }
    }
    if let Some(id) = obj.get("id").and_then(Value::as_str) {
        if let Some(rid) = control::model::ResourceId::parse(id) {
            out.insert("resourceGroup".into(), json!(rid.resource_group));
        }
    }
    Value::Object(out)
}

fn az_list(v: &Value) -> Value {
    Value::Array(
        v.get("value")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(az_view).collect())
            .unwrap_or_default(),
    )
}

/// The exact az message for a flag given with its opposite.
fn exclusive(a: bool, b: bool, name: &str) -> Result<(), Failure> {
    if a && b {
        Err(usage(format!(
            "Cannot specify \"--enable-{name}\" and \"--disable-{name}\" at the same time"
        )))
    } else {
        Ok(())
    }
}

fn pool_properties(p: &PoolArgs) -> Result<Map<String, Value>, Failure> {
    let mut m = Map::new();
    m.insert("count".into(), json!(p.node_count));
    if let Some(s) = &p.node_vm_size {
        m.insert("vmSize".into(), json!(s));
    }
    if let Some(s) = &p.os_sku {
        // az still accepts Azure Linux's former names.
        let name = match s.to_ascii_lowercase().as_str() {
            "mariner" | "cblmariner" => "AzureLinux",
            _ => s.as_str(),
        };
        let sku = control::OsSku::parse(name).ok_or_else(|| {
            usage(format!(
                "--os-sku {s:?}: expected Ubuntu or AzureLinux (Mariner)"
            ))
        })?;
        m.insert("osSKU".into(), json!(sku.as_str()));
    }
    m.insert(
        "securityProfile".into(),
        json!({"enableSecureBoot": p.enable_secure_boot, "enableVTPM": p.enable_vtpm}),
    );
    if p.enable_fips_image {
        m.insert("enableFIPS".into(), json!(true));
    }
    let driver = if p.skip_gpu_driver_install {
        Some("None".to_string())
    } else {
        p.gpu_driver.clone()
    };
    if let Some(d) = driver {
        let d = control::GpuDriver::parse(&d)
            .ok_or_else(|| usage(format!("--gpu-driver {d:?}: expected Install or None")))?;
        m.insert("gpuProfile".into(), json!({"driver": d.as_str()}));
    }
    if let Some(t) = &p.node_osdisk_type {
        let t = control::OsDiskType::parse(t).ok_or_else(|| {
            usage(format!(
                "--node-osdisk-type {t:?}: expected Managed or Ephemeral"
            ))
        })?;
        m.insert("osDiskType".into(), json!(t.as_str()));
    }
    if let Some(t) = &p.vm_set_type {
        let t = control::VmSetType::parse(t).ok_or_else(|| {
            usage(format!(
                "--vm-set-type {t:?}: expected VirtualMachineScaleSets or AvailabilitySet"
            ))
        })?;
        m.insert("type".into(), json!(t.as_str()));
    }
    if let Some(s) = &p.max_surge {
        m.insert("upgradeSettings".into(), json!({"maxSurge": s}));
    }
    Ok(m)
}

/// PUTs or DELETEs, waits unless `--no-wait`, then prints the resource (az prints nothing
/// for deletes and for `--no-wait`).
fn mutate(
    c: &Client,
    method: &str,
    path: &str,
    body: Option<Value>,
    no_wait: bool,
    kind: Option<Kind>,
) -> Result<(), Failure> {
    let (_, op) = c.call(method, path, body.as_ref())?;
    if no_wait {
        return Ok(());
    }
    if let Some(op) = op {
        c.wait(&op)?;
    }
    if let Some(kind) = kind {
        let (v, _) = c.call("GET", path, None)?;
        c.print(&az_view(&v), kind);
    }
    Ok(())
}

fn run_command(c: &Client, cmd: AksCommand) -> Result<(), Failure> {
    match cmd {
        AksCommand::Create(a) => {
            let mut pool = pool_properties(&a.pool)?;
            pool.insert("name".into(), json!(a.nodepool_name));
            pool.insert("mode".into(), json!("System"));
            let mut props = Map::new();
            props.insert("agentPoolProfiles".into(), json!([pool]));
            if let Some(k) = &a.kubernetes_version {
                props.insert("kubernetesVersion".into(), json!(k));
            }
            if let Some(addons) = &a.enable_addons {
                let mut profiles = Map::new();
                for addon in addons.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let key = match addon {
                        "virtual-node" => control::model::VIRTUAL_NODE_ADDON,
                        other => {
                            return Err(usage(format!(
                                "--enable-addons: unknown add-on {other:?} (known: virtual-node)"
                            )))
                        }
                    };
                    profiles.insert(key.into(), json!({"enabled": true}));
                }
                props.insert("addonProfiles".into(), Value::Object(profiles));
            }
            let mut body = json!({"properties": props});
            if let Some(l) = &a.location {
                body["location"] = json!(l);
            }
            let path = cluster_path(&a.cluster.resource_group, &a.cluster.name);
            mutate(
                c,
                "PUT",
                &path,
                Some(body),
                a.pool.no_wait,
                Some(Kind::Cluster),
            )
        }
        AksCommand::Show(r) => {
            let (v, _) = c.call("GET", &cluster_path(&r.resource_group, &r.name), None)?;
            c.print(&az_view(&v), Kind::Cluster);
            Ok(())
        }
        AksCommand::List(l) => {
            let path = match &l.resource_group {
                Some(rg) => format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters"),
                None => format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.ContainerService/managedClusters"),
            };
            let (v, _) = c.call("GET", &path, None)?;
            c.print(&az_list(&v), Kind::Cluster);
            Ok(())
        }
        AksCommand::Delete(d) => {
            let path = cluster_path(&d.cluster.resource_group, &d.cluster.name);
            mutate(c, "DELETE", &path, None, d.no_wait, None)
        }
        AksCommand::GetCredentials(g) => get_credentials(c, g),
        AksCommand::Nodepool(cmd) => run_nodepool(c, cmd),
    }
}

fn run_nodepool(c: &Client, cmd: NodepoolCommand) -> Result<(), Failure> {
    match cmd {
        NodepoolCommand::Add(a) => {
            let mut props = pool_properties(&a.pool)?;
            let os = control::OsType::parse(&a.os_type).ok_or_else(|| {
                usage(format!(
                    "--os-type {:?}: expected Linux or Windows",
                    a.os_type
                ))
            })?;
            props.insert("osType".into(), json!(os.as_str()));
            let mode = control::PoolMode::parse(&a.mode)
                .ok_or_else(|| usage(format!("--mode {:?}: expected System or User", a.mode)))?;
            props.insert("mode".into(), json!(mode.as_str()));
            if let Some(k) = &a.kubernetes_version {
                props.insert("orchestratorVersion".into(), json!(k));
            }
            let body = json!({"properties": props});
            mutate(
                c,
                "PUT",
                &pool_path(&a.pool_ref),
                Some(body),
                a.pool.no_wait,
                Some(Kind::AgentPool),
            )
        }
        NodepoolCommand::Update(u) => {
            exclusive(u.enable_secure_boot, u.disable_secure_boot, "secure-boot")?;
            exclusive(u.enable_vtpm, u.disable_vtpm, "vtpm")?;
            // az's update: read the pool, change what was asked, PUT it back.
            let path = pool_path(&u.pool_ref);
            let (current, _) = c.call("GET", &path, None)?;
            let mut sp = current
                .pointer("/properties/securityProfile")
                .cloned()
                .unwrap_or_else(|| json!({}));
            for (on, off, key) in [
                (
                    u.enable_secure_boot,
                    u.disable_secure_boot,
                    "enableSecureBoot",
                ),
                (u.enable_vtpm, u.disable_vtpm, "enableVTPM"),
            ] {
                if on || off {
                    sp[key] = json!(on);
                }
            }
            let mut props = json!({"securityProfile": sp});
            if let Some(s) = &u.max_surge {
                props["upgradeSettings"] = json!({"maxSurge": s});
            }
            mutate(
                c,
                "PUT",
                &path,
                Some(json!({"properties": props})),
                u.no_wait,
                Some(Kind::AgentPool),
            )
        }
        NodepoolCommand::Scale(a) => {
            let path = pool_path(&a.pool_ref);
            let body = json!({"properties": {"count": a.node_count}});
            mutate(
                c,
                "PUT",
                &path,
                Some(body),
                a.no_wait,
                Some(Kind::AgentPool),
            )
        }
        NodepoolCommand::Show(p) => {
            let (v, _) = c.call("GET", &pool_path(&p), None)?;
            c.print(&az_view(&v), Kind::AgentPool);
            Ok(())
        }
        NodepoolCommand::List(l) => {
            let path = format!(
                "{}/agentPools",
                cluster_path(&l.resource_group, &l.cluster_name)
            );
            let (v, _) = c.call("GET", &path, None)?;
            c.print(&az_list(&v), Kind::AgentPool);
            Ok(())
        }
        NodepoolCommand::Delete(d) => {
            mutate(c, "DELETE", &pool_path(&d.pool_ref), None, d.no_wait, None)
        }
        NodepoolCommand::ListNodes(p) => {
            let (v, _) = c.call("GET", &format!("{}/nodes", pool_path(&p)), None)?;
            c.print(v.get("value").unwrap_or(&json!([])), Kind::Node);
            Ok(())
        }
    }
}

/// Replaces the entry named like `entry` in `list` (or appends it).
fn upsert_named(doc: &mut serde_yaml::Value, list: &str, entry: serde_yaml::Value) {
    let name = entry.get("name").cloned();
    if !doc.get(list).is_some_and(serde_yaml::Value::is_sequence) {
        doc[list] = serde_yaml::Value::Sequence(Vec::new());
    }
    if let Some(seq) = doc
        .get_mut(list)
        .and_then(serde_yaml::Value::as_sequence_mut)
    {
        seq.retain(|e| e.get("name") != name.as_ref());
        seq.push(entry);
    }
}

fn get_credentials(c: &Client, g: CredentialsArgs) -> Result<(), Failure> {
    let which = if g.admin {
        "listClusterAdminCredential"
    } else {
        "listClusterUserCredential"
    };
    let path = format!(
        "{}/{which}",
        cluster_path(&g.cluster.resource_group, &g.cluster.name)
    );
    let (v, _) = c.call("POST", &path, Some(&json!({})))?;
    let encoded = v
        .pointer("/kubeconfigs/0/value")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure {
            exit: 8,
            message: "the server returned no kubeconfig".into(),
        })?;
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| Failure {
            exit: 8,
            message: format!("kubeconfig is not base64: {e}"),
        })?;
    let new: serde_yaml::Value = serde_yaml::from_slice(&bytes).map_err(|e| Failure {
        exit: 8,
        message: format!("kubeconfig does not parse: {e}"),
    })?;
    let file = g.file.unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".kube/config")
    });
    let io = |e: std::io::Error| Failure {
        exit: 1,
        message: format!("{}: {e}", file.display()),
    };
    let mut doc: serde_yaml::Value = match std::fs::read_to_string(&file) {
        Ok(t) if !t.trim().is_empty() => serde_yaml::from_str(&t).map_err(|e| Failure {
            exit: 1,
            message: format!("{}: not a kubeconfig: {e}", file.display()),
        })?,
        Ok(_) => serde_yaml::Value::Null,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_yaml::Value::Null,
        Err(e) => return Err(io(e)),
    };
    if !doc.is_mapping() {
        doc = serde_yaml::from_str("{apiVersion: v1, kind: Config, preferences: {}}")
            .unwrap_or_default();
    }
    let context = g.context.unwrap_or_else(|| g.cluster.name.clone());
    for list in ["clusters", "users"] {
        for entry in new
            .get(list)
            .and_then(|v| v.as_sequence())
            .cloned()
            .unwrap_or_default()
        {
            upsert_named(&mut doc, list, entry);
        }
    }
    for mut entry in new
        .get("contexts")
        .and_then(|v| v.as_sequence())
        .cloned()
        .unwrap_or_default()
    {
        entry["name"] = serde_yaml::Value::String(context.clone());
        upsert_named(&mut doc, "contexts", entry);
    }
    doc["current-context"] = serde_yaml::Value::String(context.clone());
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text = serde_yaml::to_string(&doc).map_err(|e| Failure {
        exit: 1,
        message: e.to_string(),
    })?;
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&file)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
    }
    println!(
        "Merged \"{context}\" as current context in {}",
        file.display()
    );
    Ok(())
}

fn exit(result: Result<(), Failure>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(f) => {
            eprintln!("error: {}", f.message);
            Ok(ExitCode::from(f.exit))
        }
    }
}

pub fn run(args: AksArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.conn);
    exit(run_command(&client, args.command))
}

/// `trustlaunch alerts list|ack`.
pub fn run_alerts(args: AlertsArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&args.conn);
    exit((|| {
        let v = match args.command {
            AlertsCommand::List { node } => {
                let path = match node {
                    Some(n) => format!("/admin/alerts?node={n}"),
                    None => "/admin/alerts".to_string(),
                };
                c.call("GET", &path, None)?.0["value"].clone()
            }
            AlertsCommand::Ack { id } => {
                c.call("POST", &format!("/admin/alerts/{id}/ack"), None)?.0
            }
        };
        c.print(&v, Kind::Alert);
        Ok(())
    })())
}

/// `trustlaunch node reboot|tamper|attestations`.
pub fn run_node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&args.conn);
    exit((|| {
        let v = match args.command {
            NodeCommand::Reboot { node } => {
                c.call("POST", &format!("/admin/nodes/{node}/reboot"), None)?
                    .0
            }
            NodeCommand::Relearn { node } => {
                c.call("POST", &format!("/admin/nodes/{node}/relearn"), None)?
                    .0
            }
            NodeCommand::Tamper { node, component } => {
                let body = serde_json::json!({ "component": component });
                c.call("POST", &format!("/admin/nodes/{node}/tamper"), Some(&body))?
                    .0
            }
            NodeCommand::Attestations { node } => c
                .call("GET", &format!("/admin/nodes/{node}/attestations"), None)?
                .0["value"]
                .clone(),
        };
        c.print(&v, Kind::Node);
        Ok(())
    })())
}
