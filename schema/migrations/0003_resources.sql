-- Resource utilisation samples: every Pulse process samples its own host,
-- fleet hosts report theirs through the ingest edge, and the database probe
-- reports the monitored Postgres's connections. One row per host, resource
-- and name (a disk mount, a network interface; '' for a whole-host figure).
-- utilisation is used / capacity in [0, 1]; for network it is the share of
-- the configured link capacity, or 0 when unknown.
CREATE TABLE IF NOT EXISTS {{db}}.resources (
    ts          DateTime,
    host        String,
    resource    String,
    name        String,
    used        Float64,
    capacity    Float64,
    utilisation Float64,
    stream_seq  UInt64,
    seq_idx     UInt32
) ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (resource, host, name, ts);
