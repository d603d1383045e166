// Package schema owns Pulse's ClickHouse schema: versioned, idempotent
// migrations recorded in a migrations table, and retention.
//
// Migrations are the files migrations/NNNN_name.sql, applied in order.
// Every statement in them is idempotent (IF NOT EXISTS), so a migration
// interrupted half-way is simply applied again. A rollup added to a
// database that already holds requests is created filled from them
// (CREATE TABLE IF NOT EXISTS ... AS SELECT, which fills only the table it
// creates) before its materialized view; see migration 0005 for what that
// guarantees. Table names are written {{db}}.name and qualified with the
// store's database when applied.
// Statements must work on ClickHouse 18.16 and on chDB 26.x; features that
// 18.16 lacks (TTL) are applied in Go where the server has them.
package schema

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wedsync/pulse/internal/chstore"
)

//go:embed migrations/*.sql
var files embed.FS

// Migration is one schema version.
type Migration struct {
	Version    uint32
	Name       string
	Statements []string
}

// Migrations returns every migration, in version order.
func Migrations() ([]Migration, error) {
	names, err := fs.Glob(files, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Migration
	for _, path := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(path, "migrations/"), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.ParseUint(num, 10, 32)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s: name must be NNNN_name.sql", path)
		}
		body, err := files.ReadFile(path)
		if err != nil {
			return nil, err
		}
		m := Migration{Version: uint32(v), Name: name}
		for _, stmt := range strings.Split(string(body), ";\n") {
			if stmt = strings.TrimSpace(stripComments(stmt)); stmt != "" {
				m.Statements = append(m.Statements, stmt)
			}
		}
		if len(out) > 0 && out[len(out)-1].Version >= m.Version {
			return nil, fmt.Errorf("migration %s: versions must increase", path)
		}
		out = append(out, m)
	}
	return out, nil
}

// Latest is the version of the newest migration.
func Latest() uint32 {
	ms, err := Migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

const migrationsTable = "schema_migrations"

// Reader is what reading the schema version needs of ClickHouse: the
// store's database, a table's name qualified with it, and one row of a
// query. *chstore.Store is one.
type Reader interface {
	Database() string
	T(table string) string
	QueryRow(ctx context.Context, query string, dest ...any) error
}

// Current returns the highest applied migration version, 0 when none is.
func Current(ctx context.Context, s Reader) (uint32, error) {
	var exists uint64
	err := s.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = "+chstore.Quote(s.Database())+
		" AND name = "+chstore.Quote(migrationsTable), &exists)
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if exists == 0 {
		return 0, nil
	}
	var v uint32
	if err := s.QueryRow(ctx, "SELECT toUInt32(max(version)) FROM "+s.T(migrationsTable), &v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// ErrNotMigrated is Ready's answer for a store whose schema is older than
// this build's.
var ErrNotMigrated = errors.New("not migrated")

// Ready returns nil when the store holds every migration of this build
// (the readiness rule: a process must not serve an older schema), else
// ErrNotMigrated or the error of reading the version.
func Ready(ctx context.Context, s Reader) error {
	v, err := Current(ctx, s)
	if err != nil {
		return err
	}
	if v < Latest() {
		return ErrNotMigrated
	}
	return nil
}

// Migrate applies every migration newer than the store's current version
// and returns the versions it applied. Running it concurrently from several
// processes is safe: statements are idempotent, and a version recorded
// twice reads the same.
func Migrate(ctx context.Context, s *chstore.Store) ([]uint32, error) {
	return migrate(ctx, s, func(stmt string) string { return stmt })
}

// migrate applies every migration newer than the store's current version,
// each statement passed through rewrite after its {{db}} was qualified.
func migrate(ctx context.Context, s *chstore.Store, rewrite func(stmt string) string) ([]uint32, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	err = s.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+s.T(migrationsTable)+
		" (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree() ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", migrationsTable, err)
	}
	cur, err := Current(ctx, s)
	if err != nil {
		return nil, err
	}
	var applied []uint32
	for _, m := range ms {
		if m.Version <= cur {
			continue
		}
		for _, stmt := range m.Statements {
			stmt = rewrite(strings.ReplaceAll(stmt, "{{db}}", "`"+s.Database()+"`"))
			if err := s.Exec(ctx, stmt); err != nil {
				return applied, fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
			}
		}
		err := s.Insert(ctx, "", migrationsTable, []chstore.Column{
			{Name: "version", Values: []uint32{m.Version}},
			{Name: "name", Values: []string{m.Name}},
			{Name: "applied_at", Values: []time.Time{time.Now().UTC()}},
		})
		if err != nil {
			return applied, fmt.Errorf("record migration %04d_%s: %w", m.Version, m.Name, err)
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}
