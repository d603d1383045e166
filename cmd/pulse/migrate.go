package main

import (
	"context"
	"fmt"
	"io"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/schema"
)

func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	dsn := fs.String("clickhouse-dsn", "chdb:data/chdb", "ClickHouse: clickhouse://host:9000/db (server) or chdb:path (embedded)")
	var chTLS clickHouseTLS
	chTLS.register(fs)
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
