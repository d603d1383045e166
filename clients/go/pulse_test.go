package pulseclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/testenv"
)

const (
	ingestToken = "ingest-token-for-client-tests"
	adminToken  = "admin-token-for-client-tests"
)

var pulseBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pulseclient-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pulseBin = filepath.Join(dir, "pulse")
	if out, err := exec.Command("go", "build", "-o", pulseBin, "../../cmd/pulse").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build pulse: %v\n%s", err, out)
		os.Exit(1)
	}
	code := testenv.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// pulse is a `pulse serve` child process; stop and start keep its data
// dir, ports and ClickHouse database.
type pulse struct {
	t      testing.TB
	args   []string
	env    []string
	url    string
	store  *chstore.Store
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *testenv.LogBuffer
}

// startPulse runs pulse serve with its own data dir, ports and fresh
// database, and the given ingest rate limit.
func startPulse(t testing.TB, ingestLimit string) *pulse {
	t.Helper()
	store := testenv.ClickHouse(t)
	httpAddr := testenv.FreeAddr(t)
	p := &pulse{t: t, url: "http://" + httpAddr, store: store}
	p.args = []string{"serve", "--clickhouse-dsn", testenv.ClickHouseDSN() + "/" + store.Database(), "--data-dir", t.TempDir(),
		"--http-addr", httpAddr, "--nats-listen", testenv.FreeAddr(t), "--batch-delay", "50ms", "--drain-grace", "0s", "--ack-wait", "5s"}
	p.env = []string{"PULSE_INGEST_TOKENS=app:" + ingestToken, "PULSE_ADMIN_TOKENS=admin:" + adminToken,
		"PULSE_INGEST_RATE_LIMIT=" + ingestLimit, "PULSE_ADMIN_RATE_LIMIT=100000/min", "PULSE_LOG_FORMAT=json"}
	t.Cleanup(p.stop)
	p.start()
	return p
}

func (p *pulse) start() {
	p.t.Helper()
	p.cmd = exec.Command(pulseBin, p.args...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.stderr = &testenv.LogBuffer{}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start pulse: %v", err)
	}
	p.exited = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.exited:
			p.t.Fatalf("pulse exited before serving:\n%s", p.stderr.String())
		default:
		}
		if res, err := http.Get(p.url + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("pulse not ready within 60s:\n%s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the process with SIGKILL and waits for it.
func (p *pulse) stop() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
}

// stats reads /api/admin/system/stats.
func (p *pulse) requestsStored(t testing.TB) uint64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.url+"/api/admin/system/stats", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	defer res.Body.Close()
	var body struct {
		RequestsStored uint64 `json:"requests_stored"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("stats: %d %v", res.StatusCode, err)
	}
	return body.RequestsStored
}

// assertStored waits until want rows are stored, lets a few aggregator
// batches pass (a late duplicate would land), and checks the count, and
// with ids the distinct request IDs, in ClickHouse.
func (p *pulse) assertStored(t testing.TB, want uint64, ids bool) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d rows stored", want), func() bool { return p.requestsStored(t) >= want })
	time.Sleep(300 * time.Millisecond) // several --batch-delay: time for a duplicate to show, not a wait for an event
	if got := testenv.Count(t, p.store, "SELECT count() FROM "+p.store.T("requests")); got != want {
		t.Errorf("rows = %d; want %d", got, want)
	}
	if ids {
		if got := testenv.Count(t, p.store, "SELECT uniqExact(request_id) FROM "+p.store.T("requests")); got != want {
			t.Errorf("distinct request ids = %d; want %d", got, want)
		}
	}
}

func newClient(t testing.TB, url string, cfg Config) (*Client, *testenv.LogBuffer) {
	t.Helper()
	logs := &testenv.LogBuffer{}
	cfg.URL, cfg.Service = url, "api"
	if cfg.Token == "" {
		cfg.Token = ingestToken
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 500*time.Millisecond
	}
	c, err := New(cfg, testLogger(logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c.Shutdown(ctx)
	})
	return c, logs
}
