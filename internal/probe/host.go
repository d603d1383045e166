package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/shirou/gopsutil/v4/common"
	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/net"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/safeerr"
)

// HostConfig configures the HostSampler. Zero fields get the defaults
// noted (NewHostSampler fills them).
type HostConfig struct {
	Interval       time.Duration // between samples; default 10s; the first is at start
	PublishTimeout time.Duration // default 5s
	Host           string        // host name of the samples; default os.Hostname(), lower case, sanitised
	Paths          []string      // a disk sample for the filesystem of each; default {"."}: pass the data dir
	ProcDir        string        // default /proc
	SysDir         string        // default /sys

	// Registerer, when not nil, gets the sampler's metrics:
	// pulse_probe_published_messages_total and
	// pulse_probe_publish_failures_total with source="host".
	Registerer prometheus.Registerer
}

// defaults fills zero fields.
func (c *HostConfig) defaults() {
	if c.Interval == 0 {
		c.Interval = 10 * time.Second
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.Host == "" {
		name, _ := os.Hostname()
		c.Host = name
	}
	c.Host = Hostname(c.Host)
	if len(c.Paths) == 0 {
		c.Paths = []string{"."}
	}
	if c.ProcDir == "" {
		c.ProcDir = "/proc"
	}
	if c.SysDir == "" {
		c.SysDir = "/sys"
	}
}

// Validate reports whether NewHostSampler would accept c, its defaults
// filled.
func (c HostConfig) Validate() error {
	c.defaults()
	if c.Interval < 10*time.Millisecond || c.PublishTimeout <= 0 {
		return errors.New("host sample interval must be at least 10ms and its publish timeout positive")
	}
	return nil
}

// HostSampler samples the host it runs on with gopsutil (which reads /proc
// and statfs; ProcDir and SysDir point it elsewhere):
//
//   - cpu: used = busy CPUs over the last interval (gopsutil's CPU times:
//     all time but idle and iowait, guest time not counted twice),
//     capacity = the number of logical CPUs.
//   - memory: used = total - available, capacity = total, in bytes.
//   - disk, one per filesystem of the configured paths, named by its mount
//     point: used and capacity in bytes as df counts them (capacity =
//     used + available to unprivileged users, so the blocks reserved for
//     root are left out and utilisation equals df's Use%). A path that does
//     not exist (yet) counts as its nearest existing parent, the
//     filesystem it will be created on.
//   - network, one per interface with a known link speed: used = the bytes
//     per second of its busier direction over the last interval, capacity
//     = the link speed in bytes per second (/sys/class/net/<if>/speed,
//     which gopsutil does not read). Loopback and interfaces without a
//     speed (virtual ones, links that are down) are left out: a capacity
//     of 0 would say nothing.
//
// Each interval's samples are published as one JSON array on
// pulse.ingest.resources.<host, dots as underscores>. Create it with
// NewHostSampler and call Run once.
type HostSampler struct {
	cfg HostConfig
	pub Publisher
	log zerolog.Logger

	prev      *counters
	published atomic.Uint64
	failures  atomic.Uint64
	warn      *safeerr.Limiter
}

// counters are the cumulative readings that rates are computed from.
type counters struct {
	at         time.Time
	busy, all  float64 // CPU seconds, as gopsutil's cpu.Percent counts them
	cpus       int
	netRx      map[string]uint64
	netTx      map[string]uint64
	netOrdered []string
}

// NewHostSampler returns a sampler publishing through pub, or an error
// when cfg, its defaults filled, is invalid. It registers the sampler's
// metrics on cfg.Registerer and starts nothing.
func NewHostSampler(cfg HostConfig, pub Publisher, log zerolog.Logger) (*HostSampler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("host sampler config: %w", err)
	}
	cfg.defaults()
	s := &HostSampler{cfg: cfg, pub: pub, log: log.With().Str("component", "host-sampler").Logger(), warn: safeerr.NewLimiter(time.Minute)}
	if cfg.Registerer != nil {
		registerPublish(cfg.Registerer, "host", &s.published, &s.failures)
	}
	return s, nil
}

// Host is the host name the samples carry.
func (s *HostSampler) Host() string { return s.cfg.Host }

