// Package localcluster runs Pulse's production topology on one machine, on
// free loopback ports: a ZooKeeper node, two ClickHouse servers replicating
// one shard, three NATS servers clustered with JetStream (Pulse's streams at
// R3), and Pulse's roles as separate processes (by default two ingest, two
// aggregator and one query). deploy/local-cluster runs it from the command
// line; the cluster fault tests run it and kill parts of it.
//
// The servers are rendered from the templates in deploy/cluster/, the
// configurations a production deployment starts from. Every process runs
// in its own process group with its log in Config.Dir; Close stops them
// all, and a killed or stopped server can be started again with its state.
package localcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/stream"
)

// Config says what to start. A zero field takes its default.
type Config struct {
	Dir         string // state and logs of every process; required
	Pulse       string // the pulse binary; required (see Build)
	Templates   string // deploy/cluster of this source tree
	Database    string // ClickHouse database of the replicated tables; default pulse
	Cluster     string // ClickHouse cluster name (remote_servers); default pulse
	Ingest      int    // ingest processes; default 2
	Aggregators int    // aggregator processes; default 2
	Query       int    // query processes; default 1
	// PulseArgs are extra `pulse serve` flags per role ("ingest",
	// "aggregator", "query"), after the cluster's own.
	PulseArgs map[string][]string
	// Progress receives a line per step; default io.Discard.
	Progress io.Writer
}

