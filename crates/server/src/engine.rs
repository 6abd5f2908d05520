//! Runs long-running operations: each step of an operation's plan, in order, the steps of one
//! phase of one batch concurrently (that is what `--max-surge` allows), recording progress
//! after each phase so that a restarted server resumes where the store says it stopped.
//! Steps are idempotent; a resumed phase may run again.

use crate::time;
use control::labels::node_labels;
use control::model::{parse_node_name, Node, ResourceId};
use control::{
    AgentPool, Attestation, AttestationStatus, BootReport, ErrorDetail, NodeBackend, NodeCondition,
    NodeSpec, Operation, OperationKind, ReimageStep, StepAction, Taint,
};
use std::sync::Arc;
use store::{Store, StoreError};
use tokio::task::JoinSet;

/// The taint a node carries while its latest attestation is Unhealthy.
pub const ATTESTATION_TAINT: &str = "kubernetes.azure.com/attestation-failed";
/// The condition that reports the latest attestation.
pub const ATTESTATION_CONDITION: &str = "AttestationHealthy";

/// Why a step, and so its operation, failed.
#[derive(Debug)]
struct StepFailure(ErrorDetail);

impl From<StoreError> for StepFailure {
    fn from(e: StoreError) -> Self {
        Self(ErrorDetail {
            code: "InternalServerError".into(),
            message: e.to_string(),
        })
    }
}

fn failure(code: &str, message: String) -> StepFailure {
    StepFailure(ErrorDetail {
        code: code.to_string(),
        message,
    })
}

#[derive(Clone)]
pub struct Engine {
    store: Store,
    backend: Arc<dyn NodeBackend>,
}

impl Engine {
    pub fn new(store: Store, backend: Arc<dyn NodeBackend>) -> Self {
        Self { store, backend }
    }

    /// Records `op` and starts running it in the background.
    pub async fn start(&self, op: Operation) -> Result<(), StoreError> {
        if self.store.operations().insert(&op).await? {
            self.spawn(op);
        }
        Ok(())
    }

    /// Restarts every operation the store holds as unfinished; returns how many. A resource
    /// left in a transitional state with no operation behind it (the server stopped between
    /// writing the resource and recording its operation) is marked `Failed`, so that it can
    /// be updated or deleted again instead of staying busy forever.
    pub async fn resume_unfinished(&self) -> Result<usize, StoreError> {
        let ops = self.store.operations().list_unfinished().await?;
        let covered = |id: &str| {
            ops.iter()
                .any(|o| id == o.resource_id || id.starts_with(&format!("{}/", o.resource_id)))
        };
        for mut cluster in self.store.clusters().list(None).await? {
            let rg = cluster.resource_group();
            for mut pool in self.store.agent_pools().list(&rg, &cluster.name).await? {
                if transitional(&pool.properties.provisioning_state) && !covered(&pool.id) {
                    pool.properties.provisioning_state = "Failed".into();
                    self.store
                        .agent_pools()
                        .put(&rg, &cluster.name, &pool)
                        .await?;
                }
            }
            if transitional(&cluster.properties.provisioning_state) && !covered(&cluster.id) {
                cluster.properties.provisioning_state = "Failed".into();
                self.store.clusters().put(&cluster).await?;
            }
        }
        let n = ops.len();
        for op in ops {
            self.spawn(op);
        }
        Ok(n)
    }

    fn spawn(&self, op: Operation) {
        let engine = self.clone();
        tokio::spawn(async move { engine.run(op).await });
    }

    async fn run(self, mut op: Operation) {
        let outcome = self.run_steps(&mut op).await;
        let outcome = match outcome {
            Ok(()) => self.complete(&op).await,
            Err(e) => Err(e),
        };
        let error = outcome.err().map(|f| f.0);
        if error.is_some() {
            // Best effort: the resource shows Failed; the operation carries the reason.
            let _ = self.mark_failed(&op).await;
        }
        op.finish(error, time::now());
        if let Err(e) = self.store.operations().save_progress(&op).await {
            eprintln!(
                "trustlaunch: cannot record the end of operation {}: {e}",
                op.id
            );
        }
    }

