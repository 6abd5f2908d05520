-- Managed clusters, agent pools, nodes and long-running operations (issue 8).
-- Clusters and pools are kept as their ARM JSON documents beside their keys: their shape is
-- the domain's (crates/control), and a new optional field needs no migration.
CREATE TABLE managed_clusters (
    resource_group     TEXT NOT NULL,
    name               TEXT NOT NULL,
    provisioning_state TEXT NOT NULL,
    document           TEXT NOT NULL,
    PRIMARY KEY (resource_group, name)
);

CREATE TABLE agent_pools (
    resource_group     TEXT NOT NULL,
    cluster_name       TEXT NOT NULL,
    name               TEXT NOT NULL,
    provisioning_state TEXT NOT NULL,
    document           TEXT NOT NULL,
    PRIMARY KEY (resource_group, cluster_name, name)
);

CREATE TABLE nodes (
    name               TEXT NOT NULL PRIMARY KEY,
    resource_group     TEXT NOT NULL,
    cluster_name       TEXT NOT NULL,
    pool_name          TEXT NOT NULL,
    ordinal            BIGINT NOT NULL,
    vm_size            TEXT NOT NULL,
    labels             TEXT NOT NULL,
    taints             TEXT NOT NULL,
    conditions         TEXT NOT NULL,
    node_image_version TEXT NOT NULL,
    secure_boot        BOOLEAN NOT NULL,
    vtpm               BOOLEAN NOT NULL,
    boot_count         BIGINT NOT NULL,
    cordoned           BOOLEAN NOT NULL,
    attestation        TEXT NOT NULL,
    created_at         TEXT NOT NULL
);
CREATE INDEX nodes_by_pool ON nodes (resource_group, cluster_name, pool_name, ordinal);

CREATE TABLE operations (
    id               TEXT NOT NULL PRIMARY KEY,
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,
    resource_id      TEXT NOT NULL,
    steps_total      BIGINT NOT NULL,
    steps_done       BIGINT NOT NULL,
    percent_complete DOUBLE PRECISION NOT NULL,
    current_step     TEXT NOT NULL,
    start_time       TEXT NOT NULL,
    end_time         TEXT,
    error            TEXT,
    plan             TEXT NOT NULL
);
CREATE INDEX operations_by_status ON operations (status);
