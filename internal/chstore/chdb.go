//go:build chdb

package chstore

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
)

// chDB keeps one session per process. Stores opened on the same path share
// it; a second path is refused.
var chdbSession struct {
	sync.Mutex
	conn *chdbConn
	path string
	refs int
}

// embedded is chDB, the ClickHouse engine in this process. Its queries run
// one at a time: the session is shared and not safe for concurrent use.
type embedded struct {
	once sync.Once
}

func openChDB(path string) (backend, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("chdb data path: %w", err)
	}
	s := &chdbSession
	s.Lock()
	defer s.Unlock()
	if s.conn != nil && s.path != abs {
		return nil, fmt.Errorf("open chdb at %s: this process already uses chdb at another path", path)
	}
	if s.conn == nil {
		conn, err := chdbConnect(abs)
		if err != nil {
			return nil, fmt.Errorf("open chdb at %s: %w", path, err)
		}
		// chDB takes its time zone from the process's TZ when it loads. Pin
		// the session to UTC, so that DateTime text (which parseTSV reads as
		// UTC) and the toYYYYMMDD/toStartOfMinute of partitions and rollups
		// do not depend on the machine.
		if _, err := chdbQuery(conn, "SET session_timezone = 'UTC'", "TabSeparated"); err != nil {
			chdbClose(conn)
			return nil, fmt.Errorf("open chdb at %s: set session time zone: %w", path, err)
		}
		s.conn, s.path = conn, abs
	}
	s.refs++
	return &embedded{}, nil
}

func (e *embedded) run(ctx context.Context, query, format string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &chdbSession
	s.Lock()
	defer s.Unlock()
	if s.conn == nil {
		return nil, fmt.Errorf("chdb session is closed")
	}
	return chdbQuery(s.conn, query, format)
}

func (e *embedded) exec(ctx context.Context, query string) error {
	_, err := e.run(ctx, query, "TabSeparated")
	return err
}

func (e *embedded) query(ctx context.Context, query string) (Rows, error) {
	out, err := e.run(ctx, query, "TabSeparated")
	if err != nil {
		return nil, err
	}
	return parseTSV(out), nil
}

func (e *embedded) insert(ctx context.Context, _ string, query string, cols []Column) error {
	body, err := appendTSV([]byte(query+" FORMAT TabSeparated\n"), cols)
	if err != nil {
		return err
	}
	_, err = e.run(ctx, string(body), "TabSeparated")
	return err
}

func (e *embedded) running(context.Context, string) ([]string, error) { return nil, nil }

func (e *embedded) ping(ctx context.Context) error { return e.exec(ctx, "SELECT 1") }

func (e *embedded) close() error {
	e.once.Do(func() {
		s := &chdbSession
		s.Lock()
		defer s.Unlock()
		if s.refs--; s.refs == 0 && s.conn != nil {
			chdbClose(s.conn)
			s.conn, s.path = nil, ""
		}
	})
	return nil
}
