#!/usr/bin/env bash
# Ensures the services Pulse's tests talk to are up, then writes and prints their addresses.
#
#   scripts/services.sh          ensure everything, write ${PULSE_WORK:-<repo>/.work}/services.env
#   scripts/services.sh stop     stop the ClickHouse / NATS servers this script started
#                                (those recorded under the work dir); leaves the machine's own alone
#
# Each service is reused when it already answers, otherwise started (installing the Debian
# package first when its binary is missing):
#   PostgreSQL  127.0.0.1:5432, trust auth, database "test" (created if missing)
#   Redis       127.0.0.1:6379
#   NATS        127.0.0.1:4222 with JetStream; optional: if the port is taken by something
#               that is not NATS the variable is left unset. Own server: store in <work>/nats
#   ClickHouse  native protocol on 127.0.0.1:9000 - reused if a ClickHouse there works (a table
#               is created, filled, read and dropped in a scratch database; a server that only
#               answers, such as one left from a deleted clone, is passed over, or stopped and
#               restarted when it is ours), our own server started there if the port is free,
#               else the same on 19000.
#               Own server: config from deploy/clickhouse-dev/, state in <work>/clickhouse
#   chDB        scripts/libchdb.sh (pinned npm package, verified)
#   Alertmanager Debian's prometheus-alertmanager, installed when missing; not started here:
#               each test starts its own on a free loopback port with its own config and storage
#   promtool    Debian's prometheus package, installed when missing (cmd/pulse checks /metrics with it)
#
# services.env holds `export VAR='value'` lines (also printed on stdout; diagnostics go to stderr):
#   PULSE_TEST_CLICKHOUSE_DSN  clickhouse://127.0.0.1:<port>/default
#   PULSE_TEST_DATABASE_URL    postgres://<user>@127.0.0.1:5432/test?sslmode=disable
#   PULSE_TEST_REDIS_URL       redis://127.0.0.1:6379/0
#   PULSE_TEST_NATS_URL        nats://127.0.0.1:4222          (`unset` line when unavailable)
#   CHDB_LIB_PATH              absolute path of libchdb.so
#   PULSE_TEST_ALERTMANAGER    absolute path of the Alertmanager binary
#   PULSE_TEST_PROMTOOL        absolute path of promtool
#
# Knobs: PULSE_WORK (work dir), PULSE_CACHE (see libchdb.sh),
#        PULSE_CLICKHOUSE_PORTS (candidate ports, default "9000 19000").
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
mkdir -p "${PULSE_WORK:-$repo/.work}"
work="$(cd "${PULSE_WORK:-$repo/.work}" && pwd -P)"
env_file="$work/services.env"
ch_dir="$work/clickhouse"
ch_pidfile="$ch_dir/clickhouse.pid"
ch_portfile="$ch_dir/port"
nats_dir="$work/nats"
nats_pidfile="$nats_dir/nats-server.pid"

PG_HOST=127.0.0.1 PG_PORT=5432 PG_DB=test
REDIS_PORT=6379
NATS_PORT=4222
CH_START_TIMEOUT=60

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

# Prefix for commands that need root (empty when we are root).
sudo_=()
if [[ $EUID -ne 0 ]]; then sudo_=(sudo); fi
as_root() { "${sudo_[@]}" "$@"; }

apt_updated=0
apt_install() { # package...
	log "installing $* with apt-get ..."
	if [[ $apt_updated -eq 0 ]]; then
		as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -q >&2
		apt_updated=1
	fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q "$@" >&2
}

have() { command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]]; }
bin() { command -v "$1" 2>/dev/null || echo "/usr/sbin/$1"; }

