package probe

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/shirou/gopsutil/v4/cpu"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
)

// validSamples checks samples the way the aggregator will.
func validSamples(t *testing.T, samples []event.ResourceSample) []event.ResourceSample {
	t.Helper()
	data, err := json.Marshal(samples)
	if err != nil {
		t.Fatal(err)
	}
	got, err := event.DecodeResources(data, event.Rules{Now: time.Now()}, 10000)
	if err != nil {
		t.Fatalf("samples %s do not validate: %v", data, err)
	}
	for _, s := range got {
		if s.Utilisation < 0 || s.Utilisation > 1 || math.IsNaN(s.Utilisation) {
			t.Errorf("%s %s: utilisation %v outside [0, 1]", s.Resource, s.Name, s.Utilisation)
		}
	}
	return got
}

func byResource(samples []event.ResourceSample) map[string]event.ResourceSample {
	out := map[string]event.ResourceSample{}
	for _, s := range samples {
		out[s.Resource+":"+s.Name] = s
	}
	return out
}

// TestHostSamplerThisHost samples the machine the test runs on.
func TestHostSamplerThisHost(t *testing.T) {
	dir := t.TempDir()
	s := newHostSampler(t, HostConfig{Paths: []string{dir, "/"}}, nil)
	got, err := s.Sample(context.Background())
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	samples := byResource(validSamples(t, got))
	_, _, cpus := procStat(t)
	cpu, ok := samples["cpu:"]
	if !ok || cpu.Capacity != float64(cpus) || cpu.Used < 0 || cpu.Used > cpu.Capacity {
		t.Errorf("cpu sample %+v; want capacity %d and used within it", cpu, cpus)
	}
	if m := samples["memory:"]; m.Used <= 0 || m.Capacity < m.Used {
		t.Errorf("memory sample %+v", m)
	}
	var disks int
	for _, smp := range got {
		if smp.Resource == "disk" {
			disks++
			if smp.Capacity <= 0 || smp.Used > smp.Capacity || !strings.HasPrefix(smp.Name, "/") {
				t.Errorf("disk sample %+v", smp)
			}
		}
		if smp.Resource == "network" && (smp.Name == "lo" || smp.Capacity == 0 && smp.Utilisation != 0) {
			t.Errorf("network sample %+v", smp)
		}
		if smp.Host != s.Host() {
			t.Errorf("host %q; want %q", smp.Host, s.Host())
		}
	}
	if disks < 1 || disks > 2 {
		t.Errorf("%d disk samples for 2 paths; want 1 per filesystem", disks)
	}
	name, _ := os.Hostname()
	if s.Host() != Hostname(name) {
		t.Errorf("host %q; want the sanitised host name %q", s.Host(), Hostname(name))
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "host", from))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestHostSamplerFixture computes known figures from fixed /proc and /sys
// files.
func TestHostSamplerFixture(t *testing.T) {
	proc, sys := t.TempDir(), t.TempDir()
	copyFile(t, "stat.1", filepath.Join(proc, "stat"))
	copyFile(t, "dev.1", filepath.Join(proc, "net", "dev"))
	copyFile(t, "meminfo", filepath.Join(proc, "meminfo"))
	copyFile(t, "mountinfo", filepath.Join(proc, "self", "mountinfo"))
	writeFile(t, filepath.Join(sys, "class/net/eth0/speed"), "1000\n")
	writeFile(t, filepath.Join(sys, "class/net/eth0/type"), "1\n")
	writeFile(t, filepath.Join(sys, "class/net/tun0/speed"), "-1\n")
	writeFile(t, filepath.Join(sys, "class/net/lo2/type"), "772\n")
	// The disk path's parent is a mount point too, the longest match.
	disk := t.TempDir()
	parent, err := filepath.EvalSymlinks(filepath.Dir(disk))
	if err != nil {
		t.Fatal(err)
	}
	mi, _ := os.ReadFile(filepath.Join(proc, "self", "mountinfo"))
	writeFile(t, filepath.Join(proc, "self", "mountinfo"), string(mi)+"40 22 0:40 / "+strings.ReplaceAll(parent, " ", `\040`)+" rw - tmpfs tmpfs rw\n")
	s := newHostSampler(t, HostConfig{Host: "Web-1.Example.COM", Paths: []string{disk}, ProcDir: proc, SysDir: sys}, nil)
	if s.Host() != "web-1.example.com" {
		t.Errorf("host %q; want web-1.example.com", s.Host())
	}

	t0 := time.Now()
	first, err := s.Sample(context.Background())
	t1 := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	got := byResource(validSamples(t, first))
	if _, ok := got["cpu:"]; ok {
		t.Errorf("cpu sampled from unchanged counters: %+v", got["cpu:"])
	}
	if n := got["network:eth0"]; n.Used != 0 || n.Capacity != 125e6 {
		t.Errorf("eth0 from unchanged counters: %+v; want 0 of 125e6 B/s", n)
	}

	copyFile(t, "stat.2", filepath.Join(proc, "stat"))
	copyFile(t, "dev.2", filepath.Join(proc, "net", "dev"))
	t2 := time.Now()
	second, err := s.Sample(context.Background())
	t3 := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	samples := validSamples(t, second)
	got = byResource(samples)
	// busy 900 of 1300 jiffies on 2 CPUs; guest time is not counted twice.
	if c := got["cpu:"]; c.Used != 1.385 || c.Capacity != 2 || c.Utilisation != 1.385/2 {
		t.Errorf("cpu %+v; want 1.385 of 2", c)
	}
	if m := got["memory:"]; m.Used != 12000000*1024 || m.Capacity != 16000000*1024 || m.Utilisation != 0.75 {
		t.Errorf("memory %+v; want 12000000 of 16000000 KiB", m)
	}
	if d, ok := got["disk:"+parent]; !ok || d.Capacity <= 0 || d.Used > d.Capacity {
		t.Errorf("disk samples %+v; want one named by the mount point %s", samples, parent)
	}
	// eth0's busier direction moved 2,000,000 bytes between two readings
	// taken somewhere within [t2-t1, t3-t0] of each other (so quickly that
	// the rate may exceed the link: utilisation stops at 1).
	eth := got["network:eth0"]
	lo, hi := 2e6/t3.Sub(t0).Seconds(), 2e6/t2.Sub(t1).Seconds()
	if eth.Used < math.Floor(lo) || eth.Used > math.Ceil(hi) || eth.Capacity != 125e6 || math.Abs(eth.Utilisation-min(eth.Used/125e6, 1)) > 1e-12 {
		t.Errorf("eth0 %+v; want %v..%v B/s of 125e6", eth, lo, hi)
	}
	for _, name := range []string{"lo", "lo2", "veth9", "tun0"} {
		if _, ok := got["network:"+name]; ok {
			t.Errorf("network sample of %s (loopback, new since the last reading, or without a link speed)", name)
		}
	}
}

