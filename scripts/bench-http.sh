#!/usr/bin/env bash
# The single-event ingest path beside its raw HTTP limit, measured in one run with wrk:
#   bareecho   an echo v4 handler that decodes the JSON body and answers 202 (internal/bareecho)
#   pulse      `pulse serve --roles ingest` (BENCH_PULSE_ROLES) on its embedded NATS: the edge answers
#              202 only after JetStream persisted the event
# For each connection count (BENCH_CONNS, default "256 10000") and round (BENCH_ROUNDS, default 3)
# each server gets the same wrk load (2 threads, BENCH_SECONDS, default 15, one event per POST with a
# unique request_id) on a fresh process; printed: requests/s, p50/p99, non-2xx, peak RSS (VmHWM),
# and per connection count the medians and the ratios pulse/bare (requests/s, peak RSS).
# Then one more run at the largest connection count against `pulse serve` with every role on the
# ClickHouse server, counting wrk's answers by status, and ClickHouse afterwards: every event
# answered 202 stored, no event stored twice.
# GOMEMLIMIT for pulse: BENCH_GOMEMLIMIT (default 480MiB, what README recommends at 10,000
# connections; "off" for none).
# Needs wrk (installed with apt-get when missing) and an open-file limit of 20,000 (raised here).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$repo"
work="${PULSE_WORK:-$repo/.work}"
"$repo/scripts/services.sh" >/dev/null
# shellcheck disable=SC1091
source "$work/services.env"

conns_list="${BENCH_CONNS:-256 10000}"
rounds="${BENCH_ROUNDS:-3}"
seconds="${BENCH_SECONDS:-15}"
memlimit="${BENCH_GOMEMLIMIT:-480MiB}"
bare_addr=127.0.0.1:7590
pulse_addr=127.0.0.1:7591
nats_addr=127.0.0.1:7592
token=bench-ingest-token-0123456789abcdef
admin=bench-admin-token-0123456789abcdef
ch_db=pulse_bench_http

if ! command -v wrk >/dev/null; then
	echo "installing wrk with apt-get ..." >&2
	apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q wrk >/dev/null
fi
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

bin="$work/bench-bin"
mkdir -p "$bin"
go build -o "$bin/pulse" ./cmd/pulse
go build -o "$bin/bareecho" ./internal/bareecho
data="$(mktemp -d)"
pid=
cleanup() {
	if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$data"
}
trap cleanup EXIT

ch_port="${PULSE_TEST_CLICKHOUSE_DSN#clickhouse://*:}"
ch_port="${ch_port%%/*}"
ch_query() { clickhouse-client --host 127.0.0.1 --port "$ch_port" -q "$1"; }

wait_listen() { # addr
	for _ in $(seq 1 300); do
		if curl -s -o /dev/null "http://$1/"; then return 0; fi
		sleep 0.1
	done
	echo "nothing listens on $1" >&2
	return 1
}

start_bare() {
	"$bin/bareecho" "$bare_addr" &
	pid=$!
	wait_listen "$bare_addr"
}

start_pulse() { # roles
	rm -rf "$data/pulse"
	ch_query "DROP DATABASE IF EXISTS $ch_db" >/dev/null
	local envs=(PULSE_INGEST_TOKENS="fleet:$token" PULSE_ADMIN_TOKENS="ops:$admin" PULSE_INGEST_RATE_LIMIT=3000000/min
		PULSE_CLICKHOUSE_DSN="${PULSE_TEST_CLICKHOUSE_DSN%/*}/$ch_db" PULSE_LOG_FORMAT=json PULSE_DRAIN_GRACE=0s)
	if [[ "$memlimit" != off ]]; then envs+=(GOMEMLIMIT="$memlimit"); fi
	env "${envs[@]}" "$bin/pulse" serve --roles "$1" --data-dir "$data/pulse" --http-addr "$pulse_addr" --nats-listen "$nats_addr" \
		2>"$data/pulse.log" &
	pid=$!
	for _ in $(seq 1 600); do
		if grep -q '"pulse is serving"' "$data/pulse.log" 2>/dev/null; then return 0; fi
		if ! kill -0 "$pid" 2>/dev/null; then cat "$data/pulse.log" >&2; return 1; fi
		sleep 0.1
	done
	echo "pulse did not start" >&2
	return 1
}