// PublishFailures counts samples that could not be published.
func (s *HostSampler) PublishFailures() uint64 { return s.failures.Load() }

// Run samples at once and then every Interval until ctx is done, and
// returns when the last publish finished. Failures to read or publish are
// counted, logged (at most once a minute per kind) and never returned; Run
// returns nil.
func (s *HostSampler) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		samples, err := s.Sample(ctx)
		if err != nil && ctx.Err() == nil {
			if ok, n := s.warn.Allow("sample", time.Now()); ok {
				s.log.Warn().Str("cause", err.Error()).Int("suppressed", n).Msg("host sample incomplete")
			}
		}
		if len(samples) > 0 && ctx.Err() == nil {
			s.publish(ctx, samples)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *HostSampler) publish(ctx context.Context, samples []event.ResourceSample) {
	data, err := json.Marshal(samples)
	if err != nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	if err := s.pub.Publish(pctx, ResourceSubject(s.cfg.Host), data); err != nil {
		n := s.failures.Add(1)
		if ok, suppressed := s.warn.Allow("publish", time.Now()); ok {
			s.log.Warn().Str("cause", cause(err)).Uint64("failures_total", n).Int("suppressed", suppressed).Msg("host samples not published")
		}
		return
	}
	s.published.Add(1)
}

// warmup is how long the first sample waits between two readings of the
// cumulative counters, to have rates at once.
const warmup = 250 * time.Millisecond

