// Command local-cluster runs Pulse's production topology on this machine,
// on free loopback ports, until interrupted:
//
//	go run ./deploy/local-cluster [-dir DIR]     (or: make cluster)
//
// ZooKeeper, two ClickHouse 18.16 servers replicating one shard, three NATS
// servers clustered with JetStream (Pulse's streams at R3), two ingest, two
// aggregator and one query process. It prints the addresses and tokens as
// shell exports (also written to DIR/cluster.env) and stops everything on
// SIGINT or SIGTERM. Needs clickhouse-server, nats-server and zookeeper
// (Debian packages; scripts/services.sh installs the first two).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/wedsync/pulse/internal/localcluster"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "local-cluster:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "", "state and logs (default: a new temporary folder, removed at exit)")
	ingest := flag.Int("ingest", 2, "ingest processes")
	aggregators := flag.Int("aggregators", 2, "aggregator processes")
	query := flag.Int("query", 1, "query processes")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *dir == "" {
		d, err := os.MkdirTemp("", "pulse-local-cluster-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	bin := filepath.Join(*dir, "bin", "pulse")
	fmt.Fprintln(os.Stderr, "local-cluster: building", bin)
	if err := localcluster.Build(ctx, bin); err != nil {
		return err
	}
	c, err := localcluster.Start(ctx, localcluster.Config{Dir: *dir, Pulse: bin,
		Ingest: *ingest, Aggregators: *aggregators, Query: *query, Progress: os.Stderr})
	if err != nil {
		return err
	}
	defer c.Close()
	env := c.Env()
	if err := os.WriteFile(filepath.Join(*dir, "cluster.env"), []byte(env), 0o600); err != nil {
		return err
	}
	fmt.Print(env)
	fmt.Fprintln(os.Stderr, "local-cluster: running; Ctrl-C stops every process")
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "local-cluster: stopping")
	return nil
}
