#!/usr/bin/env bash
# make bench: the figures that need the whole system, each beside the raw limit measured in
# the same run, then the hot-path micro-benchmarks.
#   BenchmarkEndToEnd         NDJSON over HTTP -> JetStream -> aggregator -> ClickHouse server rows,
#                             beside raw clickhouse-go inserts of the same rows (ratio)
#   BenchmarkAggregators      a backlog of events in JetStream drained into ClickHouse by 1, then 2
#                             aggregators, beside a raw insert of the same rows (events/s, ratios)
#   BenchmarkSingleEventPost  one-event POSTs answered after JetStream persisted them
#   scripts/bench-http.sh     single-event POSTs with wrk at 256 and 10,000 connections: pulse beside a bare
#                             echo handler (requests/s and peak RSS ratios), then exactly-once under wrk
#   BenchmarkPublishSingles   (hot paths) the edge's coalesced publishing beside plain nats.go async publishes
#   BenchmarkServeLatency     from the POST to the rows in ClickHouse and to the instant alert on NATS
#                             (p50 and max ms; the figures TestServeEmbedded used to assert)
#   query benchmarks          /system/performance 24h and 30d over BENCH_ROWS stored rows (default
#                             10,000,000, kept in database pulse_bench_query between runs) beside the raw
#                             ClickHouse quantile query over the same rows; cached /system/health p99
#   PerformanceAtDensity      every admin trend view (1h/24h/7d/30d; all, per service, per endpoint)
#                             uncached over an hour at BENCH_RATE requests/s (default 10000: 36M rows,
#                             generated server-side once, kept in pulse_bench_query_v2_<rate>), p50/p99 beside
#                             the raw exact quantile query over the same rows, with the percentiles' error
#   BenchmarkAlertLatency     event observed -> alert on NATS, p50 and p99 over 1,000 triggering events
# BENCH_EVENTS (default 1000000) sets the end-to-end event count.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$repo"
work="${PULSE_WORK:-$repo/.work}"
"$repo/scripts/services.sh" >/dev/null
# shellcheck disable=SC1091
source "$work/services.env"
events="${BENCH_EVENTS:-1000000}"

echo "==> whole system (ClickHouse server $PULSE_TEST_CLICKHOUSE_DSN, $(nproc) cores)"
# Three runs (the raw insert rate varies a lot from run to run); the median ratio is what counts.
go test -run '^$' -bench 'BenchmarkEndToEnd$' -benchtime "${events}x" -count 3 -timeout 30m ./cmd/pulse |
	grep -E '^Benchmark|^ok|FAIL' | tee /dev/stderr |
	awk '/^BenchmarkEndToEnd/ { for (i = 1; i < NF; i++) if ($(i+1) == "ratio") r[++n] = $i }
		END { if (n) { asort(r); printf "  end-to-end / raw insert, median of %d runs: %.2f\n", n, r[int((n+1)/2)] } }' 2>&1
# Scale-out: the same backlog drained by one aggregator, then by two sharing the durable consumer.
go test -run '^$' -bench 'BenchmarkAggregators$' -benchtime 300000x -timeout 20m ./aggregator | grep -E '^Benchmark|^ok|FAIL'
go test -run '^$' -bench 'BenchmarkSingleEventPost$' -benchtime 20000x -timeout 10m ./cmd/pulse | grep -E '^Benchmark|^ok|FAIL'
"$repo/scripts/bench-http.sh"
go test -run '^$' -bench 'BenchmarkServeLatency$' -benchtime 20x -timeout 10m ./cmd/pulse | grep -E '^Benchmark|^ok|FAIL'

echo "==> admin API over ${BENCH_ROWS:=10000000} rows"
BENCH_ROWS="$BENCH_ROWS" go test -run '^$' -bench 'Performance(24h|30d|1h)$' -benchtime 20x -tags chdb -timeout 30m ./query | grep -E '^Benchmark|^ok|FAIL'
echo "==> admin views at ${BENCH_RATE:=10000} requests/s (docs/BENCHMARKS.md)"
BENCH_RATE="$BENCH_RATE" go test -run '^$' -bench 'PerformanceAtDensity' -benchtime 20x -tags chdb -timeout 30m ./query | grep -E '^Benchmark|^ok|FAIL'
go test -run '^$' -bench 'HealthCached$' -benchtime 20000x -tags chdb -timeout 10m ./query | grep -E '^Benchmark|^ok|FAIL'

echo "==> alerts"
go test -run '^$' -bench 'BenchmarkAlertLatency$' -benchtime 1000x -tags chdb -timeout 10m ./alerts | grep -E '^Benchmark|^ok|FAIL'

echo "==> hot paths"
go test -run '^$' -bench . -benchmem -tags chdb -timeout 20m ./internal/event ./ingest ./internal/chstore | grep -E '^Benchmark|^ok|FAIL'
