#!/usr/bin/env bash
# Ensures chDB's shared library (libchdb.so, the ClickHouse engine internal/chstore binds) is
# present and verified, and prints its absolute path on stdout - nothing else goes to stdout.
#
# Source: the pinned npm package below (about 166 MB), from the registry npm is configured for:
# its tarball URL is asked of `npm view` and fetched with curl (progress bar on stderr), or with
# `npm pack` when that is not possible; checked against the pinned sha512 integrity, then only
# package/libchdb.so is kept (559 MB; about 725 MB while both exist).
#
#   cache dir:  ${PULSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pulse}/chdb-<version>/
#               (internal/chstore looks in the same place when CHDB_LIB_PATH is not set)
#   result:     <cache dir>/libchdb.so          (559 MB)
#   marker:     <cache dir>/libchdb.so.verified (written last; its presence means "verified")
#
# Fast path (marker + .so of the recorded size present): prints the path, no lock, no npm.
# Concurrent runs are serialised with flock on <cache dir>/.lock.
#
# Usage: scripts/libchdb.sh            -> /abs/path/libchdb.so
#        CHDB_LIB_PATH="$(scripts/libchdb.sh)"
set -euo pipefail

readonly CHDB_NPM_NAME='@chdb/lib-linux-x64-gnu'
readonly CHDB_VERSION='26.5.3'
readonly CHDB_SIZES='about 166 MB, 559 MB unpacked'
readonly CHDB_INTEGRITY='sha512-fPrLmRt5Moor9yGz4mazbrNje4t7X9KB2mTGkXFWRxRBs2iKy8yh6jx11xsa0Qr3iDFMU/yHqd+bVdYJXu3QaQ=='

log() { printf 'libchdb: %s\n' "$*" >&2; }
die() { printf 'libchdb: ERROR: %s\n' "$*" >&2; exit 1; }

cache_root="${PULSE_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/pulse}"
mkdir -p "$cache_root/chdb-$CHDB_VERSION"
dir="$(cd "$cache_root/chdb-$CHDB_VERSION" && pwd -P)"
so="$dir/libchdb.so"
marker="$dir/libchdb.so.verified"

# The marker records what was verified and the size of the extracted file; a .so of another
# size (truncated copy, manual edit) sends us down the slow path again.
marker_ok() {
	[[ -f "$so" && -f "$marker" ]] || return 1
	local want_integrity want_size have_size
	want_integrity="$(sed -n 's/^integrity=//p' "$marker")"
	want_size="$(sed -n 's/^size=//p' "$marker")"
	have_size="$(stat -c %s "$so")"
	[[ "$want_integrity" == "$CHDB_INTEGRITY" && -n "$want_size" && "$want_size" == "$have_size" ]]
}

if marker_ok; then
	printf '%s\n' "$so"
	exit 0
fi

# Slow path: one run at a time per cache dir.
exec 9>"$dir/.lock"
if ! flock -n 9; then
	log "another run holds $dir/.lock; waiting"
	flock 9
fi
if marker_ok; then # the other run finished the job
	printf '%s\n' "$so"
	exit 0
fi

# sha512-<base64> -> lowercase hex, as sha512sum prints it.
[[ "$CHDB_INTEGRITY" == sha512-* ]] || die "integrity must be sha512-...: $CHDB_INTEGRITY"
want_hex="$(printf '%s' "${CHDB_INTEGRITY#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')"
[[ ${#want_hex} -eq 128 ]] || die "cannot decode integrity $CHDB_INTEGRITY"

tgz_ok() { # $1 = tgz; prints nothing, returns 0 when the digest matches
	local have_hex
	have_hex="$(sha512sum "$1" | cut -d' ' -f1)"
	[[ "$have_hex" == "$want_hex" ]]
}

tgz="$dir/chdb-lib-linux-x64-gnu-$CHDB_VERSION.tgz" # npm's name for a scoped package's pack
tmp_so="$dir/.libchdb.so.tmp.$$"
cleanup() { rm -f "$tmp_so" "$tgz.part"; }
trap cleanup EXIT

# A tarball left by an earlier (interrupted or manual) run is reused only if it verifies.
if [[ -f "$tgz" ]]; then
	if tgz_ok "$tgz"; then
		log "reusing verified $tgz"
	else
		log "discarding $tgz: sha512 does not match the pinned integrity"
		rm -f "$tgz"
	fi
fi

if [[ ! -f "$tgz" ]]; then
	if ! command -v npm >/dev/null 2>&1; then
		log "npm not found: installing Debian's npm"
		sudo=()
		[[ $EUID -eq 0 ]] || sudo=(sudo)
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -q >&2
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q npm >&2 ||
			die "cannot install npm"
	fi
	log "downloading $CHDB_NPM_NAME $CHDB_VERSION ($CHDB_SIZES) into $dir ..."
	start=$SECONDS
	# npm names the tarball; curl shows progress. Everything goes to stderr: stdout carries only
	# the final path.
	url="$(npm view "$CHDB_NPM_NAME@$CHDB_VERSION" dist.tarball 2>/dev/null || true)"
	if [[ "$url" == https://* ]] && command -v curl >/dev/null 2>&1 &&
		curl -fL --progress-bar --retry 3 -o "$tgz.part" "$url"; then
		mv -f "$tgz.part" "$tgz"
	else
		rm -f "$tgz.part"
		log "fetching with npm pack instead (no progress bar) ..."
		(cd "$dir" && npm pack --pack-destination "$dir" --loglevel=http \
			"$CHDB_NPM_NAME@$CHDB_VERSION") >&2 || die "npm pack $CHDB_NPM_NAME@$CHDB_VERSION failed"
		if [[ ! -f "$tgz" ]]; then # npm changed its naming: take the one tarball it wrote
			shopt -s nullglob
			found=("$dir"/*.tgz)
			shopt -u nullglob
			[[ ${#found[@]} -eq 1 ]] || die "npm pack did not leave exactly one .tgz in $dir"
			mv -f "${found[0]}" "$tgz"
		fi
	fi
	log "downloaded $(($(stat -c %s "$tgz") / 1000000)) MB in $((SECONDS - start)) s"
	if ! tgz_ok "$tgz"; then
		rm -f "$tgz"
		die "sha512 of the $CHDB_NPM_NAME@$CHDB_VERSION tarball does not match the pinned integrity $CHDB_INTEGRITY; tarball deleted"
	fi
	log "sha512 verified"
fi

log "extracting package/libchdb.so (559 MB) ..."
rm -f "$marker" # from here until the marker is rewritten the .so is not "verified"
tar -xzf "$tgz" -O package/libchdb.so >"$tmp_so" || die "cannot extract package/libchdb.so from $tgz"
[[ -s "$tmp_so" ]] || die "package/libchdb.so in $tgz is empty"
chmod 0755 "$tmp_so"
mv -f "$tmp_so" "$so" # atomic within one directory
size="$(stat -c %s "$so")"
printf 'package=%s@%s\nintegrity=%s\nsize=%s\nverified_at=%s\n' \
	"$CHDB_NPM_NAME" "$CHDB_VERSION" "$CHDB_INTEGRITY" "$size" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$marker.tmp"
mv -f "$marker.tmp" "$marker"
rm -f "$tgz"
log "ready: $so ($size bytes)"
printf '%s\n' "$so"