// Sample reads the host once. The first call reads the counters twice,
// warmup apart. It returns what it could read and the first error (its
// text names only local files). It must not be called concurrently.
func (s *HostSampler) Sample(ctx context.Context) ([]event.ResourceSample, error) {
	var errs []error
	if s.prev == nil {
		c, err := s.readCounters(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		s.prev = c
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(warmup):
		}
	}
	cur, err := s.readCounters(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	ts := cur.at.UTC()
	var out []event.ResourceSample
	add := func(resource, name string, used, capacity float64) {
		u := 0.0
		if capacity > 0 {
			u = min(math.Max(used/capacity, 0), 1)
		}
		out = append(out, event.ResourceSample{Timestamp: ts, Host: s.cfg.Host, Resource: resource, Name: name,
			Used: math.Max(used, 0), Capacity: capacity, Utilisation: u})
	}
	prev := s.prev
	if cur.cpus > 0 && cur.all > prev.all && cur.busy >= prev.busy {
		busy := min((cur.busy-prev.busy)/(cur.all-prev.all), 1) * float64(cur.cpus)
		add("cpu", "", math.Round(busy*1000)/1000, float64(cur.cpus))
	}
	if used, total, err := s.memory(ctx); err != nil {
		errs = append(errs, err)
	} else {
		add("memory", "", used, total)
	}
	seen := map[string]bool{}
	for _, p := range s.cfg.Paths {
		mount, used, capacity, err := s.disk(ctx, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !seen[mount] {
			seen[mount] = true
			add("disk", mount, used, capacity)
		}
	}
	if dt := cur.at.Sub(prev.at).Seconds(); dt > 0 {
		for _, name := range cur.netOrdered {
			rx0, ok0 := prev.netRx[name]
			tx0, ok1 := prev.netTx[name]
			rx1, tx1 := cur.netRx[name], cur.netTx[name]
			if !ok0 || !ok1 || rx1 < rx0 || tx1 < tx0 { // new interface or counters reset
				continue
			}
			speed := s.linkSpeed(name)
			if speed == 0 { // unknown: a virtual interface or a link that is down
				continue
			}
			rate := math.Max(float64(rx1-rx0), float64(tx1-tx0)) / dt
			add("network", name, math.Round(rate), speed)
		}
	}
	s.prev = cur
	return out, errors.Join(errs...)
}

// env is ctx carrying ProcDir and SysDir for gopsutil.
func (s *HostSampler) env(ctx context.Context) context.Context {
	return context.WithValue(ctx, common.EnvKey, common.EnvMap{common.HostProcEnvKey: s.cfg.ProcDir, common.HostSysEnvKey: s.cfg.SysDir})
}

// readCounters reads the CPU times and the network interfaces' byte
// counters.
func (s *HostSampler) readCounters(ctx context.Context) (*counters, error) {
	ctx = s.env(ctx)
	c := &counters{at: time.Now(), netRx: map[string]uint64{}, netTx: map[string]uint64{}}
	var errs []error
	times, err := cpu.TimesWithContext(ctx, false)
	cpus, cerr := cpu.CountsWithContext(ctx, true)
	if err != nil || cerr != nil || len(times) == 0 {
		errs = append(errs, errors.New("read CPU times"))
	} else {
		c.all, c.busy = cpuBusy(times[0])
		c.cpus = cpus
	}
	ios, err := net.IOCountersWithContext(ctx, true)
	if err != nil {
		errs = append(errs, errors.New("read network counters"))
	}
	for _, io := range ios {
		if io.Name == "" || io.Name == "lo" || s.loopback(io.Name) {
			continue
		}
		c.netRx[io.Name], c.netTx[io.Name] = io.BytesRecv, io.BytesSent
		c.netOrdered = append(c.netOrdered, io.Name)
	}
	return c, errors.Join(errs...)
}

// cpuBusy returns all and busy CPU time as gopsutil's cpu.Percent counts
// them: guest time is part of user time and not added again; idle and
// iowait are not busy.
func cpuBusy(t cpu.TimesStat) (all, busy float64) {
	all = t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
	return all, all - t.Idle - t.Iowait
}

// memory returns total - available and total memory in bytes.
func (s *HostSampler) memory(ctx context.Context) (used, total float64, err error) {
	vm, err := mem.VirtualMemoryWithContext(s.env(ctx))
	if err != nil || vm.Total == 0 || vm.Available > vm.Total {
		return 0, 0, errors.New("read memory")
	}
	return float64(vm.Total - vm.Available), float64(vm.Total), nil
}

// disk returns the mount point of the filesystem holding path (or, when
// path does not exist, its nearest existing parent) and its used and
// capacity bytes, as df counts them.
func (s *HostSampler) disk(ctx context.Context, path string) (string, float64, float64, error) {
	abs, err := existingParent(path)
	if err != nil {
		return "", 0, 0, fmt.Errorf("disk path %d: cannot be resolved", s.pathIndex(path))
	}
	u, err := disk.UsageWithContext(ctx, abs)
	if err != nil {
		return "", 0, 0, fmt.Errorf("disk path %d: statfs failed", s.pathIndex(path))
	}
	return s.mountPoint(ctx, abs), float64(u.Used), float64(u.Used + u.Free), nil
}

// existingParent returns path, absolute and with symbolic links resolved,
// or the nearest parent of it that exists.
func existingParent(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	for {
		resolved, err := filepath.EvalSymlinks(abs)
		if err == nil {
			return resolved, nil
		}
		parent := filepath.Dir(abs)
		if parent == abs {
			return "", err
		}
		abs = parent
	}
}

func (s *HostSampler) pathIndex(path string) int {
	for i, p := range s.cfg.Paths {
		if p == path {
			return i + 1
		}
	}
	return 0
}

// mountPoint returns the longest mount point that contains abs, or "/"
// when it cannot tell.
func (s *HostSampler) mountPoint(ctx context.Context, abs string) string {
	parts, err := disk.PartitionsWithContext(s.env(ctx), true)
	if err != nil {
		return "/"
	}
	best := "/"
	for _, p := range parts {
		mp := p.Mountpoint
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	return best
}

// loopback reports whether the interface is a loopback (ARPHRD_LOOPBACK).
func (s *HostSampler) loopback(name string) bool {
	data, err := os.ReadFile(filepath.Join(s.cfg.SysDir, "class", "net", name, "type"))
	return err == nil && strings.TrimSpace(string(data)) == "772"
}

// linkSpeed is the interface's speed in bytes per second, 0 when unknown.
func (s *HostSampler) linkSpeed(name string) float64 {
	data, err := os.ReadFile(filepath.Join(s.cfg.SysDir, "class", "net", name, "speed"))
	if err != nil {
		return 0
	}
	mbps, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || mbps <= 0 {
		return 0
	}
	return float64(mbps) * 1e6 / 8
}
