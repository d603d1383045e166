package main

import (
	"context"
	"fmt"
	"io"
	"net/url"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/schema"
)

func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	dsn := fs.String("clickhouse-dsn", "chdb:data/chdb", "ClickHouse: clickhouse://host:9000/db (server) or chdb:path (embedded)")
	var chTLS clickHouseTLS
	chTLS.register(fs)
	cluster := fs.String("cluster", "", "ClickHouse cluster (remote_servers) to migrate: Replicated* tables on every replica it lists, and Distributed tables in <db>_dist; empty migrates the one server")
	var lf logFlags
	lf.register(fs)
	ret := retentionFlags(fs)
	if err := parseWithEnv(fs, args); err != nil {
		return err
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	r, err := ret()
	if err != nil {
		return err
	}
	if *dsn, err = chTLS.apply(*dsn); err != nil {
		return err
	}
	store, err := chstore.Open(ctx, *dsn, log)
	if clickHouseAuthError(err) {
		return refusedCredential("ClickHouse", err)
	}
	if err != nil {
		return err
	}
	defer store.Close()
	if *cluster != "" {
		return migrateCluster(ctx, store, *dsn, *cluster, r, stdout, log)
	}
	applied, err := applySchema(ctx, store, r)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "schema at version %d (applied %v) on %s %s, database %s\n",
		schema.Latest(), applied, store.Kind(), store.Version(), store.Database())
	return nil
}

// applySchema migrates store and sets its TTLs where the server has them.
func applySchema(ctx context.Context, store *chstore.Store, r schema.Retention) ([]uint32, error) {
	applied, err := schema.Migrate(ctx, store)
	if err != nil {
		return applied, err
	}
	return applied, schema.ApplyTTL(ctx, store, r)
}

// migrateCluster applies the replicated schema on every replica of cluster
// that store's server lists, in order (the first of each shard fills new
// rollups), then creates the Distributed tables on each. Each replica is
// reached with dsn's user, password, database and options at the host and
// port system.clusters names.
func migrateCluster(ctx context.Context, store *chstore.Store, dsn, cluster string, r schema.Retention, stdout io.Writer, log zerolog.Logger) error {
	if store.Kind() != "clickhouse" {
		return fmt.Errorf("--cluster needs a ClickHouse server DSN (clickhouse://), not %s", store.Kind())
	}
	replicas, err := schema.ClusterReplicas(ctx, store, cluster)
	if err != nil {
		return err
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return fmt.Errorf("parse ClickHouse DSN: invalid URL")
	}
	filled := map[uint32]bool{}
	for _, rep := range replicas {
		u.Host = rep.Addr()
		st, err := chstore.Open(ctx, u.String(), log)
		if err != nil {
			return fmt.Errorf("replica %d of shard %d (%s): %w", rep.Replica, rep.Shard, rep.Addr(), err)
		}
		applied, err := schema.MigrateReplica(ctx, st, !filled[rep.Shard])
		if err == nil {
			err = schema.ApplyTTL(ctx, st, r)
		}
		if err == nil {
			err = schema.CreateDistributed(ctx, st, cluster)
		}
		st.Close()
		if err != nil {
			return fmt.Errorf("replica %d of shard %d (%s): %w", rep.Replica, rep.Shard, rep.Addr(), err)
		}
		filled[rep.Shard] = true
		fmt.Fprintf(stdout, "cluster %s shard %d replica %d (%s): schema at version %d (applied %v), database %s, distributed tables in %s\n",
			cluster, rep.Shard, rep.Replica, rep.Addr(), schema.Latest(), applied, st.Database(), schema.DistributedDatabase(st.Database()))
	}
	return nil
}
