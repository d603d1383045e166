-- Five-minute rollup of requests, what /performance?timeframe=24h reads (its
-- buckets are five minutes wide), so that a bucket merges one state per
-- (service, endpoint). Sorted by time first: a day's answer reads a day's
-- rows. start is the period's start, aligned to Unix time as the query's
-- buckets are (not to the server's time zone).
--
-- latency is a histogram of response times in bins 1.5% wide on a log
-- scale, kept as a quantilesTiming state of each request's bin code
-- (merging these costs a fraction of merging t-digests, on 18.16 and 26.x):
--   bin b = 0 below 0.001 ms (0 included), else floor(ln(ms / 0.001) / ln(1.015)) + 1,
--           so that bin b >= 1 holds [0.001 * 1.015^(b-1), 0.001 * 1.015^b) ms,
--           and at most 1810 (about six days; valid response times end at one);
--   code  = 1024 + 16 * b, because quantilesTiming counts the values from 1024
--           to 30000 in steps of 16: every bin keeps a count of its own.
-- quantilesTiming returns a code of the bin holding the requested rank (to
-- within 8), which the query reads back as the bin's geometric middle:
-- within 0.75% of exact. See schema.LatencyQuantiles and schema.LatencyMS.
--
-- Existing requests: the table is created with the rollup of the last three
-- days of raw requests, so that a database that already holds requests
-- answers 24h at once. CREATE TABLE IF NOT EXISTS ... AS SELECT fills it only
-- when it creates it, so a migration run again, or by two processes at once,
-- never adds them twice. The view, created next, adds every request inserted
-- from then on, whatever its time. Requests inserted while the fill runs
-- would be missed: `pulse serve` migrates before its aggregator starts; with
-- aggregators running elsewhere, stop them while `pulse migrate` runs (their
-- messages wait in JetStream). The fill reads about 17 million raw rows a
-- second on two cores, and through the native client a statement must end
-- within 60 s; a fill that fails leaves a partial table, which a new run
-- would keep: drop it (and the view, if created) before migrating again.
CREATE TABLE IF NOT EXISTS {{db}}.requests_5m
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(start)
ORDER BY (start, service, endpoint)
AS SELECT
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
WHERE ts >= toDateTime(intDiv(toUInt32(now()), 3600) * 3600 - 3 * 86400)
GROUP BY start, service, endpoint;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.requests_5m_mv TO {{db}}.requests_5m AS
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