    async fn run_steps(&self, op: &mut Operation) -> Result<(), StepFailure> {
        let rid = ResourceId::parse(&op.resource_id).ok_or_else(|| {
            failure(
                "InternalServerError",
                format!("operation names no resource: {}", op.resource_id),
            )
        })?;
        let steps = op.plan.steps.clone();
        let mut i = op.steps_done as usize;
        while let Some(first) = steps.get(i) {
            let end = steps
                .iter()
                .skip(i)
                .position(|s| s.batch != first.batch || s.action != first.action)
                .map_or(steps.len(), |n| i + n);
            op.current_step = format!("{:?} batch {}", first.action, first.batch + 1);
            let mut set = JoinSet::new();
            for step in steps.get(i..end).unwrap_or_default() {
                let (engine, rid, step) = (self.clone(), rid.clone(), step.clone());
                set.spawn(async move { engine.step(&rid, &step).await });
            }
            let mut result = Ok(());
            while let Some(joined) = set.join_next().await {
                let r = joined
                    .map_err(|e| failure("InternalServerError", e.to_string()))
                    .and_then(|r| r);
                if result.is_ok() {
                    result = r;
                }
            }
            result?;
            op.advance(end as u32);
            self.store.operations().save_progress(op).await?;
            i = end;
        }
        Ok(())
    }

    async fn pool(&self, rid: &ResourceId, pool: &str) -> Result<AgentPool, StepFailure> {
        self.store
            .agent_pools()
            .get(&rid.resource_group, &rid.cluster, pool)
            .await?
            .ok_or_else(|| failure("NotFound", format!("agent pool {pool} is gone")))
    }

    async fn node(&self, name: &str) -> Result<Node, StepFailure> {
        self.store
            .nodes()
            .get(name)
            .await?
            .ok_or_else(|| failure("NotFound", format!("node {name} is gone")))
    }

    /// The node as its pool says it should be (labels, image, security profile).
    fn desired(
        rid: &ResourceId,
        pool: &AgentPool,
        name: &str,
        ordinal: u32,
        base: Option<Node>,
    ) -> Node {
        let p = &pool.properties;
        let mut node = base.unwrap_or_else(|| Node {
            name: name.to_string(),
            resource_group: rid.resource_group.clone(),
            cluster_name: rid.cluster.clone(),
            pool_name: pool.name.clone(),
            ordinal,
            vm_size: p.vm_size.clone(),
            labels: Default::default(),
            taints: Vec::new(),
            conditions: Vec::new(),
            node_image_version: String::new(),
            security_profile: p.security_profile,
            boot_count: 0,
            cordoned: false,
            attestation: Attestation::default(),
            created_at: time::now(),
        });
        node.labels = node_labels(&rid.cluster, &pool.name, p, name);
        node.node_image_version = p.node_image_version.clone();
        node.security_profile = p.security_profile;
        node.vm_size = p.vm_size.clone();
        node
    }

    fn spec(node: &Node) -> NodeSpec {
        NodeSpec {
            name: node.name.clone(),
            resource_group: node.resource_group.clone(),
            cluster_name: node.cluster_name.clone(),
            pool_name: node.pool_name.clone(),
            vm_size: node.vm_size.clone(),
            node_image_version: node.node_image_version.clone(),
            security_profile: node.security_profile,
            labels: node.labels.clone(),
        }
    }

    /// Boots `node` through the backend (create or reimage) and records what it reported.
    async fn boot(&self, mut node: Node, reimage: bool) -> Result<(), StepFailure> {
        let backend = self.backend.clone();
        let spec = Self::spec(&node);
        let report = tokio::task::spawn_blocking(move || {
            if reimage {
                backend.reimage(&spec)
            } else {
                backend.create(&spec)
            }
        })
        .await
        .map_err(|e| failure("InternalServerError", e.to_string()))?
        .map_err(|e| failure("NodeBackendFailed", format!("node {}: {e}", node.name)))?;
        let booted = apply_report(&mut node, &report);
        self.store.nodes().put(&node).await?;
        if booted {
            Ok(())
        } else {
            Err(failure(
                "NodeBootFailed",
                format!(
                    "node {} did not boot: {}",
                    node.name,
                    report.failure.as_deref().unwrap_or("no reason given")
                ),
            ))
        }
    }

