//! Every repository against both backends: a fresh SQLite file, and a fresh PostgreSQL
//! database on the server `TRUSTLAUNCH_TEST_POSTGRES` names (scripts/test.sh starts one).
//! A missing PostgreSQL fails these tests; it never skips them.
#![allow(clippy::unwrap_used)]

use control::rules::{resolve_cluster, resolve_pool, PoolContext};
use control::{
    AgentPoolSpec, Attestation, AttestationStatus, ErrorDetail, ManagedClusterSpec, MaxSurge, Node,
    NodeCondition, Operation, OperationKind, OperationStatus, ReimagePlan, SecurityProfile, Taint,
};
use sqlx::Connection;
use std::collections::BTreeMap;
use std::future::Future;
use store::{Dialect, Store};

fn unique() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{:016x}", h.finish())
}

/// A fresh, empty database on each backend: (URL, cleanup), one per dialect.
struct Fresh {
    url: String,
    admin: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Fresh {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/store.db", dir.path().display());
        Self {
            url,
            admin: None,
            _dir: Some(dir),
        }
    }

    async fn postgres() -> Self {
        let admin = std::env::var("TRUSTLAUNCH_TEST_POSTGRES").expect(
            "TRUSTLAUNCH_TEST_POSTGRES must name a PostgreSQL server (postgres://USER:PW@HOST/DB \
             with CREATEDB); scripts/test.sh installs and starts one",
        );
        sqlx::any::install_default_drivers();
        let db = format!("tl_test_{}", unique());
        let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let base = admin.split('?').next().unwrap();
        let url = format!("{}/{db}", &base[..base.rfind('/').unwrap()]);
        Self {
            url,
            admin: Some((admin, db)),
            _dir: None,
        }
    }

    async fn drop_database(&self) {
        if let Some((admin, db)) = &self.admin {
            let mut conn = sqlx::AnyConnection::connect(admin).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

/// Runs `test` once per backend, each on a fresh database (given its URL).
async fn on_both<F, Fut>(test: F)
where
    F: Fn(String, Dialect) -> Fut,
    Fut: Future<Output = ()>,
{
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        let fresh = match dialect {
            Dialect::Sqlite => Fresh::sqlite().await,
            Dialect::Postgres => Fresh::postgres().await,
        };
        test(fresh.url.clone(), dialect).await;
        fresh.drop_database().await;
    }
}

fn sample_node(name: &str, pool: &str, ordinal: u32) -> Node {
    Node {
        name: name.into(),
        resource_group: "rg".into(),
        cluster_name: "c1".into(),
        pool_name: pool.into(),
        ordinal,
        vm_size: "Standard_D2s_v3".into(),
        labels: BTreeMap::from([(
            "kubernetes.azure.com/secure-boot".to_string(),
            "true".to_string(),
        )]),
        taints: vec![Taint {
            key: "attestation".into(),
            value: "failed".into(),
            effect: "NoSchedule".into(),
        }],
        conditions: vec![NodeCondition {
            kind: "Ready".into(),
            status: "True".into(),
            reason: "KubeletReady".into(),
            message: String::new(),
        }],
        node_image_version: "AKSUbuntu-2204gen2TLcontainerd-202411.01.0".into(),
        security_profile: SecurityProfile {
            enable_secure_boot: true,
            enable_vtpm: false,
        },
        boot_count: 7,
        cordoned: true,
        attestation: Attestation {
            status: AttestationStatus::Unhealthy,
            token: None,
            alert: Some(serde_json::json!({"components": ["kernel"]})),
        },
        created_at: "2026-11-28T17:00:00Z".into(),
    }
}

#[tokio::test]
async fn migrations_apply_once_and_reopen_cleanly() {
    on_both(|url, dialect| async move {
        let s = Store::open(&url).await.unwrap();
        assert_eq!(s.dialect(), dialect);
        let first = s.applied_migrations().await.unwrap();
        assert_eq!(first, vec![1, 2]);
        s.close().await;
        let s = Store::open(&url).await.unwrap();
        assert_eq!(s.applied_migrations().await.unwrap(), first);
        s.close().await;
    })
    .await;
}

#[tokio::test]
async fn clusters_and_pools_round_trip_and_delete_idempotently() {
    on_both(|url, _| async move {
        let s = Store::open(&url).await.unwrap();
        let (cluster, pools) = resolve_cluster("rg", "c1", &ManagedClusterSpec::default()).unwrap();
        s.clusters().put(&cluster).await.unwrap();
        s.clusters().put(&cluster).await.unwrap();
        assert_eq!(
            s.clusters().get("rg", "c1").await.unwrap().unwrap(),
            cluster
        );
        assert!(s.clusters().get("rg", "c2").await.unwrap().is_none());
        let (other, _) = resolve_cluster("rg2", "c0", &ManagedClusterSpec::default()).unwrap();
        s.clusters().put(&other).await.unwrap();
        assert_eq!(s.clusters().list(None).await.unwrap().len(), 2);
        assert_eq!(
            s.clusters().list(Some("rg")).await.unwrap(),
            vec![cluster.clone()]
        );

        for p in &pools {
            s.agent_pools().put("rg", "c1", p).await.unwrap();
        }
        let ctx = PoolContext {
            resource_group: "rg",
            cluster: "c1",
            kubernetes_version: "1.30.6",
            virtual_nodes: false,
        };
        let mut np = resolve_pool(&ctx, "np", &AgentPoolSpec::default(), None).unwrap();
        s.agent_pools().put("rg", "c1", &np).await.unwrap();
        np.properties.security_profile.enable_vtpm = true;
        np.properties.provisioning_state = "Updating".into();
        s.agent_pools().put("rg", "c1", &np).await.unwrap();
        let got = s
            .agent_pools()
            .get("rg", "c1", "np")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, np);
        let names: Vec<_> = s
            .agent_pools()
            .list("rg", "c1")
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["nodepool1", "np"]);

        s.nodes()
            .put(&sample_node("n-np-0", "np", 0))
            .await
            .unwrap();
        s.nodes()
            .put(&sample_node("n-sys-0", "nodepool1", 0))
            .await
            .unwrap();
        assert!(s.agent_pools().delete("rg", "c1", "np").await.unwrap());
        assert!(!s.agent_pools().delete("rg", "c1", "np").await.unwrap());
        assert!(
            s.nodes().get("n-np-0").await.unwrap().is_none(),
            "pool delete keeps nodes"
        );
        assert!(s.nodes().get("n-sys-0").await.unwrap().is_some());

        assert!(s.clusters().delete("rg", "c1").await.unwrap());
        assert!(!s.clusters().delete("rg", "c1").await.unwrap());
        assert!(s.agent_pools().list("rg", "c1").await.unwrap().is_empty());
        assert!(s.nodes().list_all().await.unwrap().is_empty());
        assert_eq!(s.clusters().list(None).await.unwrap(), vec![other]);
        s.close().await;
    })
    .await;
}

