package chstore_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/testenv"
)

// TestOpenHostList opens a DSN listing a server that refuses connections
// before the real one: the next host is dialled, as an aggregator does when
// one ClickHouse replica is down.
func TestOpenHostList(t *testing.T) {
	u, err := url.Parse(testenv.ClickHouseDSN())
	if err != nil {
		t.Fatal(err)
	}
	dead := testenv.FreeAddr(t) // nothing listens there
	dsn := "clickhouse://" + dead + "," + u.Host + "/" + testenv.DatabaseName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := chstore.Open(ctx, dsn, zerolog.Nop())
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	defer s.Close()
	var one uint8
	if err := s.QueryRow(ctx, "SELECT toUInt8(1)", &one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 through the second host = %d, %v", one, err)
	}
	if err := s.Exec(ctx, "DROP DATABASE IF EXISTS `"+s.Database()+"`"); err != nil {
		t.Fatal(err)
	}
}
