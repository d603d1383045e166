// Package chstore is Pulse's access to ClickHouse. One Store speaks to either
// backend with the same SQL: a ClickHouse server over the native protocol
// (clickhouse-go, DSN clickhouse://host:9000/db) or chDB, the ClickHouse
// engine embedded in this process (DSN chdb:path or chdb:///abs/path,
// available in binaries built with the chdb tag).
//
// SQL handed to a Store must name tables with T, never rely on a current
// database: chDB has one session per process, which Stores of different
// databases share.
package chstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Rows is a query result, read like database/sql's: Next, then Scan into
// pointers whose types match the columns (string, uint8/16/32/64, int64,
// float64, time.Time, []float64, uuid.UUID). DateTime scans as a time.Time
// in UTC on both backends. Close must be called.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close() error
}

// Column is one column of an insert. Values is a slice of one of:
// []time.Time (DateTime), []string, []uint8, []uint16, []uint32, []uint64,
// []int64, []float64, []uuid.UUID. All columns of an insert have the same
// length.
//
// The server stores a float64 exactly. chDB receives rows as text, which
// ClickHouse parses with its fast float reader: a value can come back one
// or two units in the last place off (at most about 4.5e-16 relative), and
// values below 1e-323 (the smallest subnormal) as 0. Whole numbers below
// 2^53 (bytes, counts) are written as plain digits and come back exact.
type Column struct {
	Name   string
	Values any
}

// Version is a ClickHouse version.
type Version struct{ Major, Minor int }

// HasTTL reports whether the server supports table TTL (19.6 and later).
func (v Version) HasTTL() bool { return v.Major > 19 || v.Major == 19 && v.Minor >= 6 }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

type backend interface {
	exec(ctx context.Context, query string) error
	query(ctx context.Context, query string) (Rows, error)
	insert(ctx context.Context, queryID, query string, cols []Column) error
	// running lists the IDs of executing queries that start with prefix.
	running(ctx context.Context, prefix string) ([]string, error)
	ping(ctx context.Context) error
	close() error
}

// Store is a ClickHouse database. It is safe for concurrent use.
type Store struct {
	b        backend
	kind     string
	database string
	version  Version

	closeOnce sync.Once
}

// Open connects to the ClickHouse named by dsn and creates its database if
// it does not exist. The database defaults to "pulse". A clickhouse://
// DSN may ask for TLS: secure=true (the system's roots), ca=FILE (a
// private CA), cert=FILE&key=FILE (a client certificate).
func Open(ctx context.Context, dsn string, log zerolog.Logger) (*Store, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse ClickHouse DSN: invalid URL")
	}
	s := &Store{kind: u.Scheme}
	var path string
	switch u.Scheme {
	case "clickhouse":
		s.database = strings.Trim(u.Path, "/")
	case "chdb":
		path = u.Opaque
		if path == "" {
			path = u.Path
		}
		if path == "" {
			return nil, fmt.Errorf("parse ClickHouse DSN: chdb needs a data path, e.g. chdb:data/chdb")
		}
		s.database = u.Query().Get("database")
	default:
		return nil, fmt.Errorf("parse ClickHouse DSN: scheme must be clickhouse:// or chdb:, not %q", u.Scheme)
	}
	if s.database == "" {
		s.database = "pulse"
	}
	if !validIdent(s.database) {
		return nil, fmt.Errorf("parse ClickHouse DSN: database name must be letters, digits and '_', at most 64, not starting with a digit")
	}
	if s.kind == "chdb" {
		s.b, err = openChDB(path)
	} else {
		s.b, err = openNative(ctx, u, log)
	}
	if err != nil {
		return nil, err
	}
	if err := s.b.exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(s.database)); err != nil {
		s.b.close()
		return nil, fmt.Errorf("create database %s: %w", s.database, err)
	}
	var v string
	if err := s.QueryRow(ctx, "SELECT version()", &v); err != nil {
		s.b.close()
		return nil, fmt.Errorf("read ClickHouse version: %w", err)
	}
	s.version = parseVersion(v)
	return s, nil
}

// Kind is "clickhouse" (a server) or "chdb" (embedded).
func (s *Store) Kind() string { return s.kind }

