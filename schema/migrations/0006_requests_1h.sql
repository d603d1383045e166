-- One-hour rollup of requests, what /performance?timeframe=7d and 30d read
-- (their buckets are an hour wide): a month of it is 720 states per
-- (service, endpoint). The same columns as requests_5m (see
-- 0005_requests_5m.sql for the latency histogram), sorted by time first,
-- start aligned to Unix time (toStartOfHour follows the server's time zone,
-- which can be half an hour off).
--
-- Created with the rollup of the last 32 days of raw requests (10 million
-- in 0.6 s on two cores; see 0005_requests_5m.sql for what this guarantees
-- and its limits) and then fed by its view, as requests_5m is.
CREATE TABLE IF NOT EXISTS {{db}}.requests_1h
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(start)
ORDER BY (start, service, endpoint)
AS SELECT
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
WHERE ts >= toDateTime(intDiv(toUInt32(now()), 3600) * 3600 - 32 * 86400)
GROUP BY start, service, endpoint;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.requests_1h_mv TO {{db}}.requests_1h AS
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
