-- Raw request metrics, one row per served request of the app fleet.
-- stream_seq and seq_idx say where the row came from in the JetStream
-- stream: the JetStream sequence of its message and its index inside that
-- message. Together they identify a row, which is what makes the
-- aggregator's inserts idempotent (see aggregator.Sink).
-- ORDER BY serves the common query, one service and endpoint over a time
-- range; daily partitions make retention a partition drop.
CREATE TABLE IF NOT EXISTS {{db}}.requests (
    ts               DateTime,
    service          String,
    endpoint         String,
    method           String,
    status_code      UInt16,
    response_time_ms Float64,
    user_id          UUID,
    error_message    String,
    request_id       String,
    stream_seq       UInt64,
    seq_idx          UInt32
) ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (service, endpoint, ts);
