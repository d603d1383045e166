package validate

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/testenv"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestCauseVocabulary(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("dial: %w", os.ErrDeadlineExceeded), "timeout"},
		{&pgconn.PgError{Code: "3D000", Message: "database \"secret\" does not exist"}, "database does not exist"},
		{fmt.Errorf("dial tcp 10.0.0.7:5432: %w", syscall.ECONNREFUSED), "connection refused"},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), "connection reset"},
		{&net.DNSError{Err: "no such host", Name: "db.internal"}, "name not resolved"},
		{&tls.CertificateVerificationError{Err: errors.New("bad cert")}, "tls handshake failed"},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), "connection closed"},
		{&net.OpError{Op: "read", Err: timeoutErr{}}, "timeout"},
	} {
		if got := cause(c.err); got != c.want {
			t.Errorf("cause(%v) = %q; want %q", c.err, got, c.want)
		}
	}
}

func TestSmallHelpers(t *testing.T) {
	for cmd, want := range map[string]string{"a": "insert", "w": "update", "d": "delete", "*": "read, insert, update and delete"} {
		if got := commandVerb(cmd); got != want {
			t.Errorf("commandVerb(%s) = %q", cmd, got)
		}
	}
	for _, c := range []struct {
		constraint, unique []bool
		want               int
	}{{[]bool{false, true}, []bool{true, true}, 1}, {[]bool{false, false}, []bool{false, true}, 1}, {[]bool{false, false}, []bool{false, false}, 0}} {
		if got := keepIndex(c.constraint, c.unique); got != c.want {
			t.Errorf("keepIndex(%v, %v) = %d; want %d", c.constraint, c.unique, got, c.want)
		}
	}
	if got := explainable("SELECTX 1"); got == "" {
		t.Error("SELECTX is not a SELECT")
	}
	if got := explainable("  SeLeCt\t1"); got != "" {
		t.Errorf("mixed case SELECT: %q", got)
	}
	long := "SELECT '" + strings.Repeat("x", 3000) + "' || " + strings.Repeat("a", 3000)
	if s := shortSQL(long); !strings.HasPrefix(s, "SELECT '?' || aaa") || len([]rune(s)) != maxQueryText+1 {
		t.Errorf("shortSQL: %d runes, %.30q", len([]rune(s)), s)
	}
	if s := oneLine("SELECT\n\t1,\n  2", 100); s != "SELECT 1, 2" {
		t.Errorf("oneLine: %q", s)
	}
	if s := oneLine(strings.Repeat("a ", 100), 10); s != "a a a a a …" {
		t.Errorf("oneLine truncated: %q", s)
	}
	if s := httpapi.SafeName(strings.Repeat("n", 100) + "\x01"); len(s) != 64 {
		t.Errorf("safeName of a long name: %q", s)
	}
	if s := httpapi.SafeName("a\x01b\xff"); s != "a?b?" {
		t.Errorf("safeName: %q", s)
	}
	if n := placeholders("SELECT $1, $12, '$3'"); n != 12 {
		t.Errorf("placeholders = %d", n)
	}
	if (probeDetails{}).failure() != "failing" {
		t.Error("failure of empty details")
	}
}

func TestStoreVersion(t *testing.T) {
	for name, st := range testenv.Backends(t) {
		v := storeVersion(st)
		if name == "chdb" && !strings.HasPrefix(v, "chDB ") || name == "clickhouse" && strings.HasPrefix(v, "chDB") || !strings.Contains(v, ".") {
			t.Errorf("%s: %q", name, v)
		}
	}
}