    /// Reboot one node outside any operation (same disk, same vTPM) and record the boot and
    /// its attestation. Returns the node as recorded.
    pub async fn reboot(&self, name: &str) -> Result<Option<Node>, (String, String)> {
        let Some(mut node) = self
            .store
            .nodes()
            .get(name)
            .await
            .map_err(|e| ("InternalServerError".to_string(), e.to_string()))?
        else {
            return Ok(None);
        };
        let backend = self.backend.clone();
        let spec = Self::spec(&node);
        let report = tokio::task::spawn_blocking(move || backend.reboot(&spec))
            .await
            .map_err(|e| ("InternalServerError".to_string(), e.to_string()))?
            .map_err(|e| ("NodeBackendFailed".to_string(), format!("node {name}: {e}")))?;
        apply_report(&mut node, &report);
        apply_attestation(&mut node);
        self.store
            .nodes()
            .put(&node)
            .await
            .map_err(|e| ("InternalServerError".to_string(), e.to_string()))?;
        Ok(Some(node))
    }

    /// Record an attestation a node's agent pushed (the verdict itself is in the verifier's
    /// journal); a node the management plane no longer has is left alone.
    pub async fn record_attestation(
        &self,
        name: &str,
        attestation: Attestation,
    ) -> Result<(), StoreError> {
        if let Some(mut node) = self.store.nodes().get(name).await? {
            node.attestation = attestation;
            apply_attestation(&mut node);
            self.store.nodes().put(&node).await?;
        }
        Ok(())
    }

    /// Tamper with a node's disk (demos and tests).
    pub async fn tamper(&self, name: &str, component: &str) -> Result<String, (String, String)> {
        let backend = self.backend.clone();
        let (n, c) = (name.to_string(), component.to_string());
        tokio::task::spawn_blocking(move || backend.tamper(&n, &c))
            .await
            .map_err(|e| ("InternalServerError".to_string(), e.to_string()))?
            .map_err(|e| ("NodeBackendFailed".to_string(), e.to_string()))
    }

    async fn step(&self, rid: &ResourceId, step: &ReimageStep) -> Result<(), StepFailure> {
        let name = step.node.as_str();
        match step.action {
            StepAction::Create => {
                let (pool_name, ordinal) = parse_node_name(name).ok_or_else(|| {
                    failure("InternalServerError", format!("bad node name {name}"))
                })?;
                let pool = self.pool(rid, pool_name).await?;
                let existing = self.store.nodes().get(name).await?;
                let node = Self::desired(rid, &pool, name, ordinal, existing);
                self.boot(node, false).await
            }
            StepAction::Cordon | StepAction::Uncordon => {
                let mut node = self.node(name).await?;
                node.cordoned = step.action == StepAction::Cordon;
                self.store.nodes().put(&node).await?;
                Ok(())
            }
            // No workloads run on the nodes yet, so there is nothing to evict; disruption
            // budgets apply here once pods exist.
            StepAction::Drain => self.node(name).await.map(drop),
            StepAction::Reimage => {
                let node = self.node(name).await?;
                let pool = self.pool(rid, &node.pool_name.clone()).await?;
                let node = Self::desired(rid, &pool, name, node.ordinal, Some(node));
                self.boot(node, true).await
            }
            StepAction::Attest => {
                let mut node = self.node(name).await?;
                apply_attestation(&mut node);
                self.store.nodes().put(&node).await?;
                Ok(())
            }
            StepAction::Delete => {
                let backend = self.backend.clone();
                let owned = name.to_string();
                tokio::task::spawn_blocking(move || backend.delete(&owned))
                    .await
                    .map_err(|e| failure("InternalServerError", e.to_string()))?
                    .map_err(|e| failure("NodeBackendFailed", format!("node {name}: {e}")))?;
                self.store.nodes().delete(name).await?;
                Ok(())
            }
        }
    }

