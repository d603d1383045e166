#!/usr/bin/env bash
# make bench: the figures that need the whole system, each beside the raw limit measured in
# the same run, then the hot-path micro-benchmarks.
#   BenchmarkEndToEnd         NDJSON over HTTP -> JetStream -> aggregator -> ClickHouse server rows,
#                             beside raw clickhouse-go inserts of the same rows (ratio)
#   BenchmarkSingleEventPost  one-event POSTs answered after JetStream persisted them
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
go test -run '^$' -bench 'BenchmarkEndToEnd$' -benchtime "${events}x" -timeout 20m ./cmd/pulse | grep -E '^Benchmark|^ok|FAIL'
go test -run '^$' -bench 'BenchmarkSingleEventPost$' -benchtime 20000x -timeout 10m ./cmd/pulse | grep -E '^Benchmark|^ok|FAIL'

echo "==> hot paths"
go test -run '^$' -bench . -benchmem -tags chdb -timeout 20m ./internal/event ./ingest ./internal/chstore | grep -E '^Benchmark|^ok|FAIL'
