package chstore

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"
)

// native is a ClickHouse server reached with clickhouse-go over the native
// protocol. Two quirks of old servers (18.16) shape it: an INSERT must name
// its columns, and INSERT ... VALUES through Exec hangs, so every insert is
// a batch.
type native struct {
	conn driver.Conn
}

func openNative(ctx context.Context, u *url.URL, log zerolog.Logger) (*native, error) {
	opts := &clickhouse.Options{
		Addr:            strings.Split(u.Host, ","), // host:port[,host:port...]: the next on a failed dial
		Auth:            clickhouse.Auth{Database: "default", Username: u.User.Username()},
		DialTimeout:     5 * time.Second,
		ReadTimeout:     60 * time.Second,
		MaxOpenConns:    16,
		MaxIdleConns:    8,
		ConnMaxLifetime: time.Hour,
	}
	if p, ok := u.User.Password(); ok {
		opts.Auth.Password = p
	}
	if u.Host == "" {
		return nil, fmt.Errorf("parse ClickHouse DSN: missing host:port")
	}
	tc, err := tlsConfig(u)
	if err != nil {
		return nil, err
	}
	opts.TLS = tc
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open ClickHouse connection: %w", err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to ClickHouse: %w", redact(err, opts.Auth.Password))
	}
	return &native{conn: conn}, nil
}

func (n *native) exec(ctx context.Context, query string) error {
	return n.conn.Exec(ctx, query)
}

func (n *native) query(ctx context.Context, query string) (Rows, error) {
	rows, err := n.conn.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	return utcRows{rows}, nil
}

// utcRows returns DateTime values in UTC, as chDB does, rather than in the
// server's time zone: the instant is the same, the Location is not.
type utcRows struct{ driver.Rows }

func (r utcRows) Scan(dest ...any) error {
	if err := r.Rows.Scan(dest...); err != nil {
		return err
	}
	for _, d := range dest {
		if t, ok := d.(*time.Time); ok {
			*t = t.UTC()
		}
	}
	return nil
}

func (n *native) insert(ctx context.Context, queryID, query string, cols []Column) error {
	if queryID != "" {
		ctx = clickhouse.Context(ctx, clickhouse.WithQueryID(queryID))
	}
	batch, err := n.conn.PrepareBatch(ctx, query)
	if err != nil {
		return err
	}
	for i, c := range cols {
		if err := batch.Column(i).Append(c.Values); err != nil {
			batch.Abort()
			return fmt.Errorf("column %s: %w", c.Name, err)
		}
	}
	return batch.Send()
}

func (n *native) running(ctx context.Context, prefix string) ([]string, error) {
	rows, err := n.conn.Query(ctx, "SELECT query_id FROM system.processes WHERE substring(query_id, 1, "+
		strconv.Itoa(len(prefix))+") = "+Quote(prefix))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (n *native) ping(ctx context.Context) error { return n.conn.Ping(ctx) }

func (n *native) close() error { return n.conn.Close() }