    async fn set_state(&self, rid: &ResourceId, state: &str) -> Result<(), StoreError> {
        let pools = self.store.agent_pools();
        let names: Vec<String> = match &rid.agent_pool {
            Some(p) => vec![p.clone()],
            None => pools
                .list(&rid.resource_group, &rid.cluster)
                .await?
                .into_iter()
                .map(|p| p.name)
                .collect(),
        };
        for name in names {
            if let Some(mut p) = pools.get(&rid.resource_group, &rid.cluster, &name).await? {
                p.properties.provisioning_state = state.to_string();
                pools.put(&rid.resource_group, &rid.cluster, &p).await?;
            }
        }
        if rid.agent_pool.is_none() {
            let clusters = self.store.clusters();
            if let Some(mut c) = clusters.get(&rid.resource_group, &rid.cluster).await? {
                c.properties.provisioning_state = state.to_string();
                clusters.put(&c).await?;
            }
        }
        Ok(())
    }

    async fn complete(&self, op: &Operation) -> Result<(), StepFailure> {
        let rid = ResourceId::parse(&op.resource_id)
            .ok_or_else(|| failure("InternalServerError", op.resource_id.clone()))?;
        match op.kind {
            OperationKind::DeleteCluster => {
                self.store
                    .clusters()
                    .delete(&rid.resource_group, &rid.cluster)
                    .await?;
            }
            OperationKind::DeleteAgentPool => {
                let pool = rid.agent_pool.clone().unwrap_or_default();
                self.store
                    .agent_pools()
                    .delete(&rid.resource_group, &rid.cluster, &pool)
                    .await?;
            }
            _ => self.set_state(&rid, "Succeeded").await?,
        }
        Ok(())
    }

    async fn mark_failed(&self, op: &Operation) -> Result<(), StoreError> {
        match ResourceId::parse(&op.resource_id) {
            Some(rid) => self.set_state(&rid, "Failed").await,
            None => Ok(()),
        }
    }
}

/// A provisioning state that only an operation in progress should leave behind.
fn transitional(state: &str) -> bool {
    matches!(state, "Creating" | "Updating" | "Deleting")
}

fn set_condition(node: &mut Node, kind: &str, status: &str, reason: &str, message: String) {
    node.conditions.retain(|c| c.kind != kind);
    node.conditions.push(NodeCondition {
        kind: kind.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
    });
}

/// Records a boot: the count, readiness, and the attestation exactly as reported (`Pending`
/// when the backend attested nothing). Returns whether the node booted.
fn apply_report(node: &mut Node, report: &BootReport) -> bool {
    node.boot_count += 1;
    if report.booted {
        set_condition(
            node,
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status".into(),
        );
    } else {
        let why = report.failure.clone().unwrap_or_default();
        set_condition(node, "Ready", "False", "BootFailed", why);
    }
    let status = report.attestation.unwrap_or(AttestationStatus::Pending);
    node.attestation = Attestation {
        status,
        token: match status {
            AttestationStatus::Healthy => report.evidence.as_ref().and_then(|e| {
                e.as_str()
                    .map(str::to_string)
                    .or_else(|| Some(e.to_string()))
            }),
            _ => None,
        },
        alert: match status {
            AttestationStatus::Unhealthy => report.evidence.clone(),
            _ => None,
        },
    };
    report.booted
}

