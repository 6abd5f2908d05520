-- The registrar's and verifier's records (issue 7): enrollments, reference policies per
-- pool, one row per verdict, integrity alerts. Documents are the verifier crate's JSON; the
-- typed columns are what is looked up and ordered by. Verdict and alert ids are unique, so a
-- write that is retried after a lost acknowledgement changes nothing.
CREATE TABLE verifier_enrollments (
    node     TEXT NOT NULL PRIMARY KEY,
    document TEXT NOT NULL
);

CREATE TABLE verifier_policies (
    pool     TEXT NOT NULL PRIMARY KEY,
    document TEXT NOT NULL
);

CREATE TABLE attestations (
    id       TEXT NOT NULL PRIMARY KEY,
    node     TEXT NOT NULL,
    time     BIGINT NOT NULL,
    healthy  BIGINT NOT NULL,
    alert_id BIGINT,
    document TEXT NOT NULL
);
CREATE INDEX attestations_by_node ON attestations (node, time);

CREATE TABLE integrity_alerts (
    id           BIGINT NOT NULL PRIMARY KEY,
    node         TEXT NOT NULL,
    time         BIGINT NOT NULL,
    acknowledged BIGINT NOT NULL,
    document     TEXT NOT NULL
);
