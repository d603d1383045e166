-- Tables of the validate package. Both hold admin actions and have no TTL
-- and no retention: SOX wants the audit trail kept (seven years), and the rows
-- hold no personal data (the subject of an erasure is stored as a SHA-256).

-- One row per architecture validation run, with its findings as a JSON
-- array of issues (see validate.Issue). ts_ms (Unix milliseconds) orders
-- the runs of one second.
CREATE TABLE IF NOT EXISTS {{db}}.validation_runs (
    ts              DateTime,
    ts_ms           UInt64,
    run_id          String,
    principal       String,
    component       String,
    validation_type String,
    strict_mode     UInt8,
    valid           UInt8,
    errors          UInt32,
    warnings        UInt32,
    infos           UInt32,
    issues          String,
    duration_ms     Float64
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, run_id);

-- The audit trail of admin actions: who (the principal's name, never a
-- credential), when, what (action: architecture_validation,
-- compliance_report, user_metrics_erasure), on what (target), how it ended
-- (outcome) and a JSON object of details.
CREATE TABLE IF NOT EXISTS {{db}}.audit_log (
    ts        DateTime,
    id        String,
    principal String,
    action    String,
    target    String,
    outcome   String,
    details   String
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, id);
