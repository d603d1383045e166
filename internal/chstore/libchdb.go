//go:build chdb

package chstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// ChDBVersion is the chDB release whose libchdb.so scripts/libchdb.sh
// fetches into the cache this package looks in.
const ChDBVersion = "26.5.3"

// libchdb is the part of chDB's C API (chdb.h) this package calls, bound
// at run time with purego. It is loaded the first time a chdb: DSN is
// opened, never at program start: a binary built with the chdb tag runs
// every other command without the library.
var libchdb struct {
	once sync.Once
	err  error
	path string

	// chdb_connection *chdb_connect(int argc, char **argv)
	connect func(argc int32, argv []*byte) *chdbConn
	// void chdb_close_conn(chdb_connection *conn)
	closeConn func(conn *chdbConn)
	// chdb_result *chdb_query(chdb_connection conn, const char *query, const char *format);
	// chdb_connection is a struct of one pointer, passed by value.
	query func(conn unsafe.Pointer, query, format string) *chdbResult
	// char *chdb_result_buffer(chdb_result *result)
	resultBuffer func(res *chdbResult) *byte
	// size_t chdb_result_length(chdb_result *result)
	resultLength func(res *chdbResult) uintptr
	// const char *chdb_result_error(chdb_result *result); NULL when none
	resultError func(res *chdbResult) string
	// void chdb_destroy_query_result(chdb_result *result)
	destroyResult func(res *chdbResult)
}

// chdbConn is chdb.h's chdb_connection, whose one field chdb_query takes
// by value; chdbResult is its chdb_result, never looked into. Both are
// owned by the library.
type (
	chdbConn   struct{ internal unsafe.Pointer }
	chdbResult struct{ _ unsafe.Pointer }
)

// loadChDB loads libchdb.so once per process and binds its functions; it
// returns the same error to every caller when that failed.
func loadChDB() error {
	l := &libchdb
	l.once.Do(func() {
		path, err := findLibChDB()
		if err != nil {
			l.err = err
			return
		}
		h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			l.err = fmt.Errorf("load chDB library %s: %w", path, err)
			return
		}
		for name, fptr := range map[string]any{
			"chdb_connect":              &l.connect,
			"chdb_close_conn":           &l.closeConn,
			"chdb_query":                &l.query,
			"chdb_result_buffer":        &l.resultBuffer,
			"chdb_result_length":        &l.resultLength,
			"chdb_result_error":         &l.resultError,
			"chdb_destroy_query_result": &l.destroyResult,
		} {
			sym, err := purego.Dlsym(h, name)
			if err != nil {
				l.err = fmt.Errorf("load chDB library %s: %s: %w", path, name, err)
				return
			}
			purego.RegisterFunc(fptr, sym)
		}
		l.path = path
	})
	return l.err
}

// findLibChDB returns CHDB_LIB_PATH when set, else the libchdb.so that
// scripts/libchdb.sh verified into its cache: $PULSE_CACHE, else
// $XDG_CACHE_HOME/pulse, else ~/.cache/pulse, then chdb-<version>/.
func findLibChDB() (string, error) {
	if p := os.Getenv("CHDB_LIB_PATH"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("chDB library: CHDB_LIB_PATH: %w", err)
		}
		return p, nil
	}
	root := os.Getenv("PULSE_CACHE")
	if root == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", errors.New("chDB library libchdb.so not found: CHDB_LIB_PATH is not set and there is no home directory to look in; run scripts/libchdb.sh (or make run) and set CHDB_LIB_PATH to the path it prints")
			}
			base = filepath.Join(home, ".cache")
		}
		root = filepath.Join(base, "pulse")
	}
	p := filepath.Join(root, "chdb-"+ChDBVersion, "libchdb.so")
	// The script writes the marker after the library is complete and checked.
	if _, err := os.Stat(p + ".verified"); err != nil {
		return "", fmt.Errorf("chDB library libchdb.so not found in %s and CHDB_LIB_PATH is not set: run scripts/libchdb.sh (or make run) to fetch it (about 166 MB, 559 MB on disk)", filepath.Dir(p))
	}
	return p, nil
}

// chdbConnect opens a chDB session on the data directory abs.
func chdbConnect(abs string) (*chdbConn, error) {
	if err := loadChDB(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("create chdb data directory: %w", err)
	}
	args := []string{"clickhouse", "--path=" + abs}
	argv := make([]*byte, len(args))
	for i, a := range args {
		argv[i] = &append([]byte(a), 0)[0]
	}
	conn := libchdb.connect(int32(len(argv)), argv)
	runtime.KeepAlive(argv)
	if conn == nil {
		return nil, errors.New("chdb_connect failed (is another process using this data directory?)")
	}
	return conn, nil
}

// chdbQuery runs query on conn and returns a copy of its output in format.
func chdbQuery(conn *chdbConn, query, format string) ([]byte, error) {
	res := libchdb.query(conn.internal, query, format)
	if res == nil {
		return nil, nil
	}
	defer libchdb.destroyResult(res)
	if msg := libchdb.resultError(res); msg != "" {
		return nil, errors.New(msg)
	}
	buf, n := libchdb.resultBuffer(res), libchdb.resultLength(res)
	if buf == nil || n == 0 {
		return nil, nil
	}
	return append([]byte(nil), unsafe.Slice(buf, n)...), nil
}

// chdbClose ends the session of conn.
func chdbClose(conn *chdbConn) { libchdb.closeConn(conn) }
