package schema

import (
	"context"
	"fmt"
	"regexp"

	"github.com/wedsync/pulse/internal/chstore"
)

// The cluster variant of the schema, for a ClickHouse cluster of replicated
// shards (ClickHouse 18.16 needs ZooKeeper for it). It is the same
// migrations with two changes, applied on every replica in turn (see
// MigrateReplica) rather than with ON CLUSTER, so that each replica's
// progress is recorded in its own schema_migrations table:
//
//   - every MergeTree-family table is its Replicated* twin, registered in
//     ZooKeeper at /clickhouse/tables/{shard}/<database>/<table> with the
//     replica name {replica}: both come from the server's <macros>;
//   - a rollup created filled from older rows (CREATE TABLE ... AS SELECT)
//     is filled on the first replica of its shard only; the others create it
//     empty and fetch its parts from ZooKeeper's log, as replication does
//     for every insert.
//
// Materialized views stay on the replicated tables of each replica: an
// insert into requests on one replica fills that replica's rollups, and
// replication copies raw rows and rollup parts alike (a replicated fetch
// does not run views), so each replica ends up holding everything once.
//
// Writers (the aggregator, and the query role's audit and validation rows)
// insert into the replicated tables of the database named by their DSN.
// Readers may read the same tables (on one shard they hold everything) or
// the Distributed twins that CreateDistributed puts in DistributedDatabase:
// one per table, same name, reading one healthy replica of every shard.

// DistributedDatabase names the database holding the Distributed tables
// over database's replicated ones: <database>_dist.
func DistributedDatabase(database string) string { return database + "_dist" }

// Replica is one server of a cluster, as system.clusters lists it.
type Replica struct {
	Shard, Replica uint32
	Host           string // host_name, as remote_servers names it
	Port           uint16 // native protocol port
}

// Addr is host:port.
func (r Replica) Addr() string { return fmt.Sprintf("%s:%d", r.Host, r.Port) }

// ClusterReplicas lists the servers of cluster from s's system.clusters,
// by shard then replica; an unknown cluster is an error.
func ClusterReplicas(ctx context.Context, s *chstore.Store, cluster string) ([]Replica, error) {
	rows, err := s.Query(ctx, "SELECT shard_num, replica_num, host_name, port FROM system.clusters WHERE cluster = "+
		chstore.Quote(cluster)+" ORDER BY shard_num, replica_num")
	if err != nil {
		return nil, fmt.Errorf("read cluster %s: %w", cluster, err)
	}
	defer rows.Close()
	var out []Replica
	for rows.Next() {
		var r Replica
		if err := rows.Scan(&r.Shard, &r.Replica, &r.Host, &r.Port); err != nil {
			return nil, fmt.Errorf("read cluster %s: %w", cluster, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cluster %s: %w", cluster, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("cluster %s is not in system.clusters of %s (remote_servers)", cluster, s.Database())
	}
	return out, nil
}

var (
	createTable = regexp.MustCompile("^CREATE TABLE IF NOT EXISTS `[^`]+`\\.([A-Za-z0-9_]+)")
	mergeTree   = regexp.MustCompile(`ENGINE = ((?:Aggregating|Replacing|Summing|Collapsing)?MergeTree)\(\)`)
	fillWhere   = regexp.MustCompile(`(?s)^(.*\nAS SELECT\n.*\nWHERE )(.*)$`)
)

// Replicated rewrites one statement of a migration, its tables already
// qualified with database, for a replica: Replicated* engines, and no fill
// unless fill is set. Statements it does not concern come back unchanged.
func Replicated(stmt, database string, fill bool) string {
	m := createTable.FindStringSubmatch(stmt)
	if m == nil {
		return stmt
	}
	path := fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s', '{replica}'", database, m[1])
	stmt = mergeTree.ReplaceAllString(stmt, "ENGINE = Replicated${1}("+path+")")
	if !fill {
		// The last WHERE of the fill's SELECT: false, so that the table is
		// created with its columns and no rows.
		stmt = fillWhere.ReplaceAllString(stmt, "${1}0 AND ${2}")
	}
	return stmt
}

// MigrateReplica applies every migration newer than the replica's current
// version with the cluster variant of each statement; fill says whether
// this replica is the first of its shard (it fills new rollups from older
// rows, the others fetch them). Like Migrate it is idempotent.
func MigrateReplica(ctx context.Context, s *chstore.Store, fill bool) ([]uint32, error) {
	return migrate(ctx, s, func(stmt string) string { return Replicated(stmt, s.Database(), fill) })
}

// CreateDistributed creates DistributedDatabase(s.Database()) on s's server
// and in it a Distributed table over cluster for each MergeTree-family
// table of s's database (schema_migrations included, so that a reader of
// the Distributed database sees the schema version). It is idempotent.
func CreateDistributed(ctx context.Context, s *chstore.Store, cluster string) error {
	db := s.Database()
	dist := DistributedDatabase(db)
	if err := s.Exec(ctx, "CREATE DATABASE IF NOT EXISTS `"+dist+"`"); err != nil {
		return fmt.Errorf("create database %s: %w", dist, err)
	}
	rows, err := s.Query(ctx, "SELECT name FROM system.tables WHERE database = "+chstore.Quote(db)+
		" AND engine LIKE '%MergeTree' ORDER BY name")
	if err != nil {
		return fmt.Errorf("list tables of %s: %w", db, err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return fmt.Errorf("list tables of %s: %w", db, err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list tables of %s: %w", db, err)
	}
	for _, t := range tables {
		q := fmt.Sprintf("CREATE TABLE IF NOT EXISTS `%s`.`%s` AS `%s`.`%s` ENGINE = Distributed(%s, %s, %s)",
			dist, t, db, t, chstore.Quote(cluster), chstore.Quote(db), chstore.Quote(t))
		if err := s.Exec(ctx, q); err != nil {
			return fmt.Errorf("create distributed table %s.%s: %w", dist, t, err)
		}
	}
	return nil
}
