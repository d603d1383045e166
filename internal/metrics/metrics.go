// Package metrics is one process's Prometheus registry. Components register
// the metrics they own on Registerer (Prometheus's ManagerOptions.Registerer
// habit); main creates the registry and serves it on /metrics.
package metrics

import (
	"net/http"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is one process's registry. Its methods are safe for concurrent
// use.
type Metrics struct {
	reg *prometheus.Registry
}

// New returns a registry with the Go runtime and process collectors and
// pulse_build_info for version (the binary's version, "dev" when not
// stamped).
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), BuildInfo(version))
	return &Metrics{reg: reg}
}

// BuildInfo is the gauge pulse_build_info, always 1, whose labels name the
// build: version, the VCS revision and whether the tree was modified
// ("unknown" when the binary does not record them), and the Go version.
// Joined to other series it tells which build produced them.
func BuildInfo(version string) prometheus.Collector {
	revision, modified := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
	}
	if version == "" {
		version = "dev"
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pulse_build_info",
		Help: "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "modified": modified,
			"goversion": runtime.Version()},
	}, func() float64 { return 1 })
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registerer is the registry, for components that register their own
// metrics.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }
