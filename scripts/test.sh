#!/usr/bin/env bash
# Runs Pulse's test suite against real services:
#   1. scripts/services.sh  (reuses or starts PostgreSQL, Redis, NATS, ClickHouse; fetches libchdb.so)
#   2. sources ${PULSE_WORK:-<repo>/.work}/services.env
#   3. go test -race -count=1 -tags chdb [./...] "$@"
#   4. with ./...: a bounded fuzz run, ${PULSE_FUZZTIME:-10s} per target (0 skips it): the ingest
#      decoder against its reference (JSON, NDJSON), the ingest handler (JSON, NDJSON, gzip), the
#      query parameters and the rules file; new failing inputs land in the package's testdata/fuzz
#   5. with ./... or a ./clients/... package: the TypeScript client's tests (npm ci, build, node --test)
# Extra arguments go to go test: flags (-run X, -v, -timeout 20m) and/or packages
# (./ingest/...); ./... is added only when no package is named. Fails when either fails.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$repo"
work="${PULSE_WORK:-$repo/.work}"

echo "==> services (scripts/services.sh)"
"$repo/scripts/services.sh" >/dev/null
# shellcheck disable=SC1091
source "$work/services.env"

# Did the caller name packages? (a ./ or ../ path, an import path of this module, or "all")
pkgs=(./...)
prev=
for a in "$@"; do
	case "$prev" in
	-run | -skip | -bench | -timeout | -count | -cpu | -parallel | -tags | -coverprofile | -coverpkg | -covermode | -o | -p | -exec | -benchtime | -fuzz | -fuzztime | -list | -shuffle | -ldflags | -gcflags)
		prev=
		continue
		;;
	esac
	case "$a" in
	./* | ../* | . | .. | all | github.com/wedsync/pulse*) pkgs=() ;;
	esac
	prev="$a"
done

echo "==> go test -race -count=1 -tags chdb${pkgs[*]:+ ${pkgs[*]}}${*:+ $*}"
echo "    $(go version)"
echo "    ClickHouse: $PULSE_TEST_CLICKHOUSE_DSN   Postgres: $PULSE_TEST_DATABASE_URL"
echo "    Redis: $PULSE_TEST_REDIS_URL   NATS: ${PULSE_TEST_NATS_URL:-(embedded only)}"
echo "    chDB: $CHDB_LIB_PATH"
go test -race -count=1 -tags chdb "${pkgs[@]}" "$@"

# A bounded fuzz run of the input parsers, when the whole suite was asked for.
fuzztime="${PULSE_FUZZTIME:-10s}"
if [[ "${pkgs[*]}" == "./..." && "$fuzztime" != "0" ]]; then
	for target in ./internal/event:FuzzDecodeMatchesReference ./ingest:FuzzPostBody \
		./query:FuzzQueryParams ./alerts/rules:FuzzParse; do
		echo "==> go test -fuzz ${target#*:} -fuzztime $fuzztime ${target%%:*}"
		go test -tags chdb -run '^$' -fuzz "^${target#*:}\$" -fuzztime "$fuzztime" "${target%%:*}"
	done
fi

# The TypeScript fleet client, when the whole suite or its folder was asked for.
if [[ "${pkgs[*]}" == "./..." || " $* " == *" ./clients/"* ]]; then
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		echo "==> installing nodejs and npm with apt-get"
		sudo_=(); [[ $EUID -ne 0 ]] && sudo_=(sudo)
		"${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -q
		"${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q nodejs npm
	fi
	echo "==> clients/typescript: npm ci, build, node --test ($(node --version))"
	(cd clients/typescript && npm ci --no-audit --no-fund && npm run build && npm test)
fi
