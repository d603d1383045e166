-- Rollups sized for the reads that must stay fast at any traffic (#10):
-- the admin trend views, the alert window rules, the api probe and the
-- health page's current performance. What such a read costs is the number
-- of latency states it decodes and merges: a state of more than about 1,450
-- requests is a dense histogram of 23 KB, and merging the 12,000
-- (minute, endpoint) states of an hour of 200 endpoints takes some 30 ms on
-- two cores whatever else the query does. A granule is read, and its states
-- decoded, whole. So each read picks the table with the fewest states that
-- answers it, every table is sorted the way it is filtered, and granules
-- hold 256 rows:
--
--   requests_{1m,5m,1h}_svc    one row per (period, service), sorted by
--       (service, start): series and summaries over every endpoint of one
--       or every service; an hour of 1-minute buckets is 60 states a service.
--   requests_{1m,5m,1h}_drill  one row per (period, service, endpoint),
--       sorted by (service, endpoint, start): one endpoint's series and
--       summary read that endpoint's rows only.
--   requests_{1m,5m,1h,1d}_ep  the same rows sorted by (start, service,
--       endpoint): figures per endpoint over a window (slowest endpoints,
--       alert rules by endpoint) read the coarsest periods that tile the
--       window (schema.Tile), every endpoint's rows of them and no others.
--
-- The columns are those of requests_5m (see 0005_requests_5m.sql for the
-- latency histogram); start is aligned to Unix time. Each table is created
-- filled from the rollup of the same or a finer period that already exists
-- (requests_1m_hist for the last day, requests_5m for the last three days,
-- requests_1h for the last 32 days: what the reads of that period look
-- back), and then fed by its view from raw requests; see
-- 0005_requests_5m.sql for what creating a table filled before its view
-- guarantees and its limits.

CREATE TABLE IF NOT EXISTS {{db}}.requests_1m_svc
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(start)
ORDER BY (service, start)
SETTINGS index_granularity = 256
AS SELECT
    start,
    service,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(duration_sum) AS duration_sum,
    maxMergeState(duration_max) AS duration_max,
    quantilesTimingMergeState(0.5, 0.95, 0.99)(latency) AS latency
FROM {{db}}.requests_1m_hist
WHERE start >= toDateTime(intDiv(toUInt32(now()), 86400) * 86400 - 86400)
GROUP BY start, service;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.requests_1m_svc_mv TO {{db}}.requests_1m_svc AS
SELECT
    toDateTime(intDiv(toUInt32(ts), 60) * 60) AS start,
    service,
    countState() AS requests,
    sumState(toUInt64(status_code >= 400 AND status_code < 500)) AS errors_4xx,
    sumState(toUInt64(status_code >= 500)) AS errors_5xx,
    sumState(response_time_ms) AS duration_sum,
    maxState(response_time_ms) AS duration_max,
    quantilesTimingState(0.5, 0.95, 0.99)(toUInt16(1024 + 16 * least(1810,
        floor(log(greatest(response_time_ms, 0.001) * 1000) / log(1.015)) + (response_time_ms >= 0.001)))) AS latency
FROM {{db}}.requests
GROUP BY start, service;

CREATE TABLE IF NOT EXISTS {{db}}.requests_1m_drill
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(start)
ORDER BY (service, endpoint, start)
SETTINGS index_granularity = 256
AS SELECT
    start,
    service,
    endpoint,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(duration_sum) AS duration_sum,
    maxMergeState(duration_max) AS duration_max,
    quantilesTimingMergeState(0.5, 0.95, 0.99)(latency) AS latency
FROM {{db}}.requests_1m_hist
WHERE start >= toDateTime(intDiv(toUInt32(now()), 86400) * 86400 - 86400)
GROUP BY start, service, endpoint;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.requests_1m_drill_mv TO {{db}}.requests_1m_drill AS
SELECT
    toDateTime(intDiv(toUInt32(ts), 60) * 60) AS start,
    service,
    endpoint,
    countState() AS requests,
    sumState(toUInt64(status_code >= 400 AND status_code < 500)) AS errors_4xx,
    sumState(toUInt64(status_code >= 500)) AS errors_5xx,
    sumState(response_time_ms) AS duration_sum,
    maxState(response_time_ms) AS duration_max,
    quantilesTimingState(0.5, 0.95, 0.99)(toUInt16(1024 + 16 * least(1810,
        floor(log(greatest(response_time_ms, 0.001) * 1000) / log(1.015)) + (response_time_ms >= 0.001)))) AS latency
FROM {{db}}.requests
GROUP BY start, service, endpoint;

CREATE TABLE IF NOT EXISTS {{db}}.requests_1m_ep
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(start)
ORDER BY (start, service, endpoint)
SETTINGS index_granularity = 256
AS SELECT
    start,
    service,
    endpoint,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(duration_sum) AS duration_sum,
    maxMergeState(duration_max) AS duration_max,
    quantilesTimingMergeState(0.5, 0.95, 0.99)(latency) AS latency
FROM {{db}}.requests_1m_hist
WHERE start >= toDateTime(intDiv(toUInt32(now()), 86400) * 86400 - 86400)
GROUP BY start, service, endpoint;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.requests_1m_ep_mv TO {{db}}.requests_1m_ep AS
SELECT
    toDateTime(intDiv(toUInt32(ts), 60) * 60) AS start,
    service,
    endpoint,
    countState() AS requests,
    sumState(toUInt64(status_code >= 400 AND status_code < 500)) AS errors_4xx,
    sumState(toUInt64(status_code >= 500)) AS errors_5xx,
    sumState(response_time_ms) AS duration_sum,
    maxState(response_time_ms) AS duration_max,
    quantilesTimingState(0.5, 0.95, 0.99)(toUInt16(1024 + 16 * least(1810,
        floor(log(greatest(response_time_ms, 0.001) * 1000) / log(1.015)) + (response_time_ms >= 0.001)))) AS latency
FROM {{db}}.requests
GROUP BY start, service, endpoint;

CREATE TABLE IF NOT EXISTS {{db}}.requests_5m_svc
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(start)
ORDER BY (service, start)
SETTINGS index_granularity = 256
AS SELECT
    start,
    service,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(duration_sum) AS duration_sum,
    maxMergeState(duration_max) AS duration_max,
    quantilesTimingMergeState(0.5, 0.95, 0.99)(latency) AS latency
FROM {{db}}.requests_5m
WHERE start >= toDateTime(intDiv(toUInt32(now()), 86400) * 86400 - 3 * 86400)
GROUP BY start, service;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.requests_5m_svc_mv TO {{db}}.requests_5m_svc AS
SELECT
    toDateTime(intDiv(toUInt32(ts), 300) * 300) AS start,
    service,
    countState() AS requests,
    sumState(toUInt64(status_code >= 400 AND status_code < 500)) AS errors_4xx,
    sumState(toUInt64(status_code >= 500)) AS errors_5xx,
    sumState(response_time_ms) AS duration_sum,
    maxState(response_time_ms) AS duration_max,
    quantilesTimingState(0.5, 0.95, 0.99)(toUInt16(1024 + 16 * least(1810,
        floor(log(greatest(response_time_ms, 0.001) * 1000) / log(1.015)) + (response_time_ms >= 0.001)))) AS latency
FROM {{db}}.requests
GROUP BY start, service;

CREATE TABLE IF NOT EXISTS {{db}}.requests_5m_drill
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(start)
ORDER BY (service, endpoint, start)
SETTINGS index_granularity = 256
AS SELECT
    start,
    service,
    endpoint,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(duration_sum) AS duration_sum,
    maxMergeState(duration_max) AS duration_max,
    quantilesTimingMergeState(0.5, 0.95, 0.99)(latency) AS latency
FROM {{db}}.requests_5m
WHERE start >= toDateTime(intDiv(toUInt32(now()), 86400) * 86400 - 3 * 86400)
GROUP BY start, service, endpoint;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.requests_5m_drill_mv TO {{db}}.requests_5m_drill AS
SELECT
    toDateTime(intDiv(toUInt32(ts), 300) * 300) AS start,
    service,
    endpoint,
    countState() AS requests,
    sumState(toUInt64(status_code >= 400 AND status_code < 500)) AS errors_4xx,
    sumState(toUInt64(status_code >= 500)) AS errors_5xx,
    sumState(response_time_ms) AS duration_sum,
    maxState(response_time_ms) AS duration_max,
    quantilesTimingState(0.5, 0.95, 0.99)(toUInt16(1024 + 16 * least(1810,
        floor(log(greatest(response_time_ms, 0.001) * 1000) / log(1.015)) + (response_time_ms >= 0.001)))) AS latency
FROM {{db}}.requests
GROUP BY start, service, endpoint;

CREATE TABLE IF NOT EXISTS {{db}}.requests_5m_ep
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(start)
ORDER BY (start, service, endpoint)
SETTINGS index_granularity = 256
AS SELECT
    start,
    service,
    endpoint,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(duration_sum) AS duration_sum,
    maxMergeState(duration_max) AS duration_max,
    quantilesTimingMergeState(0.5, 0.95, 0.99)(latency) AS latency
FROM {{db}}.requests_5m
WHERE start >= toDateTime(intDiv(toUInt32(now()), 86400) * 86400 - 3 * 86400)
GROUP BY start, service, endpoint;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.requests_5m_ep_mv TO {{db}}.requests_5m_ep AS
SELECT
    toDateTime(intDiv(toUInt32(ts), 300) * 300) AS start,
    service,
    endpoint,
    countState() AS requests,
    sumState(toUInt64(status_code >= 400 AND status_code < 500)) AS errors_4xx,
    sumState(toUInt64(status_code >= 500)) AS errors_5xx,
    sumState(response_time_ms) AS duration_sum,
    maxState(response_time_ms) AS duration_max,
    quantilesTimingState(0.5, 0.95, 0.99)(toUInt16(1024 + 16 * least(1810,
        floor(log(greatest(response_time_ms, 0.001) * 1000) / log(1.015)) + (response_time_ms >= 0.001)))) AS latency
FROM {{db}}.requests
GROUP BY start, service, endpoint;

CREATE TABLE IF NOT EXISTS {{db}}.requests_1h_svc
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(start)
ORDER BY (service, start)
SETTINGS index_granularity = 256
AS SELECT
    start,
    service,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(duration_sum) AS duration_sum,
    maxMergeState(duration_max) AS duration_max,
    quantilesTimingMergeState(0.5, 0.95, 0.99)(latency) AS latency
FROM {{db}}.requests_1h
WHERE start >= toDateTime(intDiv(toUInt32(now()), 86400) * 86400 - 32 * 86400)
GROUP BY start, service;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.requests_1h_svc_mv TO {{db}}.requests_1h_svc AS
SELECT
    toDateTime(intDiv(toUInt32(ts), 3600) * 3600) AS start,
    service,
    countState() AS requests,
    sumState(toUInt64(status_code >= 400 AND status_code < 500)) AS errors_4xx,
    sumState(toUInt64(status_code >= 500)) AS errors_5xx,
    sumState(response_time_ms) AS duration_sum,
    maxState(response_time_ms) AS duration_max,
    quantilesTimingState(0.5, 0.95, 0.99)(toUInt16(1024 + 16 * least(1810,
        floor(log(greatest(response_time_ms, 0.001) * 1000) / log(1.015)) + (response_time_ms >= 0.001)))) AS latency
FROM {{db}}.requests
GROUP BY start, service;

CREATE TABLE IF NOT EXISTS {{db}}.requests_1h_drill
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(start)
ORDER BY (service, endpoint, start)
SETTINGS index_granularity = 256
AS SELECT
    start,
    service,
    endpoint,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(duration_sum) AS duration_sum,
    maxMergeState(duration_max) AS duration_max,
    quantilesTimingMergeState(0.5, 0.95, 0.99)(latency) AS latency
FROM {{db}}.requests_1h
WHERE start >= toDateTime(intDiv(toUInt32(now()), 86400) * 86400 - 32 * 86400)
GROUP BY start, service, endpoint;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.requests_1h_drill_mv TO {{db}}.requests_1h_drill AS
SELECT
    toDateTime(intDiv(toUInt32(ts), 3600) * 3600) AS start,
    service,
    endpoint,
    countState() AS requests,
    sumState(toUInt64(status_code >= 400 AND status_code < 500)) AS errors_4xx,
    sumState(toUInt64(status_code >= 500)) AS errors_5xx,
    sumState(response_time_ms) AS duration_sum,
    maxState(response_time_ms) AS duration_max,
    quantilesTimingState(0.5, 0.95, 0.99)(toUInt16(1024 + 16 * least(1810,
        floor(log(greatest(response_time_ms, 0.001) * 1000) / log(1.015)) + (response_time_ms >= 0.001)))) AS latency
FROM {{db}}.requests
GROUP BY start, service, endpoint;

CREATE TABLE IF NOT EXISTS {{db}}.requests_1h_ep
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(start)
ORDER BY (start, service, endpoint)
SETTINGS index_granularity = 256
AS SELECT
    start,
    service,
    endpoint,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(duration_sum) AS duration_sum,
    maxMergeState(duration_max) AS duration_max,
    quantilesTimingMergeState(0.5, 0.95, 0.99)(latency) AS latency
FROM {{db}}.requests_1h
WHERE start >= toDateTime(intDiv(toUInt32(now()), 86400) * 86400 - 32 * 86400)
GROUP BY start, service, endpoint;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.requests_1h_ep_mv TO {{db}}.requests_1h_ep AS
SELECT
    toDateTime(intDiv(toUInt32(ts), 3600) * 3600) AS start,
    service,
    endpoint,
    countState() AS requests,
    sumState(toUInt64(status_code >= 400 AND status_code < 500)) AS errors_4xx,
    sumState(toUInt64(status_code >= 500)) AS errors_5xx,
    sumState(response_time_ms) AS duration_sum,
    maxState(response_time_ms) AS duration_max,
    quantilesTimingState(0.5, 0.95, 0.99)(toUInt16(1024 + 16 * least(1810,
        floor(log(greatest(response_time_ms, 0.001) * 1000) / log(1.015)) + (response_time_ms >= 0.001)))) AS latency
FROM {{db}}.requests
GROUP BY start, service, endpoint;

CREATE TABLE IF NOT EXISTS {{db}}.requests_1d_ep
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(start)
ORDER BY (start, service, endpoint)
SETTINGS index_granularity = 256
AS SELECT
    toDateTime(intDiv(toUInt32(start), 86400) * 86400) AS start,
    service,
    endpoint,
    countMergeState(requests) AS requests,
    sumMergeState(errors_4xx) AS errors_4xx,
    sumMergeState(errors_5xx) AS errors_5xx,
    sumMergeState(duration_sum) AS duration_sum,
    maxMergeState(duration_max) AS duration_max,
    quantilesTimingMergeState(0.5, 0.95, 0.99)(latency) AS latency
FROM {{db}}.requests_1h
WHERE start >= toDateTime(intDiv(toUInt32(now()), 86400) * 86400 - 32 * 86400)
GROUP BY start, service, endpoint;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.requests_1d_ep_mv TO {{db}}.requests_1d_ep AS
SELECT
    toDateTime(intDiv(toUInt32(ts), 86400) * 86400) AS start,
    service,
    endpoint,
    countState() AS requests,
    sumState(toUInt64(status_code >= 400 AND status_code < 500)) AS errors_4xx,
    sumState(toUInt64(status_code >= 500)) AS errors_5xx,
    sumState(response_time_ms) AS duration_sum,
    maxState(response_time_ms) AS duration_max,
    quantilesTimingState(0.5, 0.95, 0.99)(toUInt16(1024 + 16 * least(1810,
        floor(log(greatest(response_time_ms, 0.001) * 1000) / log(1.015)) + (response_time_ms >= 0.001)))) AS latency
FROM {{db}}.requests
GROUP BY start, service, endpoint;
