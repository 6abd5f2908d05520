//! Golden tests of the seed's rules through the real binary against a real `trustlaunch up`:
//! each rule's exact message and exit code, az's defaults, and the JSON shapes printed.

mod control_plane;
mod ports;

use control_plane::{failure, sh, Server};
use serde_json::{json, Value};

const RG: &[&str] = &["-g", "rg", "--cluster-name", "c1"];

fn add(server: &Server, name: &str, flags: &[&str]) -> std::process::Output {
    let mut args = vec!["nodepool", "add"];
    args.extend_from_slice(RG);
    args.extend_from_slice(&["-n", name]);
    args.extend_from_slice(flags);
    server.aks(&args)
}

const TL: &str = "error: (TrustedLaunchIncompatibleWithConfig) ";

#[test]
fn every_rule_is_refused_with_its_message_and_exit_code_3() {
    let s = Server::start(None, &[]);
    s.ok(&sh("create -g rg -n c1 --node-count 1"));
    let golden: &[(&str, &[&str], String)] = &[
        ("old", &["-k", "1.25.1", "--enable-vtpm"], format!("{TL}Trusted Launch requires Kubernetes 1.25.2 or later, but the pool would run 1.25.1 (rule: kubernetes-version)")),
        ("old", &["-k", "1.24", "--enable-secure-boot"], format!("{TL}Trusted Launch requires Kubernetes 1.25.2 or later, but the pool would run 1.24.15 (rule: kubernetes-version)")),
        ("gen1", &["-s", "Standard_A1_v2", "--enable-secure-boot"], format!("{TL}Trusted Launch supports Generation 2 VMs only, and VM size Standard_A1_v2 has no Generation 2 image (rule: generation-2-only)")),
        ("win", &["--os-type", "Windows", "--enable-vtpm"], format!("{TL}Trusted Launch does not support node pools running Windows Server (rule: no-windows)")),
        ("fips", &["--enable-fips-image", "--enable-vtpm"], format!("{TL}Trusted Launch does not support node pools with FIPS enabled (rule: no-fips)")),
        ("arm", &["-s", "Standard_D4ps_v5", "--enable-vtpm"], format!("{TL}Trusted Launch does not support Arm64 node pools, and VM size Standard_D4ps_v5 is Arm64 (rule: no-arm64)")),
        ("avset", &sh("--vm-set-type AvailabilitySet --enable-secure-boot --enable-vtpm"), format!("{TL}Trusted Launch supports virtual machine scale sets only, not availability sets (rule: scale-sets-only)")),
        ("gpu", &["-s", "Standard_NC6s_v3", "--enable-secure-boot"], format!("{TL}Secure Boot on GPU node pool with VM size Standard_NC6s_v3 requires skipping GPU driver installation (--gpu-driver None or --skip-gpu-driver-install): the GPU driver is not signed (rule: gpu-secure-boot-driver)")),
        ("gpu", &sh("-s Standard_NC6s_v3 --enable-secure-boot --gpu-driver Install"), format!("{TL}Secure Boot on GPU node pool with VM size Standard_NC6s_v3 requires skipping GPU driver installation (--gpu-driver None or --skip-gpu-driver-install): the GPU driver is not signed (rule: gpu-secure-boot-driver)")),
        ("eph", &sh("-s Standard_D4s_v5 --node-osdisk-type Ephemeral --enable-vtpm"), format!("{TL}VM size Standard_D4s_v5 does not support ephemeral OS disks with Trusted Launch; use --node-osdisk-type Managed or another size (rule: ephemeral-os-disk-size)")),
        ("NodePool", &[], "error: (InvalidAgentPoolName) Agent pool name \"NodePool\" is invalid: Linux pool names must be lowercase alphanumeric, start with a lowercase letter and be 1 to 11 characters long (rule: pool-name)".to_string()),
        ("1pool", &[], "error: (InvalidAgentPoolName) Agent pool name \"1pool\" is invalid: Linux pool names must be lowercase alphanumeric, start with a lowercase letter and be 1 to 11 characters long (rule: pool-name)".to_string()),
        ("abcdefghijkl", &[], "error: (InvalidAgentPoolName) Agent pool name \"abcdefghijkl\" is invalid: Linux pool names must be lowercase alphanumeric, start with a lowercase letter and be 1 to 11 characters long (rule: pool-name)".to_string()),
        ("pool-1", &[], "error: (InvalidAgentPoolName) Agent pool name \"pool-1\" is invalid: Linux pool names must be lowercase alphanumeric, start with a lowercase letter and be 1 to 11 characters long (rule: pool-name)".to_string()),
        ("windows", &["--os-type", "Windows"], "error: (InvalidAgentPoolName) Agent pool name \"windows\" is invalid: Windows pool names must be lowercase alphanumeric, start with a lowercase letter and be 1 to 6 characters long (rule: pool-name)".to_string()),
        ("size", &["-s", "Standard_Nope"], "error: (InvalidVMSize) VM size \"Standard_Nope\" is not in this server's VM-size catalog".to_string()),
        ("surge", &["--max-surge", "0"], "error: (InvalidMaxSurge) max surge \"0\" is neither a positive count nor a percentage between 1% and 100%".to_string()),
    ];
    for (name, flags, want) in golden {
        let (code, stderr) = failure(&add(&s, name, flags));
        assert_eq!(
            (code, stderr.as_str()),
            (3, want.as_str()),
            "nodepool add -n {name} {flags:?}"
        );
    }
    // Nothing refused was stored.
    let pools = s.ok(&sh("nodepool list -g rg --cluster-name c1"));
    assert_eq!(pools.as_array().map(Vec::len), Some(1), "{pools:#}");

    // The allowed neighbours of each rule.
    for (name, flags) in [
        ("boundary", &sh("-k 1.25.2 --enable-vtpm -c 1")[..]),
        ("abcdefghijk", &["-c", "1"]),
        (
            "gpunone",
            &sh("-s Standard_NC6s_v3 --enable-secure-boot --gpu-driver None -c 1"),
        ),
        (
            "gpuskip",
            &sh("-s Standard_NC6s_v3 --enable-secure-boot --skip-gpu-driver-install -c 1"),
        ),
        ("gpuvtpm", &sh("-s Standard_NC6s_v3 --enable-vtpm -c 1")),
        (
            "eph",
            &sh("-s Standard_D2s_v3 --node-osdisk-type Ephemeral --enable-vtpm -c 1"),
        ),
        ("gen1", &sh("-s Standard_A1_v2 -c 1")),
        ("arm", &sh("-s Standard_D4ps_v5 -c 1")),
        (
            "mariner",
            &sh("--os-sku Mariner --enable-secure-boot --enable-vtpm -c 1"),
        ),
        ("win", &sh("--os-type Windows -c 1")),
    ] {
        let mut args = vec!["nodepool", "add"];
        args.extend_from_slice(RG);
        args.extend_from_slice(&["-n", name]);
        args.extend_from_slice(flags);
        let pool = s.ok(&args);
        assert_eq!(pool["provisioningState"], "Succeeded", "{name}: {pool:#}");
        let want = match name {
            "mariner" => "AKSAzureLinux-V2gen2TL-202411.01.0",
            "gen1" => "AKSUbuntu-2204containerd-202411.01.0",
            "arm" => "AKSUbuntu-2204gen2arm64containerd-202411.01.0",
            "win" => "AKSWindows-2022-containerd-20348.2762.241009",
            _ => "AKSUbuntu-2204gen2TLcontainerd-202411.01.0",
        };
        assert_eq!(pool["nodeImageVersion"], want, "{name}");
    }
    // Enabling Trusted Launch on an incompatible pool later is refused by the same rules.
    let (code, stderr) = failure(&s.aks(&sh(
        "nodepool update -g rg --cluster-name c1 -n gen1 --enable-vtpm",
    )));
    assert_eq!(code, 3);
    assert!(stderr.ends_with("(rule: generation-2-only)"), "{stderr}");
}