#[tokio::test]
async fn nodes_round_trip_every_field_in_order() {
    on_both(|url, _| async move {
        let s = Store::open(&url).await.unwrap();
        for (i, name) in ["b", "a", "c"].iter().enumerate() {
            s.nodes()
                .put(&sample_node(name, "np", i as u32))
                .await
                .unwrap();
        }
        let n = sample_node("a", "np", 1);
        assert_eq!(s.nodes().get("a").await.unwrap().unwrap(), n);
        let order: Vec<_> = s
            .nodes()
            .list_pool("rg", "c1", "np")
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(order, ["b", "a", "c"]);
        let mut changed = n.clone();
        changed.cordoned = false;
        changed.boot_count = 8;
        changed.labels.clear();
        changed.taints.clear();
        changed.security_profile = SecurityProfile::default();
        changed.attestation = Attestation::default();
        s.nodes().put(&changed).await.unwrap();
        s.nodes().put(&changed).await.unwrap();
        assert_eq!(s.nodes().get("a").await.unwrap().unwrap(), changed);
        assert_eq!(s.nodes().list_cluster("rg", "c1").await.unwrap().len(), 3);
        assert!(s.nodes().delete("a").await.unwrap());
        assert!(!s.nodes().delete("a").await.unwrap());
        assert_eq!(s.nodes().list_all().await.unwrap().len(), 2);
        s.close().await;
    })
    .await;
}