// TestHostSamplerMissingFiles: without /proc there are no CPU, memory or
// network samples and the error says so without quoting paths; a disk
// path that does not exist is sampled as its nearest existing parent's
// filesystem (a data dir not created yet), not reported unresolvable.
func TestHostSamplerMissingFiles(t *testing.T) {
	s := newHostSampler(t, HostConfig{Host: "h", Paths: []string{"/no/such/path"}, ProcDir: t.TempDir(), SysDir: t.TempDir()}, nil)
	got, err := s.Sample(context.Background())
	if err == nil {
		t.Fatal("Sample without /proc: no error")
	}
	if len(got) != 1 || got[0].Resource != "disk" || got[0].Name != "/" || got[0].Capacity <= 0 {
		t.Errorf("Sample without /proc: %+v; want only the disk sample of /", got)
	}
	if strings.Contains(err.Error(), "/no/such/path") || strings.Contains(err.Error(), "disk path") {
		t.Errorf("error %q quotes the configured path or finds it unresolvable", err)
	}
}

// procStat reads the busy and total jiffies of /proc/stat's "cpu" line
// (user nice system idle iowait irq softirq steal; busy is all but idle
// and iowait) and counts its "cpuN" lines: an independent reading to check
// gopsutil's against.
func procStat(t *testing.T) (busy, all uint64, cpus int) {
	t.Helper()
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			cpus++
			continue
		}
		var idle uint64
		for i, v := range f[1:9] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("/proc/stat cpu field %d: %v", i, err)
			}
			all += n
			if i == 3 || i == 4 {
				idle += n
			}
		}
		busy = all - idle
	}
	return busy, all, cpus
}