#[test]
fn cluster_rules_virtual_nodes_and_version() {
    let s = Server::start(None, &[]);
    let (code, stderr) = failure(&s.aks(&sh(
        "create -g rg -n vn --enable-addons virtual-node --enable-vtpm",
    )));
    assert_eq!((code, stderr.as_str()), (3, format!("{TL}Trusted Launch does not support virtual nodes (the virtual-node add-on) (rule: no-virtual-nodes)").as_str()));
    s.ok(&sh("create -g rg -n vn --enable-addons virtual-node -c 1"));
    let (code, stderr) = failure(&s.aks(&sh(
        "nodepool add -g rg --cluster-name vn -n tl --enable-secure-boot",
    )));
    assert_eq!(code, 3);
    assert!(stderr.ends_with("(rule: no-virtual-nodes)"), "{stderr}");
    let (code, stderr) = failure(&s.aks(&sh(
        "create -g rg -n old -k 1.24.9 --enable-secure-boot --enable-vtpm",
    )));
    assert_eq!(code, 3);
    assert!(stderr.ends_with("(rule: kubernetes-version)"), "{stderr}");
    let (code, _) = failure(&s.aks(&sh("create -g rg -n bad -k one.two")));
    assert_eq!(code, 3);
    // Creating an existing cluster again is a conflict (exit 5), not a silent overwrite.
    let (code, stderr) = failure(&s.aks(&sh("create -g rg -n vn")));
    assert_eq!(code, 5, "{stderr}");
}