#[tokio::test]
async fn operations_resume_from_recorded_progress_across_reopen() {
    on_both(|url, _| async move {
        let s = Store::open(&url).await.unwrap();
        let plan = ReimagePlan::rolling_reimage(&["n0".into(), "n1".into()], MaxSurge::Count(1));
        let mut op = Operation::new(
            "op-1".into(),
            OperationKind::UpdateAgentPool,
            "/subscriptions/x/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1/agentPools/np".into(),
            plan.clone(),
            "2026-11-28T17:00:00Z".into(),
        );
        assert!(s.operations().insert(&op).await.unwrap());
        assert!(!s.operations().insert(&op).await.unwrap(), "second insert must be a no-op");
        op.advance(4);
        op.current_step = "Reimage n0".into();
        s.operations().save_progress(&op).await.unwrap();
        // A late, stale write does not move progress backwards.
        let mut stale = op.clone();
        stale.steps_done = 2;
        stale.percent_complete = 20.0;
        s.operations().save_progress(&stale).await.unwrap();
        s.close().await;

        let s = Store::open(&url).await.unwrap();
        let unfinished = s.operations().list_unfinished().await.unwrap();
        assert_eq!(unfinished.len(), 1);
        let back = &unfinished[0];
        assert_eq!(back.steps_done, 4);
        assert_eq!(back.percent_complete, 40.0);
        assert_eq!(back.plan, plan);
        assert_eq!(back.current_step, "Reimage n0");
        let mut done = back.clone();
        done.finish(
            Some(ErrorDetail {
                code: "NodeBootFailed".into(),
                message: "kernel".into(),
            }),
            "2026-11-28T17:01:00Z".into(),
        );
        s.operations().save_progress(&done).await.unwrap();
        assert!(s.operations().list_unfinished().await.unwrap().is_empty());
        let got = s.operations().get("op-1").await.unwrap().unwrap();
        assert_eq!(got.status, OperationStatus::Failed);
        assert_eq!(got.error.unwrap().code, "NodeBootFailed");
        assert_eq!(got.end_time.as_deref(), Some("2026-11-28T17:01:00Z"));
        let by_cluster = s
            .operations()
            .list_for_resource("/subscriptions/x/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1")
            .await
            .unwrap();
        assert_eq!(by_cluster.len(), 1);
        assert!(s.operations().get("nope").await.unwrap().is_none());
        s.close().await;
    })
    .await;
}

#[tokio::test]
async fn unsupported_urls_are_refused_before_connecting() {
    let err = Store::open("mysql://u:pw@h/db").await.unwrap_err();
    assert!(
        err.to_string().contains("unsupported database URL"),
        "{err}"
    );
    assert!(!err.to_string().contains("pw"), "{err}");
}

fn verdict(id: &str, node: &str, time: u64, alert: Option<u64>) -> verifier::JournalEntry {
    let record = verifier::AttestationRecord {
        id: id.into(),
        node: node.into(),
        time,
        healthy: alert.is_none(),
        reset_count: Some(3),
        restart_count: Some(0),
        alert_id: alert,
    };
    let alert = alert.map(|id| verifier::IntegrityAlert {
        id,
        severity: verifier::Severity::Critical,
        node: node.into(),
        pool: "rg/c/p".into(),
        time,
        failures: Vec::new(),
        acknowledged: false,
    });
    verifier::JournalEntry::Attested { record, alert }
}

#[tokio::test]
async fn verifier_journal_round_trips_idempotently_and_keeps_the_newest_history() {
    on_both(|url, _| async move {
        let s = Store::open(&url).await.unwrap();
        let a = s.attestations();
        let policy: attest::policy::ReferencePolicy =
            serde_json::from_str(r#"{"version": 1, "secure_boot": true}"#).unwrap();
        let mut batch = vec![verifier::JournalEntry::Policy {
            pool: "rg/c/p".into(),
            policy: policy.clone(),
        }];
        for t in 0..10u64 {
            batch.push(verdict(
                &format!("v{t}"),
                "n1",
                100 + t,
                (t == 4).then_some(7),
            ));
        }
        batch.push(verdict("w0", "n2", 50, None));
        a.write(&batch).await.unwrap();
        // The same batch again (a retry after a lost acknowledgement) changes nothing.
        a.write(&batch).await.unwrap();
        a.write(&[verifier::JournalEntry::Acknowledged { id: 7 }])
            .await
            .unwrap();
        assert_eq!(a.count(None).await.unwrap(), (11, 10));
        assert_eq!(a.count(Some("n1")).await.unwrap(), (10, 9));
        assert!(a.contains("v3").await.unwrap());
        assert!(!a.contains("v99").await.unwrap());
        let snap = a.snapshot(4).await.unwrap();
        assert_eq!(snap.policies, vec![("rg/c/p".to_string(), policy)]);
        let ids: Vec<_> = snap.history.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["v6", "v7", "v8", "v9", "w0"]);
        assert_eq!(snap.alerts.len(), 1);
        assert!(snap.alerts[0].acknowledged);
        assert_eq!(snap.alerts[0].node, "n1");
        s.close().await;
    })
    .await;
}
