package probe

import (
	"bufio"
	"bytes"
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
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

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

// HostSampler samples the host it runs on from /proc, /sys and statfs:
//
//   - cpu: used = busy CPUs over the last interval (from /proc/stat: all
//     time but idle and iowait), capacity = the number of CPUs.
//   - memory: used = MemTotal - MemAvailable, capacity = MemTotal, in bytes.
//   - disk, one per configured path, named by the mount point of its
//     filesystem: used and capacity in bytes as df counts them (capacity =
//     used + available to unprivileged users, so the blocks reserved for
//     root are left out and utilisation equals df's Use%).
//   - network, one per interface except loopback: used = the bytes per
//     second of its busier direction over the last interval (from
//     /proc/net/dev), capacity = the link speed in bytes per second (from
//     /sys/class/net/<if>/speed). When the speed is unknown (virtual
//     interfaces, a link that is down) capacity and utilisation are 0.
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
	busy, all  uint64 // CPU jiffies
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
		c, err := s.readCounters()
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
	cur, err := s.readCounters()
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
		busy := float64(cur.busy-prev.busy) / float64(cur.all-prev.all) * float64(cur.cpus)
		add("cpu", "", math.Round(busy*1000)/1000, float64(cur.cpus))
	}
	if used, total, err := s.memory(); err != nil {
		errs = append(errs, err)
	} else {
		add("memory", "", used, total)
	}
	seen := map[string]bool{}
	for _, p := range s.cfg.Paths {
		mount, used, capacity, err := s.disk(p)
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
			rate := math.Max(float64(rx1-rx0), float64(tx1-tx0)) / dt
			add("network", name, math.Round(rate), s.linkSpeed(name))
		}
	}
	s.prev = cur
	return out, errors.Join(errs...)
}

// readCounters reads /proc/stat and /proc/net/dev.
func (s *HostSampler) readCounters() (*counters, error) {
	c := &counters{at: time.Now(), netRx: map[string]uint64{}, netTx: map[string]uint64{}}
	var errs []error
	if data, err := os.ReadFile(filepath.Join(s.cfg.ProcDir, "stat")); err != nil {
		errs = append(errs, errors.New("read /proc/stat"))
	} else {
		c.busy, c.all, c.cpus = parseStat(data)
	}
	if data, err := os.ReadFile(filepath.Join(s.cfg.ProcDir, "net", "dev")); err != nil {
		errs = append(errs, errors.New("read /proc/net/dev"))
	} else {
		for _, line := range strings.Split(string(data), "\n") {
			name, rest, ok := strings.Cut(line, ":")
			name = strings.TrimSpace(name)
			if !ok || name == "" || name == "lo" || s.loopback(name) {
				continue
			}
			f := strings.Fields(rest)
			if len(f) < 9 {
				continue
			}
			rx, err1 := strconv.ParseUint(f[0], 10, 64)
			tx, err2 := strconv.ParseUint(f[8], 10, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			c.netRx[name], c.netTx[name] = rx, tx
			c.netOrdered = append(c.netOrdered, name)
		}
	}
	return c, errors.Join(errs...)
}

// parseStat returns the busy and total jiffies of the "cpu" line of
// /proc/stat and the number of "cpuN" lines. Guest time is already part of
// user time and is not added again.
func parseStat(data []byte) (busy, all uint64, cpus int) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			cpus++
			continue
		}
		var idle uint64
		for i, v := range f[1:min(len(f), 9)] { // user nice system idle iowait irq softirq steal
			n, _ := strconv.ParseUint(v, 10, 64)
			all += n
			if i == 3 || i == 4 {
				idle += n
			}
		}
		busy = all - idle
	}
	return busy, all, cpus
}

// memory returns MemTotal - MemAvailable and MemTotal in bytes.
func (s *HostSampler) memory() (used, total float64, err error) {
	data, err := os.ReadFile(filepath.Join(s.cfg.ProcDir, "meminfo"))
	if err != nil {
		return 0, 0, errors.New("read /proc/meminfo")
	}
	var tot, avail uint64
	var haveTot, haveAvail bool
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "MemTotal:":
			tot, haveTot = n*1024, true
		case "MemAvailable:":
			avail, haveAvail = n*1024, true
		}
	}
	if !haveTot || !haveAvail || tot == 0 || avail > tot {
		return 0, 0, errors.New("parse /proc/meminfo")
	}
	return float64(tot - avail), float64(tot), nil
}

// disk returns the mount point of path's filesystem and its used and
// capacity bytes, as df counts them.
func (s *HostSampler) disk(path string) (string, float64, float64, error) {
	abs, err := filepath.Abs(path)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return "", 0, 0, fmt.Errorf("disk path %d: cannot be resolved", s.pathIndex(path))
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(abs, &st); err != nil {
		return "", 0, 0, fmt.Errorf("disk path %d: statfs failed", s.pathIndex(path))
	}
	bsize := uint64(st.Frsize)
	if bsize == 0 {
		bsize = uint64(st.Bsize)
	}
	used := (st.Blocks - st.Bfree) * bsize
	capacity := used + st.Bavail*bsize
	return s.mountPoint(abs), float64(used), float64(capacity), nil
}

func (s *HostSampler) pathIndex(path string) int {
	for i, p := range s.cfg.Paths {
		if p == path {
			return i + 1
		}
	}
	return 0
}

// mountPoint returns the longest mount point of /proc/self/mountinfo that
// contains abs, or "/" when it cannot tell.
func (s *HostSampler) mountPoint(abs string) string {
	data, err := os.ReadFile(filepath.Join(s.cfg.ProcDir, "self", "mountinfo"))
	if err != nil {
		return "/"
	}
	best := "/"
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	return best
}

// unescapeMount decodes the octal escapes (\040 for a space) of a mount
// point in mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
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
