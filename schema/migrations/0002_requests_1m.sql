-- One-minute rollup of requests, filled by a materialized view on every
-- insert into requests. Each row holds aggregate states, to be read with
-- the -Merge combinators: countMerge(requests), sumMerge(errors_5xx),
-- quantilesTDigestMerge(0.5, 0.95, 0.99)(quantiles).
CREATE TABLE IF NOT EXISTS {{db}}.requests_1m (
    minute       DateTime,
    service      String,
    endpoint     String,
    requests     AggregateFunction(count),
    errors_4xx   AggregateFunction(sum, UInt64),
    errors_5xx   AggregateFunction(sum, UInt64),
    duration_sum AggregateFunction(sum, Float64),
    duration_max AggregateFunction(max, Float64),
    quantiles    AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(minute)
ORDER BY (service, endpoint, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.requests_1m_mv TO {{db}}.requests_1m AS
SELECT
    toStartOfMinute(ts) AS minute,
    service,
    endpoint,
    countState() AS requests,
    sumState(toUInt64(status_code >= 400 AND status_code < 500)) AS errors_4xx,
    sumState(toUInt64(status_code >= 500)) AS errors_5xx,
    sumState(response_time_ms) AS duration_sum,
    maxState(response_time_ms) AS duration_max,
    quantilesTDigestState(0.5, 0.95, 0.99)(response_time_ms) AS quantiles
FROM {{db}}.requests
GROUP BY minute, service, endpoint;