stop() {
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=
}

# run NAME ADDR CONNS RUNID COUNT -> prints one line and sets rps, rss
run() {
	local name=$1 addr=$2 conns=$3 runid=$4 count=$5 out
	out="$(RUN="$runid" TOKEN="$token" COUNT="$count" wrk -t2 -c"$conns" -d"${seconds}s" --timeout 10s --latency \
		-s scripts/bench/single.lua "http://$addr")"
	rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
	local p50 p99 non2xx errors
	p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
	p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
	non2xx="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"
	errors="$(grep -E '^ +Socket errors' <<<"$out" | sed 's/^ *//' || true)"
	rss="$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status")"
	printf '  %-8s conns %-6s %9.0f req/s  p50 %-9s p99 %-9s non-2xx %-7s peak RSS %4s MiB %s\n' \
		"$name" "$conns" "$rps" "$p50" "$p99" "${non2xx:-0}" "$rss" "$errors"
	if [[ "$count" == 1 ]]; then
		printf '%s\n' "$out" | grep '^status ' >"$data/statuses" || true
		sed 's/^/  wrk answers: /' "$data/statuses"
	fi
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

roles="${BENCH_PULSE_ROLES:-ingest}"
echo "==> single-event POSTs: pulse serve --roles $roles (GOMEMLIMIT=$memlimit) beside a bare echo handler"
echo "    wrk -t2, ${seconds}s a run, $rounds rounds, $(nproc) cores; the servers and wrk share the machine"
for conns in $conns_list; do
	: >"$data/bare.rps"; : >"$data/pulse.rps"; : >"$data/bare.rss"; : >"$data/pulse.rss"
	for round in $(seq 1 "$rounds"); do
		start_bare
		run bare "$bare_addr" "$conns" "b$round" 0
		echo "$rps" >>"$data/bare.rps"; echo "$rss" >>"$data/bare.rss"
		stop
		start_pulse "$roles"
		run pulse "$pulse_addr" "$conns" "p$round" 0
		echo "$rps" >>"$data/pulse.rps"; echo "$rss" >>"$data/pulse.rss"
		stop
	done
	b="$(median <"$data/bare.rps")"; p="$(median <"$data/pulse.rps")"
	bm="$(median <"$data/bare.rss")"; pm="$(median <"$data/pulse.rss")"
	awk -v c="$conns" -v b="$b" -v p="$p" -v bm="$bm" -v pm="$pm" 'BEGIN {
		printf "  median at %s connections: bare %.0f req/s, pulse %.0f req/s, ratio %.2f; peak RSS bare %d MiB, pulse %d MiB, ratio %.2f\n",
			c, b, p, p / b, bm, pm, pm / bm }'
done

conns="${conns_list##* }"
echo "==> exactly once: pulse serve (every role, ClickHouse server), wrk at $conns connections"
runid="x$conns-$RANDOM"
start_pulse all
run pulse "$pulse_addr" "$conns" "$runid" 1
accepted="$(awk '$2 == 202 {print $3}' "$data/statuses")"
accepted="${accepted:-0}"
# Wait until the stored count reached the 202s and stopped growing (at most 2 minutes).
last=-1 same=0
for _ in $(seq 1 240); do
	n="$(ch_query "SELECT count() FROM $ch_db.requests WHERE request_id LIKE '$runid-%'" 2>/dev/null || echo 0)"
	if [[ "$n" == "$last" ]]; then same=$((same + 1)); else same=0; last=$n; fi
	if ((n >= accepted && same >= 6)); then break; fi
	sleep 0.5
done
stored="$(ch_query "SELECT count() FROM $ch_db.requests WHERE request_id LIKE '$runid-%'")"
distinct="$(ch_query "SELECT uniqExact(request_id) FROM $ch_db.requests WHERE request_id LIKE '$runid-%'")"
stop
verdict=PASS
if ((distinct < accepted || stored != distinct)); then verdict=FAIL; fi
echo "  $accepted answered 202, $stored stored, $distinct distinct request IDs ($((stored - accepted)) stored whose answer wrk did not count: cut off at the end of the run) $verdict"
[[ "$verdict" == PASS ]]