// Database is the name of the store's database.
func (s *Store) Database() string { return s.database }

// Version is the ClickHouse version of the backend.
func (s *Store) Version() Version { return s.version }

// T returns the qualified, quoted name of table in the store's database.
func (s *Store) T(table string) string { return quoteIdent(s.database) + "." + quoteIdent(table) }

// Exec runs a statement that returns no rows.
func (s *Store) Exec(ctx context.Context, query string) error { return s.b.exec(ctx, query) }

// Query runs a SELECT.
func (s *Store) Query(ctx context.Context, query string) (Rows, error) { return s.b.query(ctx, query) }

// ErrNoRows is returned by QueryRow when the query returns no rows.
var ErrNoRows = errors.New("query returned no rows")

// QueryRow runs a SELECT that returns one row and scans it into dest. It
// returns ErrNoRows when there is none; rows after the first are ignored.
func (s *Store) QueryRow(ctx context.Context, query string, dest ...any) error {
	rows, err := s.b.query(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return ErrNoRows
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	return rows.Close()
}

// Insert writes the rows held by cols into table in one INSERT. queryID,
// when not empty, names the insert on the server so that RunningQueries can
// tell whether it is still executing after the client gave up on it.
// Inserting no rows does nothing. DateTime values must lie in the range of
// ClickHouse's DateTime, 1970-01-01 00:00:00 to 2106-02-07 06:28:15 UTC;
// others are refused, on both backends, before anything is sent.
func (s *Store) Insert(ctx context.Context, queryID, table string, cols []Column) error {
	empty := len(cols) > 0
	for _, c := range cols {
		if err := checkDateTimes(c.Values); err != nil {
			return fmt.Errorf("insert into %s: column %s: %w", table, c.Name, err)
		}
		if n, err := columnLen(c.Values); err != nil || n > 0 {
			empty = false // rows to send, or an error for the backend to report
		}
	}
	if empty {
		return nil // chDB refuses an INSERT without data; the server accepts it
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = quoteIdent(c.Name)
	}
	q := "INSERT INTO " + s.T(table) + " (" + strings.Join(names, ", ") + ")"
	if err := s.b.insert(ctx, queryID, q, cols); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
}

// RunningQueries lists the IDs of the queries executing on the server whose
// IDs start with prefix, from any client. An embedded engine runs queries
// synchronously, so there it is always empty.
func (s *Store) RunningQueries(ctx context.Context, prefix string) ([]string, error) {
	return s.b.running(ctx, prefix)
}

// Ping checks that the backend answers.
func (s *Store) Ping(ctx context.Context) error { return s.b.ping(ctx) }

// Close releases the connection. It is safe to call more than once.
func (s *Store) Close() error {
	if s == nil || s.b == nil {
		return nil
	}
	var err error
	s.closeOnce.Do(func() { err = s.b.close() })
	return err
}

func parseVersion(v string) Version {
	parts := strings.SplitN(v, ".", 3)
	var out Version
	if len(parts) > 0 {
		out.Major, _ = strconv.Atoi(parts[0])
	}
	if len(parts) > 1 {
		out.Minor, _ = strconv.Atoi(parts[1])
	}
	return out
}

func validIdent(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' && i > 0) {
			return false
		}
	}
	return true
}

// quoteIdent quotes a ClickHouse identifier with backquotes.
func quoteIdent(s string) string {
	return "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(s) + "`"
}

// Quote returns s as a ClickHouse string literal.
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case 0:
			b.WriteString(`\0`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// DateTime returns t as a ClickHouse DateTime expression, independent of
// the server's time zone.
func DateTime(t time.Time) string {
	return "toDateTime(" + strconv.FormatInt(t.Unix(), 10) + ")"
}

// checkDateTimes refuses times that a DateTime column cannot hold: the
// native protocol would silently wrap them and TSV text would not parse.
func checkDateTimes(values any) error {
	ts, ok := values.([]time.Time)
	if !ok {
		return nil
	}
	for i, t := range ts {
		if u := t.Unix(); u < 0 || u > math.MaxUint32 {
			return fmt.Errorf("row %d: time %s is outside the DateTime range: %w", i, t.UTC().Format(time.RFC3339), errDateTimeRange)
		}
	}
	return nil
}