/// Reflects the latest attestation in the node's taints and conditions: Unhealthy nodes get a
/// NoSchedule taint and a condition saying why; Pending says it is pending.
fn apply_attestation(node: &mut Node) {
    node.taints.retain(|t| t.key != ATTESTATION_TAINT);
    let (status, reason, message) = match node.attestation.status {
        AttestationStatus::Healthy => (
            "True",
            "AttestationSucceeded",
            "the node booted as expected".to_string(),
        ),
        AttestationStatus::Pending => (
            "Unknown",
            "AttestationPending",
            "no attestation has been reported for this boot".to_string(),
        ),
        AttestationStatus::Unhealthy => {
            node.taints.push(Taint {
                key: ATTESTATION_TAINT.to_string(),
                value: "true".to_string(),
                effect: "NoSchedule".to_string(),
            });
            let alert = node
                .attestation
                .alert
                .as_ref()
                .map(|a| a.to_string())
                .unwrap_or_default();
            (
                "False",
                "IntegrityAlert",
                format!("attestation failed: {alert}"),
            )
        }
    };
    set_condition(node, ATTESTATION_CONDITION, status, reason, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            name: "n".into(),
            resource_group: "rg".into(),
            cluster_name: "c".into(),
            pool_name: "np".into(),
            ordinal: 0,
            vm_size: "Standard_D2s_v3".into(),
            labels: Default::default(),
            taints: vec![],
            conditions: vec![],
            node_image_version: String::new(),
            security_profile: Default::default(),
            boot_count: 0,
            cordoned: false,
            attestation: Attestation::default(),
            created_at: "2026-11-28T17:00:00Z".into(),
        }
    }

    #[tokio::test]
    async fn a_busy_resource_without_an_operation_is_failed_on_start() {
        let dir = std::env::temp_dir().join(format!("tl-engine-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&format!("sqlite://{}/db", dir.display()))
            .await
            .unwrap();
        let (mut cluster, mut pools) =
            control::rules::resolve_cluster("rg", "c1", &Default::default()).unwrap();
        cluster.properties.provisioning_state = "Creating".into();
        store.clusters().put(&cluster).await.unwrap();
        pools[0].properties.provisioning_state = "Updating".into();
        store
            .agent_pools()
            .put("rg", "c1", &pools[0])
            .await
            .unwrap();
        let engine = Engine::new(store.clone(), Arc::new(control::RecordsOnly));
        assert_eq!(engine.resume_unfinished().await.unwrap(), 0);
        let c = store.clusters().get("rg", "c1").await.unwrap().unwrap();
        assert_eq!(c.properties.provisioning_state, "Failed");
        let p = store
            .agent_pools()
            .get("rg", "c1", "nodepool1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.properties.provisioning_state, "Failed");
        store.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A backend whose creates boot and attest Unhealthy (naming the kernel) and whose
    /// reimages fail to boot, as Secure Boot refusing an unsigned component would.
    struct Refusing;

    impl NodeBackend for Refusing {
        fn name(&self) -> &'static str {
            "refusing"
        }
        fn create(&self, _: &NodeSpec) -> Result<BootReport, control::BackendError> {
            Ok(BootReport {
                booted: true,
                failure: None,
                attestation: Some(AttestationStatus::Unhealthy),
                evidence: Some(serde_json::json!({"failedComponents": ["kernel"]})),
            })
        }
        fn reimage(&self, _: &NodeSpec) -> Result<BootReport, control::BackendError> {
            Ok(BootReport {
                booted: false,
                failure: Some("Secure Boot: grubx64.efi is not signed by a trusted key".into()),
                attestation: None,
                evidence: None,
            })
        }
        fn delete(&self, _: &str) -> Result<(), control::BackendError> {
            Ok(())
        }
    }

    async fn wait_done(store: &Store, id: &str) -> Operation {
        for _ in 0..500 {
            let op = store.operations().get(id).await.unwrap().unwrap();
            if op.status.is_terminal() {
                return op;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("operation {id} never ended");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn backend_verdicts_reach_nodes_and_boot_failures_fail_the_operation() {
        use control::{MaxSurge, OperationStatus, ReimagePlan};
        let dir = std::env::temp_dir().join(format!("tl-engine-b-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&format!("sqlite://{}/db", dir.display()))
            .await
            .unwrap();
        let (cluster, pools) =
            control::rules::resolve_cluster("rg", "c1", &Default::default()).unwrap();
        store.clusters().put(&cluster).await.unwrap();
        store
            .agent_pools()
            .put("rg", "c1", &pools[0])
            .await
            .unwrap();
        let engine = Engine::new(store.clone(), Arc::new(Refusing));
        let names: Vec<String> = (0..2)
            .map(|i| control::model::node_name("rg", "c1", "nodepool1", i))
            .collect();
        let create = Operation::new(
            "op-create".into(),
            OperationKind::CreateAgentPool,
            pools[0].id.clone(),
            ReimagePlan::create(&names, MaxSurge::Count(2)),
            time::now(),
        );
        engine.start(create).await.unwrap();
        assert_eq!(
            wait_done(&store, "op-create").await.status,
            OperationStatus::Succeeded
        );
        for name in &names {
            let n = store.nodes().get(name).await.unwrap().unwrap();
            assert_eq!(n.attestation.status, AttestationStatus::Unhealthy);
            assert!(n
                .taints
                .iter()
                .any(|t| t.key == ATTESTATION_TAINT && t.effect == "NoSchedule"));
            let cond = n
                .conditions
                .iter()
                .find(|c| c.kind == ATTESTATION_CONDITION)
                .unwrap();
            assert_eq!(cond.status, "False");
            assert!(cond.message.contains("kernel"), "{cond:?}");
        }
        let reimage = Operation::new(
            "op-reimage".into(),
            OperationKind::UpdateAgentPool,
            pools[0].id.clone(),
            ReimagePlan::rolling_reimage(&names, MaxSurge::Count(1)),
            time::now(),
        );
        engine.start(reimage).await.unwrap();
        let op = wait_done(&store, "op-reimage").await;
        assert_eq!(op.status, OperationStatus::Failed);
        let err = op.error.unwrap();
        assert_eq!(err.code, "NodeBootFailed");
        assert!(
            err.message.contains(&names[0]) && err.message.contains("grubx64.efi"),
            "{err:?}"
        );
        assert_eq!(
            op.steps_done, 2,
            "cordon and drain of the first batch were recorded"
        );
        let first = store.nodes().get(&names[0]).await.unwrap().unwrap();
        assert!(first.cordoned, "a node that did not boot stays cordoned");
        let second = store.nodes().get(&names[1]).await.unwrap().unwrap();
        assert!(!second.cordoned, "the next batch was never touched");
        let pool = store
            .agent_pools()
            .get("rg", "c1", "nodepool1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pool.properties.provisioning_state, "Failed");
        store.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unattested_boots_stay_pending() {
        let mut n = node();
        assert!(apply_report(&mut n, &BootReport::booted_unattested()));
        apply_attestation(&mut n);
        assert_eq!(n.attestation.status, AttestationStatus::Pending);
        assert_eq!(n.boot_count, 1);
        assert!(n.taints.is_empty());
        assert!(n
            .conditions
            .iter()
            .any(|c| c.kind == ATTESTATION_CONDITION && c.status == "Unknown"));
    }

    #[test]
    fn unhealthy_taints_and_healthy_clears() {
        let mut n = node();
        let bad = BootReport {
            booted: true,
            failure: None,
            attestation: Some(AttestationStatus::Unhealthy),
            evidence: Some(serde_json::json!({"failed": ["kernel"]})),
        };
        apply_report(&mut n, &bad);
        apply_attestation(&mut n);
        assert_eq!(n.taints.len(), 1);
        assert!(n.conditions.iter().any(|c| c.message.contains("kernel")));
        let good = BootReport {
            attestation: Some(AttestationStatus::Healthy),
            evidence: Some(serde_json::json!("token")),
            ..bad
        };
        apply_report(&mut n, &good);
        apply_attestation(&mut n);
        assert!(n.taints.is_empty());
        assert_eq!(n.attestation.token.as_deref(), Some("token"));
        assert_eq!(n.boot_count, 2);
    }
}