func (c *Config) defaults() {
	if c.Templates == "" {
		_, file, _, _ := runtime.Caller(0)
		c.Templates = filepath.Join(filepath.Dir(file), "..", "..", "deploy", "cluster")
	}
	if c.Database == "" {
		c.Database = "pulse"
	}
	if c.Cluster == "" {
		c.Cluster = "pulse"
	}
	if c.Ingest == 0 {
		c.Ingest = 2
	}
	if c.Aggregators == 0 {
		c.Aggregators = 2
	}
	if c.Query == 0 {
		c.Query = 1
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// NATSNode is one server of the NATS cluster.
type NATSNode struct {
	*Proc
	Port        int // client port
	ClusterPort int
}

// URL is the node's client URL.
func (n *NATSNode) URL() string { return "nats://" + addr(n.Port) }

// ClickHouseNode is one replica of the ClickHouse shard.
type ClickHouseNode struct {
	*Proc
	Port            int // native protocol
	InterserverPort int // replication
}

// Pulse is one `pulse serve` process.
type Pulse struct {
	*Proc
	Role     string
	HTTPAddr string // host:port of its HTTP listener
}

// Cluster is a running local cluster. Close stops it.
type Cluster struct {
	cfg Config

	ZooKeeper     *Proc
	ZooKeeperPort int
	NATS          []*NATSNode
	ClickHouse    []*ClickHouseNode
	Ingest        []*Pulse
	Aggregators   []*Pulse
	Query         []*Pulse

	IngestToken, AdminToken string

	closeOnce sync.Once
}

// Start starts every process and returns once each serves; on failure it
// stops what it started and returns the error.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	cfg.defaults()
	if cfg.Dir == "" || cfg.Pulse == "" {
		return nil, errors.New("local cluster: Dir and Pulse are required")
	}
	c := &Cluster{cfg: cfg, IngestToken: token(), AdminToken: token()}
	if err := c.start(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) progress(format string, args ...any) {
	fmt.Fprintf(c.cfg.Progress, "local-cluster: "+format+"\n", args...)
}

func (c *Cluster) start(ctx context.Context) error {
	t0 := time.Now()
	logs := filepath.Join(c.cfg.Dir, "log")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	// ZooKeeper 1, ClickHouse 2x2, NATS 3x2, Pulse one HTTP port each.
	nPulse := c.cfg.Ingest + c.cfg.Aggregators + c.cfg.Query
	ports, err := freePorts(1 + 4 + 6 + nPulse)
	if err != nil {
		return err
	}
	next := func() int { p := ports[0]; ports = ports[1:]; return p }

	if err := c.startZooKeeper(next()); err != nil {
		return err
	}
	c.progress("zookeeper on %s", addr(c.ZooKeeperPort))

	for range 2 {
		c.ClickHouse = append(c.ClickHouse, &ClickHouseNode{Port: next(), InterserverPort: next()})
	}
	for range 3 {
		c.NATS = append(c.NATS, &NATSNode{Port: next(), ClusterPort: next()})
	}
	for i := range c.ClickHouse {
		if err := c.configureClickHouse(i); err != nil {
			return err
		}
	}
	for i := range c.NATS {
		if err := c.configureNATS(i); err != nil {
			return err
		}
	}
	for _, p := range append(procs(c.ClickHouse), procs(c.NATS)...) {
		if err := p.Start(); err != nil {
			return err
		}
	}
	for i := range c.ClickHouse {
		if err := c.WaitClickHouse(ctx, i); err != nil {
			return err
		}
		c.progress("clickhouse replica %d on %s (replication %s)", i+1, addr(c.ClickHouse[i].Port), addr(c.ClickHouse[i].InterserverPort))
	}
	if err := c.WaitNATS(ctx); err != nil {
		return err
	}
	if err := c.ensureStreams(ctx); err != nil {
		return err
	}
	c.progress("nats cluster on %s, streams at R3", c.NATSURL())

	out, err := exec.CommandContext(ctx, c.cfg.Pulse, "migrate", "--cluster", c.cfg.Cluster,
		"--clickhouse-dsn", c.ReplicaDSN(0)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pulse migrate --cluster %s: %w\n%s", c.cfg.Cluster, err, out)
	}
	c.progress("%s", strings.TrimSpace(string(out)))

	roles := []struct {
		role string
		n    int
		dst  *[]*Pulse
	}{{"aggregator", c.cfg.Aggregators, &c.Aggregators}, {"ingest", c.cfg.Ingest, &c.Ingest}, {"query", c.cfg.Query, &c.Query}}
	var all []*Pulse
	for _, r := range roles {
		for i := range r.n {
			p := c.newPulse(r.role, i, next())
			*r.dst = append(*r.dst, p)
			all = append(all, p)
		}
	}
	for _, p := range all {
		if err := c.StartPulse(p); err != nil {
			return err
		}
	}
	for _, p := range all {
		if err := c.WaitPulse(p); err != nil {
			return err
		}
		if p.Role == "aggregator" {
			c.progress("%s serving", p.Name)
		} else {
			c.progress("%s on http://%s", p.Name, p.HTTPAddr)
		}
	}
	c.progress("up in %s", time.Since(t0).Round(100*time.Millisecond))
	return nil
}

func procs[T interface{ proc() *Proc }](xs []T) []*Proc {
	out := make([]*Proc, len(xs))
	for i, x := range xs {
		out[i] = x.proc()
	}
	return out
}

func (n *NATSNode) proc() *Proc       { return n.Proc }
func (n *ClickHouseNode) proc() *Proc { return n.Proc }

func (c *Cluster) startZooKeeper(port int) error {
	java, err := exec.LookPath("java")
	if err != nil {
		return fmt.Errorf("java is not installed (apt-get install zookeeper): %w", err)
	}
	const jar = "/usr/share/java/zookeeper.jar"
	if _, err := os.Stat(jar); err != nil {
		return fmt.Errorf("ZooKeeper is not installed (apt-get install zookeeper): %w", err)
	}
	dir := filepath.Join(c.cfg.Dir, "zookeeper")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "zoo.cfg")
	err = render(filepath.Join(c.cfg.Templates, "zoo.cfg"), cfg, map[string]string{
		"DATA_DIR": filepath.Join(dir, "data"), "CLIENT_PORT": strconv.Itoa(port), "HOST": "127.0.0.1"})
	if err != nil {
		return err
	}
	c.ZooKeeperPort = port
	c.ZooKeeper = newProc("zookeeper", filepath.Join(c.cfg.Dir, "log"), nil, java,
		"-Xms32m", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-cp", jar, "org.apache.zookeeper.server.ZooKeeperServerMain", cfg)
	if err := c.ZooKeeper.Start(); err != nil {
		return err
	}
	return c.ZooKeeper.waitFor(60*time.Second, "answering ruok", func() error {
		return zkRuok(port)
	})
}

// configureClickHouse writes replica i's config and makes its Proc.
func (c *Cluster) configureClickHouse(i int) error {
	server, err := exec.LookPath("clickhouse-server")
	if err != nil {
		return fmt.Errorf("clickhouse-server is not installed (scripts/services.sh installs it): %w", err)
	}
	n := c.ClickHouse[i]
	dir := filepath.Join(c.cfg.Dir, fmt.Sprintf("clickhouse-%d", i+1))
	for _, sub := range []string{"etc", "log", "data", "tmp", "user_files", "format_schemas"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	var replicas strings.Builder
	for _, r := range c.ClickHouse {
		fmt.Fprintf(&replicas, "<replica><host>127.0.0.1</host><port>%d</port></replica>", r.Port)
	}
	err = render(filepath.Join(c.cfg.Templates, "clickhouse.xml"), filepath.Join(dir, "etc", "config.xml"), map[string]string{
		"HOST": "127.0.0.1", "TCP_PORT": strconv.Itoa(n.Port), "INTERSERVER_PORT": strconv.Itoa(n.InterserverPort),
		"CH_DIR": dir, "CLUSTER": c.cfg.Cluster, "SHARD": "01", "REPLICA": fmt.Sprintf("replica-%d", i+1),
		"REPLICAS":  replicas.String(),
		"ZOOKEEPER": fmt.Sprintf("<node><host>127.0.0.1</host><port>%d</port></node>", c.ZooKeeperPort),
		// Small caches: the machine is shared.
		// A server killed and started again registers as active only once
		// its old ZooKeeper session expired.
		"ZK_SESSION_MS": "6000",
		"MARK_CACHE":    strconv.Itoa(64 << 20), "UNCOMPRESSED_CACHE": strconv.Itoa(32 << 20),
	})
	if err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(c.cfg.Templates, "users.xml"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "users.xml"), b, 0o644); err != nil {
		return err
	}
	n.Proc = newProc(fmt.Sprintf("clickhouse-%d", i+1), filepath.Join(c.cfg.Dir, "log"), nil, server,
		"--config-file="+filepath.Join(dir, "etc", "config.xml"))
	n.Proc.dir = dir
	return nil
}

// configureNATS writes node i's config and makes its Proc.
func (c *Cluster) configureNATS(i int) error {
	server, err := exec.LookPath("nats-server")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nats-server"); serr != nil {
			return fmt.Errorf("nats-server is not installed (apt-get install nats-server): %w", err)
		}
		server = "/usr/sbin/nats-server"
	}
	n := c.NATS[i]
	dir := filepath.Join(c.cfg.Dir, fmt.Sprintf("nats-%d", i+1))
	if err := os.MkdirAll(filepath.Join(dir, "store"), 0o755); err != nil {
		return err
	}
	var routes []string
	for j, o := range c.NATS {
		if j != i {
			routes = append(routes, "nats-route://"+addr(o.ClusterPort))
		}
	}
	conf := filepath.Join(dir, "nats-server.conf")
	err = render(filepath.Join(c.cfg.Templates, "nats-server.conf"), conf, map[string]string{
		"NAME": fmt.Sprintf("nats-%d", i+1), "HOST": "127.0.0.1", "CLIENT_PORT": strconv.Itoa(n.Port),
		"CLUSTER_PORT": strconv.Itoa(n.ClusterPort), "STORE_DIR": filepath.Join(dir, "store"),
		"ROUTES": strings.Join(routes, ", "), "MAX_FILE_STORE": "4GB",
	})
	if err != nil {
		return err
	}
	n.Proc = newProc(fmt.Sprintf("nats-%d", i+1), filepath.Join(c.cfg.Dir, "log"), nil, server, "-c", conf)
	return nil
}

