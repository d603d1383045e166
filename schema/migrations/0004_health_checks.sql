-- Results of the background health probes, one row per probe run:
-- component is database, auth, realtime, api, external or pipeline;
-- target names the probed thing within it (an external dependency, say;
-- '' when the component has one target). status is healthy, degraded,
-- critical or unknown; details is a JSON object of safe, typed facts.
-- Uptime and health history are computed from this table.
CREATE TABLE IF NOT EXISTS {{db}}.health_checks (
    ts               DateTime,
    component        String,
    target           String,
    status           String,
    response_time_ms Float64,
    details          String,
    stream_seq       UInt64,
    seq_idx          UInt32
) ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (component, target, ts);
