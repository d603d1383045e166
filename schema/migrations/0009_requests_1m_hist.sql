-- One-minute rollup of requests with the latency histogram of requests_5m,
-- what /performance?timeframe=1h reads (its buckets are a minute wide): an
-- hour of it is 60 states per (service, endpoint), whatever the traffic, so
-- the last hour costs what the number of endpoints costs, not what the
-- number of requests does (36 million an hour at 10,000 requests a second).
-- requests_1m (0002) stays as it is for what reads it: its t-digest is not
-- within 1% and it is sorted by service first, so an hour of every service
-- would read the whole table.
--
-- The same columns as requests_5m (see 0005_requests_5m.sql for the
-- latency histogram), sorted by time first, start aligned to Unix time.
-- Created with the rollup of the last two hours of raw requests (see
-- 0005_requests_5m.sql for what this guarantees and its limits) and then
-- fed by its view, as requests_5m is.
CREATE TABLE IF NOT EXISTS {{db}}.requests_1m_hist
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(start)
ORDER BY (start, service, endpoint)
AS SELECT
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
WHERE ts >= toDateTime(intDiv(toUInt32(now()), 3600) * 3600 - 2 * 3600)
GROUP BY start, service, endpoint;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.requests_1m_hist_mv TO {{db}}.requests_1m_hist AS
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