#[test]
fn command_line_errors() {
    let s = Server::start(None, &[]);
    s.ok(&sh("create -g rg -n c1 -c 1"));
    s.ok(&sh("nodepool add -g rg --cluster-name c1 -n np -c 1"));
    for feature in ["secure-boot", "vtpm"] {
        let (on, off) = (
            format!("--enable-{feature}"),
            format!("--disable-{feature}"),
        );
        let (code, stderr) = failure(&s.aks(&[
            "nodepool",
            "update",
            "-g",
            "rg",
            "--cluster-name",
            "c1",
            "-n",
            "np",
            &on,
            &off,
        ]));
        assert_eq!(
            (code, stderr.as_str()),
            (
                2,
                format!("error: Cannot specify \"{on}\" and \"{off}\" at the same time").as_str()
            )
        );
    }
    let (code, stderr) = failure(&s.aks(&sh(
        "nodepool add -g rg --cluster-name c1 -n x --enable-utcm",
    )));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unexpected argument '--enable-utcm'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tip: a similar argument exists: '--enable-vtpm'"),
        "{stderr}"
    );
    let (code, stderr) = failure(&s.aks(&sh("show -g rg -n nope")));
    assert_eq!(
        (code, stderr.as_str()),
        (
            4,
            "error: (ResourceNotFound) managed cluster \"rg/nope\" was not found"
        )
    );
    let (code, stderr) = failure(&s.aks(&sh("nodepool show -g rg --cluster-name c1 -n nope")));
    assert_eq!(
        (code, stderr.as_str()),
        (
            4,
            "error: (ResourceNotFound) agent pool \"rg/c1/nope\" was not found"
        )
    );
    let (code, stderr) = failure(&s.aks(&sh("show -g rg -n c1 --token wrong")));
    assert_eq!(code, 7, "{stderr}");
    assert!(stderr.contains("(Unauthorized)"), "{stderr}");
    // The last System pool stays.
    let (code, _) = failure(&s.aks(&sh("nodepool delete -g rg --cluster-name c1 -n nodepool1")));
    assert_eq!(code, 5);
    // No server: exit 6 and how to start one.
    let free = ports::free_port_pair();
    let (code, stderr) =
        failure(&s.aks(&["list", "--endpoint", &format!("http://127.0.0.1:{free}")]));
    assert_eq!(code, 6);
    assert!(
        stderr.contains("no trustlaunch server reachable") && stderr.contains("trustlaunch up"),
        "{stderr}"
    );
    let help = std::process::Command::new(control_plane::EXE)
        .args(["aks", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for line in [
        "Exit codes:",
        "  3  the request was refused (HTTP 400)",
        "  6  no trustlaunch server reachable",
    ] {
        assert!(help.contains(line), "{help}");
    }
}

/// The keys `nodepool show -o json` prints, and their default values (az's defaults).
#[test]
fn defaults_and_json_shapes() {
    let s = Server::start(None, &[]);
    let cluster = s.ok(&sh(
        "create -g rg -n c1 --node-count 1 --enable-secure-boot --enable-vtpm --generate-ssh-keys",
    ));
    let keys: Vec<&str> = cluster
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "addonProfiles",
            "agentPoolProfiles",
            "currentKubernetesVersion",
            "dnsPrefix",
            "enableRBAC",
            "fqdn",
            "id",
            "kubernetesVersion",
            "location",
            "name",
            "nodeResourceGroup",
            "powerState",
            "provisioningState",
            "resourceGroup",
            "type",
        ]
    );
    assert_eq!(cluster["id"], "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1");
    assert_eq!(
        cluster["type"],
        "Microsoft.ContainerService/ManagedClusters"
    );
    assert_eq!(cluster["provisioningState"], "Succeeded");
    assert_eq!(cluster["agentPoolProfiles"][0]["name"], "nodepool1");
    assert_eq!(cluster["agentPoolProfiles"][0]["mode"], "System");
    assert_eq!(cluster["agentPoolProfiles"][0]["count"], 1);
    assert_eq!(
        cluster["agentPoolProfiles"][0]["securityProfile"],
        json!({"enableSecureBoot": true, "enableVTPM": true})
    );

    let pool = s.ok(&sh("nodepool add -g rg --cluster-name c1 -n mynodepool"));
    assert_eq!(
        pool,
        json!({
            "count": 3,
            "currentOrchestratorVersion": "1.30.6",
            "enableFIPS": false,
            "gpuProfile": null,
            "id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1/agentPools/mynodepool",
            "mode": "User",
            "name": "mynodepool",
            "nodeImageVersion": "AKSUbuntu-2204gen2TLcontainerd-202411.01.0",
            "orchestratorVersion": "1.30.6",
            "osDiskType": "Managed",
            "osSKU": "Ubuntu",
            "osType": "Linux",
            "powerState": {"code": "Running"},
            "provisioningState": "Succeeded",
            "resourceGroup": "rg",
            "securityProfile": {"enableSecureBoot": false, "enableVTPM": false},
            "type": "Microsoft.ContainerService/managedClusters/agentPools",
            "typePropertiesType": "VirtualMachineScaleSets",
            "upgradeSettings": {"maxSurge": "1"},
            "vmSize": "Standard_DS2_v2",
        })
    );
    assert_eq!(
        s.ok(&sh("nodepool show -g rg --cluster-name c1 -n mynodepool")),
        pool
    );

    let nodes = s.ok(&sh(
        "nodepool list-nodes -g rg --cluster-name c1 -n mynodepool",
    ));
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    let keys: Vec<&str> = nodes[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "attestation",
            "bootCount",
            "clusterName",
            "conditions",
            "cordoned",
            "createdAt",
            "labels",
            "name",
            "nodeImageVersion",
            "ordinal",
            "poolName",
            "resourceGroup",
            "securityProfile",
            "taints",
            "vmSize",
        ]
    );
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(
            n["attestation"],
            json!({"status": "Pending"}),
            "no backend attested: Pending, never invented"
        );
        assert_eq!(n["bootCount"], 1);
        assert_eq!(n["cordoned"], false);
        assert_eq!(n["ordinal"], i);
        assert!(n["name"].as_str().unwrap().starts_with("aks-mynodepool-"));
        assert!(n["name"]
            .as_str()
            .unwrap()
            .ends_with(&format!("-vmss{i:06x}")));
    }

    // The other output formats of the same pool.
    let text = |args: &[&str]| String::from_utf8(s.aks(args).stdout).unwrap();
    let show = [
        "nodepool",
        "show",
        "-g",
        "rg",
        "--cluster-name",
        "c1",
        "-n",
        "mynodepool",
    ];
    let table = text(&[&show[..], &["-o", "table"]].concat());
    assert_eq!(table, "\
Name        OsType  KubernetesVersion  VmSize           Count  SecureBoot  VTPM   ProvisioningState  Mode
----------  ------  -----------------  ---------------  -----  ----------  -----  -----------------  ----
mynodepool  Linux   1.30.6             Standard_DS2_v2  3      False       False  Succeeded          User
");
    let tsv = text(&[&show[..], &["-o", "tsv"]].concat());
    assert_eq!(tsv, "3\t1.30.6\tFalse\t\t/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1/agentPools/mynodepool\tUser\tmynodepool\tAKSUbuntu-2204gen2TLcontainerd-202411.01.0\t1.30.6\tManaged\tUbuntu\tLinux\tSucceeded\trg\tMicrosoft.ContainerService/managedClusters/agentPools\tVirtualMachineScaleSets\tStandard_DS2_v2\n");
    let yaml: Value = serde_yaml::from_str(&text(&[&show[..], &["-o", "yaml"]].concat())).unwrap();
    assert_eq!(yaml, pool);
    let jsonc = text(&[&show[..], &["-o", "jsonc"]].concat());
    assert!(jsonc.contains("\x1b[") && jsonc.contains("mynodepool"));

    // --no-wait prints nothing and returns before the operation ends; the pool gets there.
    let out = s.aks(&sh(
        "nodepool add -g rg --cluster-name c1 -n later --no-wait",
    ));
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    s.until(
        &sh("nodepool show -g rg --cluster-name c1 -n later"),
        30,
        |p| p["provisioningState"] == "Succeeded",
    );
    let list = s.ok(&["list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(
        list[0]["agentPoolProfiles"].as_array().map(Vec::len),
        Some(3)
    );
}

/// The REST API itself: ARM's error shape, authentication, the body limit, the async
/// operation protocol, and the Kubernetes node API's read key.
#[test]
fn rest_api_errors_and_operations() {
    let s = Server::start(None, &["--max-body", "4096"]);
    let token = std::fs::read_to_string(s.dir.join("admin-token")).unwrap();
    let token = token.trim();
    let cluster = format!("{}/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1", s.url);
    let auth = format!("Bearer {token}");
    let err = |r: Result<ureq::Response, ureq::Error>| -> (u16, Value) {
        match r {
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_json().unwrap()),
            other => panic!("expected an HTTP error, got {other:?}"),
        }
    };
    assert_eq!(
        ureq::get(&format!("{}/healthz", s.url))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
        "ok\n"
    );
    let (code, body) = err(ureq::get(&cluster).call());
    assert_eq!(code, 401);
    assert_eq!(body["error"]["code"], "Unauthorized");
    let (code, body) = err(ureq::get(&cluster)
        .set("Authorization", "Bearer nope")
        .call());
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("Unauthorized"))
    );
    let (code, body) = err(ureq::put(&cluster)
        .set("Authorization", &auth)
        .send_string(&"x".repeat(5000)));
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (413, Some("RequestEntityTooLarge"))
    );
    let (code, body) = err(ureq::put(&cluster)
        .set("Authorization", &auth)
        .send_string("{not json"));
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (400, Some("InvalidRequestContent"))
    );
    let (code, body) = err(ureq::get(&format!("{}/nope", s.url))
        .set("Authorization", &auth)
        .call());
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (404, Some("NotFound"))
    );
    let (code, body) = err(ureq::get(&cluster).set("Authorization", &auth).call());
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (404, Some("ResourceNotFound"))
    );

    let created = ureq::put(&cluster)
        .set("Authorization", &auth)
        .send_json(json!({"location": "westeurope", "properties": {"agentPoolProfiles": [{"name": "sys", "count": 2, "securityProfile": {"enableVTPM": true}}]}}))
        .unwrap();
    assert_eq!(created.status(), 201);
    let op_url = created.header("azure-asyncoperation").unwrap().to_string();
    assert!(op_url.starts_with(&format!("{}/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.ContainerService/operations/", s.url)), "{op_url}");
    let body: Value = created.into_json().unwrap();
    assert_eq!(body["properties"]["provisioningState"], "Creating");
    assert_eq!(body["location"], "westeurope");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let op = loop {
        let op: Value = ureq::get(&op_url)
            .set("Authorization", &auth)
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        if op["status"] != "InProgress" {
            break op;
        }
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(op["status"], "Succeeded");
    assert_eq!(op["percentComplete"], 100.0);
    assert_eq!(op["kind"], "CreateCluster");
    assert_eq!(op["stepsTotal"], 4, "create + attest for each of 2 nodes");
    assert_eq!(op["stepsDone"], 4);
    assert_eq!(op["name"], op["id"]);
    let rule = ureq::put(&format!("{cluster}/agentPools/gen1"))
        .set("Authorization", &auth)
        .send_json(json!({"properties": {"vmSize": "Standard_A1_v2", "securityProfile": {"enableSecureBoot": true}}}));
    let (code, body) = err(rule);
    assert_eq!(code, 400);
    assert_eq!(body["error"]["code"], "TrustedLaunchIncompatibleWithConfig");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .ends_with("(rule: generation-2-only)"));

    // The Kubernetes node API: the kubeconfig's URL carries the cluster's read key.
    let creds: Value = ureq::post(&format!("{cluster}/listClusterUserCredential"))
        .set("Authorization", &auth)
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    use base64::Engine as _;
    let kubeconfig: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(creds["kubeconfigs"][0]["value"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        !kubeconfig.to_string().contains(token),
        "the admin token stays on the server"
    );
    let server = kubeconfig["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap();
    let list: Value = ureq::get(&format!(
        "{server}/api/v1/nodes?labelSelector=kubernetes.azure.com/trusted-launch%3Dtrue"
    ))
    .call()
    .unwrap()
    .into_json()
    .unwrap();
    assert_eq!(list["kind"], "NodeList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
    let (code, _) = err(ureq::get(&format!(
        "{}/k8s/rg/c1/{}/api/v1/nodes",
        s.url,
        "0".repeat(64)
    ))
    .call());
    assert_eq!(code, 401);
}

/// Two updates of one pool at the same moment: one starts the rolling reimage, the other is
/// told another operation is running (409, exit 5); never two operations on one pool.
#[test]
fn concurrent_updates_start_one_operation() {
    let s = Server::start(None, &["--simulate-boot-ms", "200"]);
    s.ok(&sh("create -g rg -n c1 -c 1"));
    s.ok(&sh("nodepool add -g rg --cluster-name c1 -n np -c 2"));
    let codes: Vec<i32> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["--enable-vtpm", "--enable-secure-boot"]
            .into_iter()
            .map(|flag| {
                let s = &s;
                scope.spawn(move || {
                    let args =
                        format!("nodepool update -g rg --cluster-name c1 -n np {flag} --no-wait");
                    s.aks(&sh(&args)).status.code().unwrap_or(-1)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(sorted, [0, 5], "{codes:?}");
}