# Is anything listening on 127.0.0.1:<port> (or on a wildcard address covering it)?
port_in_use() {
	if command -v ss >/dev/null 2>&1; then
		[[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]
	else
		timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
	fi
}

# First line a server sends on connect (NATS sends INFO {...}).
banner() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -n1 <&3" 2>/dev/null || true; }

# Process $1 exists and is not a zombie.
proc_alive() {
	local state
	[[ -n "$1" && -r "/proc/$1/stat" ]] || return 1
	state="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
	[[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# A live process whose pid is in file $1 and whose command line contains $2.
pid_alive() {
	local pid
	[[ -s "$1" ]] || return 1
	pid="$(tr -dc '0-9' <"$1")"
	proc_alive "$pid" || return 1
	[[ -z "${2:-}" || "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *"$2"* ]]
}

# Runs a server in a new session with every descriptor above 2 closed, so that it holds
# neither this script's lock nor a pipe of whoever called us (a CI runner waiting for EOF).
# --bg: do not wait for it (for servers that stay in the foreground).
# The subshell execs setsid, which execs the server: no shell lingers in between.
detach() {
	local bg=0
	if [[ "$1" == --bg ]]; then bg=1; shift; fi
	if [[ $bg -eq 1 ]]; then
		(close_fds && exec setsid "$@") &
	else
		(close_fds && exec setsid "$@")
	fi
}
close_fds() {
	local fd
	for fd in /proc/self/fd/*; do
		fd="${fd##*/}"
		if [[ "$fd" -gt 2 ]]; then eval "exec $fd>&-" 2>/dev/null || true; fi
	done
}

# Single-quoted for the shell.
q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# Replaces @KEY@ placeholders; values escaped for sed's replacement side.
render() { # template out KEY=VALUE...
	local tpl="$1" out="$2" args=() kv k v
	shift 2
	for kv in "$@"; do
		k="${kv%%=*}" v="${kv#*=}"
		v="$(printf '%s' "$v" | sed -e 's/[\\&|]/\\&/g')"
		args+=(-e "s|@${k}@|${v}|g")
	done
	sed "${args[@]}" "$tpl" >"$out.tmp"
	if grep -q '@[A-Z_]*@' "$out.tmp"; then die "unreplaced placeholder in $out.tmp"; fi
	mv -f "$out.tmp" "$out"
}

# ---------------------------------------------------------------------------- ClickHouse

ch_answers() { # port
	timeout 5 "$(bin clickhouse-client)" --host 127.0.0.1 --port "$1" -q 'SELECT 1' \
		</dev/null >/dev/null 2>&1
}

# Does the server on <port> work, not only answer? A server left running from a deleted clone
# answers SELECT 1 but fails every table operation ("File not found"): create, fill, read and
# drop a table in a scratch database. On failure ch_check_err holds the server's first lines.
ch_check_err=
ch_works() { # port
	local db="pulse_services_check_$$" out
	out="$(timeout 30 "$(bin clickhouse-client)" --host 127.0.0.1 --port "$1" --multiquery -q "
		DROP DATABASE IF EXISTS $db;
		CREATE DATABASE $db;
		CREATE TABLE $db.t (x UInt32) ENGINE = MergeTree ORDER BY x;
		INSERT INTO $db.t VALUES (40), (2);
		SELECT sum(x) FROM $db.t;
		DROP DATABASE $db" </dev/null 2>&1)"
	if [[ "$out" == 42 ]]; then return 0; fi
	ch_check_err="$(printf '%s' "${out:-no output}" | head -n 3 | tr -s '\n' ' ')"
	timeout 10 "$(bin clickhouse-client)" --host 127.0.0.1 --port "$1" -q "DROP DATABASE IF EXISTS $db" \
		</dev/null >/dev/null 2>&1 || true
	return 1
}

ch_ensure_installed() {
	if ! have clickhouse-server || ! have clickhouse-client; then
		apt_install clickhouse-server clickhouse-client
	fi
}

ch_dump_logs() {
	local f
	for f in "$ch_dir/log/clickhouse-server.err.log" "$ch_dir/log/stderr.log" "$ch_dir/log/launcher.log"; do
		[[ -s "$f" ]] || continue
		printf -- '--- last lines of %s\n' "$f" >&2
		tail -n 30 "$f" >&2
	done
}

ch_wait() { # port timeout_s grace_s -> 0 when it answers; gives up early once the server is gone
	local port="$1" deadline=$((SECONDS + $2)) grace=$((SECONDS + ${3:-0}))
	until ch_answers "$port"; do
		if ((SECONDS >= deadline)); then return 1; fi
		# The daemon removes its pid file when it gives up (bad config, port taken ...).
		if ((SECONDS >= grace)) && ! pid_alive "$ch_pidfile" "$ch_dir/etc/config.xml"; then return 1; fi
		sleep 0.2
	done
}

ch_start() { # port
	local port="$1" server
	server="$(bin clickhouse-server)"
	mkdir -p "$ch_dir"/{etc,log,data,tmp,user_files,format_schemas}
	render "$repo/deploy/clickhouse-dev/config.xml" "$ch_dir/etc/config.xml" \
		"TCP_PORT=$port" "CH_DIR=$ch_dir"
	cp -f "$repo/deploy/clickhouse-dev/users.xml" "$ch_dir/etc/users.xml"
	printf '%s\n' "$port" >"$ch_portfile"
	# A pid file left by a killed server makes 18.16 refuse to start if that pid is reused.
	rm -f "$ch_pidfile"
	log "starting ClickHouse $("$(bin clickhouse-client)" --version 2>/dev/null | grep -oE '[0-9]+(\.[0-9]+)+' | head -n1) on 127.0.0.1:$port (state in $ch_dir)"
	local start=$SECONDS
	# --daemon forks, writes the pid file and returns at once.
	detach "$server" --config-file="$ch_dir/etc/config.xml" --pid-file="$ch_pidfile" --daemon \
		</dev/null >>"$ch_dir/log/launcher.log" 2>&1 || true
	# 3 s grace: the daemon writes its pid file only after it forked.
	if ! ch_wait "$port" "$CH_START_TIMEOUT" 3; then
		ch_dump_logs
		die "ClickHouse did not answer on 127.0.0.1:$port within ${CH_START_TIMEOUT}s"
	fi
	log "ClickHouse up on :$port after $((SECONDS - start)) s"
}

# Is the listener on <port> a (possibly exiting) server of ours?
ch_port_held_by_ours() {
	local pid
	command -v ss >/dev/null 2>&1 || return 1
	for pid in $(ss -Hltnp "sport = :$1" 2>/dev/null | grep -oE 'pid=[0-9]+' | cut -d= -f2); do
		[[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *"$ch_dir/etc/config.xml"* ]] && return 0
	done
	return 1
}

ch_ensure() { # sets ch_port
	ch_ensure_installed
	local last_port="" port i
	[[ -s "$ch_portfile" ]] && last_port="$(tr -dc '0-9' <"$ch_portfile")"
	# Our own server from an earlier run (maybe still starting): keep using it and its port.
	if [[ -n "$last_port" ]] && pid_alive "$ch_pidfile" "$ch_dir/etc/config.xml"; then
		if ch_wait "$last_port" "$CH_START_TIMEOUT" 0; then
			if ch_works "$last_port"; then
				ch_port="$last_port"
				return 0
			fi
			log "our ClickHouse on :$last_port answers but cannot create, fill and read a table: $ch_check_err"
			log "stopping it; a new one starts below"
			ch_stop
		elif pid_alive "$ch_pidfile" "$ch_dir/etc/config.xml"; then
			ch_dump_logs
			die "our ClickHouse (pid $(cat "$ch_pidfile")) does not answer on :$last_port; stop it with '$0 stop'"
		else
			log "our earlier ClickHouse on :$last_port exited; starting a new one"
		fi
	fi
	# One of ours that is shutting down (SIGTERM) may hold its port for a moment: let it go.
	if [[ -n "$last_port" ]] && ch_port_held_by_ours "$last_port" && ! ch_answers "$last_port"; then
		log "waiting for our exiting ClickHouse to release :$last_port"
		for ((i = 0; i < 150; i++)); do
			ch_port_held_by_ours "$last_port" || break
			sleep 0.2
		done
	fi
	for port in ${PULSE_CLICKHOUSE_PORTS:-9000 19000}; do
		if ch_answers "$port"; then
			if ch_works "$port"; then
				ch_port="$port"
				log "reusing the ClickHouse server answering on 127.0.0.1:$port (checked: create, insert, select, drop)"
				return 0
			fi
			log "the ClickHouse server on 127.0.0.1:$port answers but does not work, so it is not reused" \
				"(not ours: stop it yourself, e.g. one left from a deleted clone): $ch_check_err"
			log "trying the next port"
			continue
		fi
		if ! port_in_use "$port"; then
			ch_start "$port"
			ch_works "$port" || die "our new ClickHouse on :$port cannot create, fill and read a table: $ch_check_err"
			ch_port="$port"
			return 0
		fi
		log "port $port is taken by something that is not ClickHouse; trying the next one"
	done
	die "no usable ClickHouse port among: ${PULSE_CLICKHOUSE_PORTS:-9000 19000}"
}

ch_stop() {
	if ! pid_alive "$ch_pidfile" "$ch_dir/etc/config.xml"; then
		log "no ClickHouse of ours is running (pid file $ch_pidfile)"
		return 0
	fi
	local pid i
	pid="$(tr -dc '0-9' <"$ch_pidfile")"
	log "stopping our ClickHouse (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 300; i++)); do
		proc_alive "$pid" || break
		sleep 0.1
	done
	if proc_alive "$pid"; then
		log "still running after 30 s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$ch_pidfile"
}

# ---------------------------------------------------------------------------- PostgreSQL

pg_q() { # user db sql -> prints result
	psql "host=$PG_HOST port=$PG_PORT user=$1 dbname=$2 connect_timeout=3" -XAtq -c "$3" </dev/null 2>/dev/null
}

pg_ensure() { # sets pg_user
	local installed=0
	if ! command -v psql >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null 2>&1; then
		if ! port_in_use "$PG_PORT"; then
			apt_install postgresql postgresql-contrib
			installed=1
		elif ! command -v psql >/dev/null 2>&1; then
			apt_install postgresql-client
		fi
	fi
	# Fast path: the usual machine.
	if [[ "$(pg_q postgres "$PG_DB" 'SELECT 1')" == 1 ]]; then
		pg_user=postgres
		return 0
	fi
	if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2; then
		if port_in_use "$PG_PORT"; then die "port $PG_PORT is taken by something that is not PostgreSQL"; fi
		local ver
		ver="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n1)"
		[[ -n "$ver" ]] || die "PostgreSQL is installed but has no cluster under /etc/postgresql"
		if [[ $installed -eq 1 ]]; then
			# A fresh Debian cluster asks for passwords on TCP; this machine's convention is trust.
			as_root sed -i -E 's#^(host[[:space:]]+all[[:space:]]+all[[:space:]]+(127\.0\.0\.1/32|::1/128)[[:space:]]+)[^[:space:]]+#\1trust#' \
				"/etc/postgresql/$ver/main/pg_hba.conf"
		fi
		log "starting PostgreSQL $ver/main"
		detach "${sudo_[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" main start </dev/null >&2
		local i
		for ((i = 0; i < 150; i++)); do
			pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 1 && break
			sleep 0.2
		done
		pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 1 || die "PostgreSQL did not come up on $PG_HOST:$PG_PORT"
	fi
	# Which role can we use? postgres first, then the login user.
	local u
	for u in postgres "$(id -un)"; do
		if [[ "$(pg_q "$u" postgres 'SELECT 1')" == 1 ]] || [[ "$(pg_q "$u" "$PG_DB" 'SELECT 1')" == 1 ]]; then
			pg_user="$u"
			break
		fi
	done
	[[ -n "${pg_user:-}" ]] || die "cannot connect to PostgreSQL on $PG_HOST:$PG_PORT as postgres or $(id -un) (trust auth expected)"
	if [[ "$(pg_q "$pg_user" "$PG_DB" 'SELECT 1')" != 1 ]]; then
		log "creating database $PG_DB"
		createdb -h "$PG_HOST" -p "$PG_PORT" -U "$pg_user" "$PG_DB" >&2 ||
			die "cannot create database $PG_DB as $pg_user"
	fi
}

pg_report_extensions() {
	local r
	r="$(pg_q "$pg_user" "$PG_DB" "SELECT coalesce(
		(SELECT 'installed in $PG_DB (' || extversion || ')' FROM pg_extension WHERE extname = 'pg_stat_statements'),
		(SELECT 'available (' || default_version || '), not installed in $PG_DB' FROM pg_available_extensions WHERE name = 'pg_stat_statements'),
		'not available') || '; shared_preload_libraries=' || quote_literal(current_setting('shared_preload_libraries'))" || true)"
	log "postgres: pg_stat_statements ${r:-unknown} (optional)"
}

# ---------------------------------------------------------------------------- Redis

redis_ok() { [[ "$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$REDIS_PORT && printf 'PING\r\n' >&3 && head -c5 <&3" 2>/dev/null)" == "+PONG" ]]; }

redis_ensure() {
	redis_ok && return 0
	port_in_use "$REDIS_PORT" && die "port $REDIS_PORT is taken by something that does not answer Redis PING"
	have redis-server || apt_install redis-server
	log "starting redis-server on 127.0.0.1:$REDIS_PORT"
	as_root mkdir -p /var/lib/redis /var/log/redis
	detach "${sudo_[@]}" "$(bin redis-server)" --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
		--save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log </dev/null >&2
	local i
	for ((i = 0; i < 50; i++)); do redis_ok && return 0; sleep 0.2; done
	tail -n 20 /var/log/redis/ci.log >&2 || true
	die "Redis did not answer on 127.0.0.1:$REDIS_PORT"
}

# ---------------------------------------------------------------------------- NATS

nats_ensure() { # sets nats_ok=1 when usable
	nats_ok=0
	local b
	b="$(banner "$NATS_PORT")"
	if [[ -z "$b" ]] && ! port_in_use "$NATS_PORT"; then
		have nats-server || apt_install nats-server || { log "WARNING: cannot install nats-server; PULSE_TEST_NATS_URL unset"; return 0; }
		mkdir -p "$nats_dir/store"
		log "starting nats-server -js on 127.0.0.1:$NATS_PORT (store in $nats_dir/store)"
		detach --bg "$(bin nats-server)" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$nats_dir/store" \
			-l "$nats_dir/nats-server.log" -P "$nats_pidfile" </dev/null >/dev/null 2>&1
		local i
		for ((i = 0; i < 50; i++)); do
			b="$(banner "$NATS_PORT")"
			[[ -n "$b" ]] && break
			sleep 0.2
		done
	fi
	if [[ "$b" != INFO* ]]; then
		[[ -s "$nats_dir/nats-server.log" ]] && tail -n 20 "$nats_dir/nats-server.log" >&2
		log "WARNING: no NATS server on 127.0.0.1:$NATS_PORT; PULSE_TEST_NATS_URL unset (tests use embedded NATS)"
		return 0
	fi
	[[ "$b" == *'"jetstream":true'* ]] || log "WARNING: the NATS server on :$NATS_PORT does not announce JetStream"
	nats_ok=1
}

nats_stop() {
	if ! pid_alive "$nats_pidfile" nats-server; then return 0; fi
	local pid i
	pid="$(tr -dc '0-9' <"$nats_pidfile")"
	log "stopping our nats-server (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		proc_alive "$pid" || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------- Alertmanager

am_ensure() { # sets am_bin
	if ! have prometheus-alertmanager; then
		apt_install prometheus-alertmanager
		# The package starts a service of its own where systemd runs; the tests do not use it.
	fi
	am_bin="$(bin prometheus-alertmanager)"
	[[ -x "$am_bin" ]] || die "prometheus-alertmanager is not installed ($am_bin)"
}

promtool_ensure() { # sets promtool_bin
	if ! have promtool; then
		apt_install prometheus
		# Like Alertmanager's, the package's own service is not used.
	fi
	promtool_bin="$(bin promtool)"
	[[ -x "$promtool_bin" ]] || die "promtool is not installed ($promtool_bin)"
}

# ---------------------------------------------------------------------------- local cluster

# The cluster fault tests (internal/localcluster) start their own ZooKeeper and NATS servers.
cluster_ensure() {
	[[ -f /usr/share/java/zookeeper.jar ]] || apt_install zookeeper
	have nats-server || apt_install nats-server
}

# ---------------------------------------------------------------------------- main

exec 8>"$work/.services.lock"
flock -w 600 8 || die "timed out waiting for $work/.services.lock"

case "${1:-up}" in
up) ;;
stop)
	ch_stop
	nats_stop
	exit 0
	;;
*) die "usage: $0 [up|stop]" ;;
esac

t0=$(date +%s%N)
pg_user=
pg_ensure
pg_report_extensions
redis_ensure
nats_ensure
ch_port=
ch_ensure
am_bin=
am_ensure
promtool_bin=
promtool_ensure
cluster_ensure
chdb_lib="$("$repo/scripts/libchdb.sh")" || die "scripts/libchdb.sh failed"
[[ -f "$chdb_lib" ]] || die "scripts/libchdb.sh printed '$chdb_lib', which is not a file"

{
	echo "export PULSE_TEST_CLICKHOUSE_DSN=$(q "clickhouse://127.0.0.1:$ch_port/default")"
	echo "export PULSE_TEST_DATABASE_URL=$(q "postgres://$pg_user@$PG_HOST:$PG_PORT/$PG_DB?sslmode=disable")"
	echo "export PULSE_TEST_REDIS_URL=$(q "redis://127.0.0.1:$REDIS_PORT/0")"
	if [[ $nats_ok -eq 1 ]]; then
		echo "export PULSE_TEST_NATS_URL=$(q "nats://127.0.0.1:$NATS_PORT")"
	else
		echo 'unset PULSE_TEST_NATS_URL'
	fi
	echo "export CHDB_LIB_PATH=$(q "$chdb_lib")"
	echo "export PULSE_TEST_ALERTMANAGER=$(q "$am_bin")"
	echo "export PULSE_TEST_PROMTOOL=$(q "$promtool_bin")"
} >"$env_file.tmp"
mv -f "$env_file.tmp" "$env_file"
cat "$env_file"
log "wrote $env_file in $((($(date +%s%N) - t0) / 1000000)) ms"