// newPulse makes the Proc of the i-th process of role, listening on port.
// Processes of a role list the servers in turn, so that they spread their
// connections: aggregator 1 inserts into replica 1 while it is up,
// aggregator 2 into replica 2.
func (c *Cluster) newPulse(role string, i, port int) *Pulse {
	dir := filepath.Join(c.cfg.Dir, fmt.Sprintf("%s-%d", role, i+1))
	dsn := c.DSN(i)
	if role == "query" {
		dsn = c.DistributedDSN(i)
	}
	env := []string{
		"PULSE_LOG_FORMAT=json",
		"PULSE_NATS_URL=" + c.NATSURL(),
		"PULSE_CLICKHOUSE_DSN=" + dsn,
		"PULSE_INGEST_TOKENS=load:" + c.IngestToken,
		"PULSE_ADMIN_TOKENS=ops:" + c.AdminToken,
	}
	args := []string{"serve", "--roles", role, "--data-dir", dir, "--http-addr", addr(port),
		"--stream-replicas", "3", "--stream-max-bytes", strconv.FormatInt(streamConfig().MaxBytes, 10), "--migrate=false", "--drain-grace", "1s"}
	if role == "aggregator" {
		// Messages held by an aggregator that died, or whose ack was lost
		// with a NATS node, come back after 10 s rather than a minute.
		args = append(args, "--ack-wait", "10s")
	}
	args = append(args, c.cfg.PulseArgs[role]...)
	p := &Pulse{Role: role, HTTPAddr: addr(port),
		Proc: newProc(fmt.Sprintf("%s-%d", role, i+1), filepath.Join(c.cfg.Dir, "log"), env, c.cfg.Pulse, args...)}
	return p
}