// TestHostCPUAgainstProcStat compares the CPU figure the sampler computes
// from gopsutil with one computed from /proc/stat deltas over the same
// second: they must agree within 2 percentage points (a jiffy is 0.5 of
// one at 100 Hz on 2 CPUs over a second, and the readings are taken
// microseconds apart).
func TestHostCPUAgainstProcStat(t *testing.T) {
	read := func() (gBusy, gAll float64, pBusy, pAll uint64) {
		times, err := cpu.Times(false)
		if err != nil || len(times) != 1 {
			t.Fatalf("cpu.Times: %v %v", times, err)
		}
		pBusy, pAll, _ = procStat(t)
		gAll, gBusy = cpuBusy(times[0])
		return gBusy, gAll, pBusy, pAll
	}
	gb0, ga0, pb0, pa0 := read()
	time.Sleep(time.Second) // the measured interval
	gb1, ga1, pb1, pa1 := read()
	gops := (gb1 - gb0) / (ga1 - ga0)
	proc := float64(pb1-pb0) / float64(pa1-pa0)
	t.Logf("CPU busy over 1 s: gopsutil %.4f, /proc/stat %.4f", gops, proc)
	if math.IsNaN(gops) || math.Abs(gops-proc) > 0.02 {
		t.Errorf("gopsutil's CPU busy share %.4f; /proc/stat's %.4f", gops, proc)
	}
}

// TestHostSamplerRun publishes samples on the host's subject.
func TestHostSamplerRun(t *testing.T) {
	pub := &memPublisher{}
	s := newHostSampler(t, HostConfig{Interval: 50 * time.Millisecond, Host: "Web-1.Example.COM", Paths: []string{t.TempDir()}}, pub)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	testenv.Eventually(t, 5*time.Second, "two publishes", func() bool { return len(pub.all()) >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cpu := 0
	for _, m := range pub.all() {
		if m.subject != "pulse.ingest.resources.web-1_example_com" {
			t.Errorf("subject %s", m.subject)
		}
		got, err := event.DecodeResources(m.data, event.Rules{Now: time.Now()}, 10000)
		if err != nil {
			t.Fatalf("%s: %v", m.data, err)
		}
		r := byResource(got)
		if r["memory:"].Capacity == 0 {
			t.Errorf("message without memory: %s", m.data)
		}
		// cpu needs the counters to have moved since the last reading,
		// which at a 50ms interval they may not have.
		if r["cpu:"].Capacity > 0 {
			cpu++
		}
	}
	if cpu == 0 {
		t.Error("no message with a cpu sample")
	}
	if s.PublishFailures() != 0 {
		t.Errorf("%d publish failures", s.PublishFailures())
	}
}

func TestHostname(t *testing.T) {
	for in, want := range map[string]string{
		"Web-1.Example.COM":      "web-1.example.com",
		"db_2":                   "db_2",
		"host name/with:x":       "host-name-with-x",
		"":                       "unknown-host",
		"ünï":                    "--n--",
		strings.Repeat("a", 300): strings.Repeat("a", 253),
	} {
		if got := Hostname(in); got != want {
			t.Errorf("Hostname(%q) = %q; want %q", in, got, want)
		}
	}
}

// newHostSampler returns a HostSampler on cfg, failing the test on an
// invalid cfg.
func newHostSampler(t *testing.T, cfg HostConfig, pub Publisher) *HostSampler {
	t.Helper()
	s, err := NewHostSampler(cfg, pub, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
