-- Alert history: one row per published transition of an alert or scale
-- recommendation (state firing, then resolved), written by alerts.History
-- from the JetStream stream PULSE_ALERTS. ts is the time of the transition
-- (started_at when firing, resolved_at when resolved). labels is a JSON
-- object; value is nan when the rule had no data; resolved_at is
-- 1970-01-01 00:00:00 while firing; count is the number of requests folded
-- into an instant alert, or of evaluations whose condition held for a
-- window alert; direction and factor are set for scale recommendations.
-- A redelivery after a crash can store a transition twice: readers take
-- one row per (id, state) (LIMIT 1 BY id, state). Monthly partitions make
-- retention a partition drop.
CREATE TABLE IF NOT EXISTS {{db}}.alerts (
    ts          DateTime,
    id          String,
    kind        String,
    rule        String,
    state       String,
    severity    String,
    labels      String,
    value       Float64,
    threshold   Float64,
    started_at  DateTime,
    resolved_at DateTime,
    count       UInt64,
    message     String,
    direction   String,
    factor      Float64
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, id);