// StartPulse starts p (again); WaitPulse waits until it serves.
func (c *Cluster) StartPulse(p *Pulse) error {
	if err := os.MkdirAll(filepath.Join(c.cfg.Dir, p.Name), 0o755); err != nil {
		return err
	}
	return p.Start()
}

// WaitPulse waits until p logged that it serves and, for the roles with
// an HTTP API, until /readyz answers 200.
func (c *Cluster) WaitPulse(p *Pulse) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return p.waitFor(90*time.Second, "ready", func() error {
		if !p.logged("pulse is serving") {
			return errors.New("not serving yet")
		}
		if p.Role == "aggregator" {
			return nil
		}
		resp, err := client.Get("http://" + p.HTTPAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz answers %d", resp.StatusCode)
		}
		return nil
	})
}

// WaitClickHouse waits until replica i answers a query.
func (c *Cluster) WaitClickHouse(ctx context.Context, i int) error {
	n := c.ClickHouse[i]
	return n.waitFor(90*time.Second, "answering", func() error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		st, err := chstore.Open(ctx, fmt.Sprintf("clickhouse://%s/default", addr(n.Port)), zerolog.Nop())
		if err != nil {
			return err
		}
		return st.Close()
	})
}

// WaitNATS waits until every running NATS node accepts clients and the
// cluster's JetStream answers (it has a meta leader).
func (c *Cluster) WaitNATS(ctx context.Context) error {
	for _, n := range c.NATS {
		if !n.Running() {
			continue
		}
		err := n.waitFor(60*time.Second, "accepting clients", func() error {
			nc, err := nats.Connect(n.URL(), nats.Timeout(time.Second), nats.NoReconnect())
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err = js.AccountInfo(ctx)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// streamConfig is the streams' config the Pulse processes are started with.
func streamConfig() stream.Config {
	c := stream.Config{Replicas: 3, MaxBytes: 1 << 30}
	c.Defaults()
	return c
}

// ensureStreams creates Pulse's streams at R3 before any Pulse process
// starts, so that they do not race each other to place them; a fresh
// cluster may take a few seconds before it can.
func (c *Cluster) ensureStreams(ctx context.Context) error {
	nc, err := nats.Connect(c.NATSURL(), nats.Timeout(2*time.Second))
	if err != nil {
		return fmt.Errorf("connect to the NATS cluster: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := stream.Ensure(ctx, js, streamConfig())
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("create the streams at R3: %w", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// NATSURL lists every node's client URL, comma-separated.
func (c *Cluster) NATSURL() string {
	urls := make([]string, len(c.NATS))
	for i, n := range c.NATS {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// DSN is the DSN of the replicated tables listing every replica, starting
// with replica i mod 2 (the next is tried when a dial fails).
func (c *Cluster) DSN(i int) string { return c.dsn(i, c.cfg.Database) }

// DistributedDSN is DSN for the database of the Distributed tables.
func (c *Cluster) DistributedDSN(i int) string { return c.dsn(i, c.cfg.Database+"_dist") }

func (c *Cluster) dsn(first int, db string) string {
	var hosts []string
	for j := range c.ClickHouse {
		hosts = append(hosts, addr(c.ClickHouse[(first+j)%len(c.ClickHouse)].Port))
	}
	return "clickhouse://" + strings.Join(hosts, ",") + "/" + db
}

// ReplicaDSN is the DSN of replica i's replicated tables alone.
func (c *Cluster) ReplicaDSN(i int) string {
	return "clickhouse://" + addr(c.ClickHouse[i].Port) + "/" + c.cfg.Database
}

// Database is the database of the replicated tables.
func (c *Cluster) Database() string { return c.cfg.Database }

// Close stops the Pulse processes (SIGTERM, so that they drain), then the
// NATS and ClickHouse servers and ZooKeeper. It is idempotent.
func (c *Cluster) Close() {
	c.closeOnce.Do(func() {
		var wg sync.WaitGroup
		stop := func(ps []*Proc, timeout time.Duration) {
			for _, p := range ps {
				if p == nil {
					continue
				}
				wg.Add(1)
				go func() { defer wg.Done(); p.Stop(timeout) }()
			}
			wg.Wait()
		}
		var pulses []*Proc
		for _, p := range append(append(append([]*Pulse{}, c.Ingest...), c.Query...), c.Aggregators...) {
			pulses = append(pulses, p.Proc)
		}
		t0 := time.Now()
		stop(pulses, 15*time.Second)
		c.progress("pulse processes stopped in %s", time.Since(t0).Round(time.Millisecond))
		// ClickHouse 18.16 may take half a minute to close its ZooKeeper
		// session on SIGTERM; its data is fsynced parts either way.
		stop(append(procs(c.NATS), procs(c.ClickHouse)...), 5*time.Second)
		stop([]*Proc{c.ZooKeeper}, 5*time.Second)
		c.progress("stopped in %s", time.Since(t0).Round(time.Millisecond))
	})
}

func token() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// zkRuok asks ZooKeeper on port whether it is fine.
func zkRuok(port int) error {
	conn, err := net.DialTimeout("tcp", addr(port), time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("ruok")); err != nil {
		return err
	}
	b, _ := io.ReadAll(conn)
	if string(b) != "imok" {
		return fmt.Errorf("ruok answered %q", b)
	}
	return nil
}

// Build compiles this source tree's cmd/pulse (without chDB: the cluster
// uses ClickHouse servers) into out.
func Build(ctx context.Context, out string) error {
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/pulse")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/pulse: %w\n%s", err, b)
	}
	return nil
}

// Env is the cluster's addresses and tokens as `export NAME='value'`
// lines, for a shell or a client.
func (c *Cluster) Env() string {
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "export %s='%s'\n", k, v) }
	var ingest, query []string
	for _, p := range c.Ingest {
		ingest = append(ingest, "http://"+p.HTTPAddr)
	}
	for _, p := range c.Query {
		query = append(query, "http://"+p.HTTPAddr)
	}
	line("PULSE_CLUSTER_INGEST_URLS", strings.Join(ingest, " "))
	line("PULSE_CLUSTER_QUERY_URLS", strings.Join(query, " "))
	line("PULSE_CLUSTER_NATS_URL", c.NATSURL())
	line("PULSE_CLUSTER_CLICKHOUSE_DSN", c.DSN(0))
	line("PULSE_CLUSTER_CLICKHOUSE_DIST_DSN", c.DistributedDSN(0))
	line("PULSE_CLUSTER_ZOOKEEPER", addr(c.ZooKeeperPort))
	line("PULSE_CLUSTER_INGEST_TOKEN", c.IngestToken)
	line("PULSE_CLUSTER_ADMIN_TOKEN", c.AdminToken)
	line("PULSE_CLUSTER_LOGS", filepath.Join(c.cfg.Dir, "log"))
	return b.String()
}
