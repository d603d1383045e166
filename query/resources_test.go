package query_test

import (
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/wedsync/pulse/internal/testenv"
	"github.com/wedsync/pulse/query"
)

func TestResources(t *testing.T) {
	now := testNow()
	at := func(d time.Duration) time.Time { return now.Add(-d) }
	rows := []resourceRow{
		{ts: at(9 * time.Minute), host: "app-1", resource: "cpu", used: 2, capacity: 4, utilisation: 0.5},
		{ts: at(2 * time.Minute), host: "app-1", resource: "cpu", used: 3.4, capacity: 4, utilisation: 0.85},
		{ts: now.Add(10 * time.Minute), host: "app-1", resource: "cpu", used: 0.4, capacity: 4, utilisation: 0.1}, // beyond clock skew
		{ts: at(time.Minute), host: "app-1", resource: "memory", used: 9.6, capacity: 16, utilisation: 0.6},
		{ts: at(3 * time.Minute), host: "app-1", resource: "disk", name: "/", used: 95, capacity: 100, utilisation: 0.95},
		{ts: at(3 * time.Minute), host: "app-1", resource: "disk", name: "/data", used: 400, capacity: 1000, utilisation: 0.4},
		{ts: at(8 * time.Minute), host: "app-2", resource: "cpu", used: 3.96, capacity: 4, utilisation: 0.99},
		{ts: at(30 * time.Second), host: "app-2", resource: "cpu", used: 1.2, capacity: 4, utilisation: 0.3},
		{ts: at(11 * time.Minute), host: "app-2", resource: "memory", used: 15.8, capacity: 16, utilisation: 0.99}, // too old
		// Two samples in one second: the later in the stream wins.
		{ts: at(4 * time.Minute), host: "app-2", resource: "disk", name: "/", used: 20, capacity: 100, utilisation: 0.2},
		{ts: at(4 * time.Minute), host: "app-2", resource: "disk", name: "/", used: 70, capacity: 100, utilisation: 0.7},
		{ts: at(20 * time.Minute), host: "app-3", resource: "cpu", used: 4, capacity: 4, utilisation: 1},       // too old
		{ts: at(10 * time.Minute), host: "app-3", resource: "memory", used: 8, capacity: 16, utilisation: 0.5}, // on the edge: kept
		{ts: at(time.Minute), host: "postgres", resource: "connections", used: 85, capacity: 100, utilisation: 0.85},
		{ts: at(time.Minute), host: "app-1", resource: "network", name: "eth0", used: 0, capacity: 0, utilisation: 0},
		// Not a number: shown as null, never flagged.
		{ts: at(time.Minute), host: "app-4", resource: "memory", used: math.NaN(), capacity: 16, utilisation: math.NaN()},
	}
	f := func(v float64) *float64 { return &v }
	item := func(host, resource, name string, used, capacity, util float64, ago time.Duration, above bool) query.ResourceItem {
		return query.ResourceItem{Host: host, Resource: resource, Name: name, Used: &used, Capacity: &capacity, Utilisation: &util,
			TS: now.Add(-ago), AboveThreshold: above}
	}
	// Ordered by resource, host and name; flagged at the default 0.8.
	all := []query.ResourceItem{
		item("postgres", "connections", "", 85, 100, 0.85, time.Minute, true),
		item("app-1", "cpu", "", 3.4, 4, 0.85, 2*time.Minute, true),
		item("app-2", "cpu", "", 1.2, 4, 0.3, 30*time.Second, false),
		item("app-1", "disk", "/", 95, 100, 0.95, 3*time.Minute, true),
		item("app-1", "disk", "/data", 400, 1000, 0.4, 3*time.Minute, false),
		item("app-2", "disk", "/", 70, 100, 0.7, 4*time.Minute, false),
		item("app-1", "memory", "", 9.6, 16, 0.6, time.Minute, false),
		item("app-3", "memory", "", 8, 16, 0.5, 10*time.Minute, false),
		{Host: "app-4", Resource: "memory", Capacity: f(16), TS: now.Add(-time.Minute)},
		item("app-1", "network", "eth0", 0, 0, 0, time.Minute, false),
	}
	withFlags := func(threshold float64) []query.ResourceItem {
		out := make([]query.ResourceItem, len(all))
		for i, it := range all {
			it.AboveThreshold = it.Utilisation != nil && *it.Utilisation > threshold
			out[i] = it
		}
		return out
	}
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			insertResources(t, s, rows)
			e, _ := newServer(t, query.Config{Now: func() time.Time { return now }}, s, nil)
			tests := []struct {
				query     string
				threshold float64
				items     []query.ResourceItem
				summary   []query.ResourceSummary
			}{
				{"", 0.8, all, []query.ResourceSummary{
					{Resource: "cpu", Items: 2, Hosts: 2, MaxUtilisation: f(0.85), ItemsAboveThreshold: 1, HostsAboveThreshold: 1},
					{Resource: "memory", Items: 3, Hosts: 3, MaxUtilisation: f(0.6)},
					{Resource: "disk", Items: 3, Hosts: 2, MaxUtilisation: f(0.95), ItemsAboveThreshold: 1, HostsAboveThreshold: 1},
					{Resource: "network", Items: 1, Hosts: 1, MaxUtilisation: f(0)},
					{Resource: "connections", Items: 1, Hosts: 1, MaxUtilisation: f(0.85), ItemsAboveThreshold: 1, HostsAboveThreshold: 1},
				}},
				{"alert_threshold=0.5", 0.5, withFlags(0.5), []query.ResourceSummary{
					{Resource: "cpu", Items: 2, Hosts: 2, MaxUtilisation: f(0.85), ItemsAboveThreshold: 1, HostsAboveThreshold: 1},
					{Resource: "memory", Items: 3, Hosts: 3, MaxUtilisation: f(0.6), ItemsAboveThreshold: 1, HostsAboveThreshold: 1},
					{Resource: "disk", Items: 3, Hosts: 2, MaxUtilisation: f(0.95), ItemsAboveThreshold: 2, HostsAboveThreshold: 2},
					{Resource: "network", Items: 1, Hosts: 1, MaxUtilisation: f(0)},
					{Resource: "connections", Items: 1, Hosts: 1, MaxUtilisation: f(0.85), ItemsAboveThreshold: 1, HostsAboveThreshold: 1},
				}},
				{"alert_threshold=0", 0, withFlags(0), nil},
				{"alert_threshold=1", 1, withFlags(1), nil},
				{"alert_threshold=.95", 0.95, withFlags(0.95), nil},
				{"resource_type=disk&alert_threshold=0.9", 0.9, []query.ResourceItem{
					item("app-1", "disk", "/", 95, 100, 0.95, 3*time.Minute, true),
					item("app-1", "disk", "/data", 400, 1000, 0.4, 3*time.Minute, false),
					item("app-2", "disk", "/", 70, 100, 0.7, 4*time.Minute, false),
				}, []query.ResourceSummary{
					{Resource: "disk", Items: 3, Hosts: 2, MaxUtilisation: f(0.95), ItemsAboveThreshold: 1, HostsAboveThreshold: 1},
				}},
				{"resource_type=connections", 0.8, all[:1], []query.ResourceSummary{
					{Resource: "connections", Items: 1, Hosts: 1, MaxUtilisation: f(0.85), ItemsAboveThreshold: 1, HostsAboveThreshold: 1},
				}},
			}
			for _, tt := range tests {
				t.Run(tt.query, func(t *testing.T) {
					var got query.ResourcesResponse
					getJSON(t, e, "/api/admin/system/resources?"+tt.query, &got)
					if got.AlertThreshold != tt.threshold || got.WindowSeconds != 600 || !got.LastUpdated.Equal(now) {
						t.Errorf("got alert_threshold %v, window_seconds %d, last_updated %v; want %v, 600, %v",
							got.AlertThreshold, got.WindowSeconds, got.LastUpdated, tt.threshold, now)
					}
					if !reflect.DeepEqual(got.Items, tt.items) {
						t.Errorf("got items\n%s\nwant\n%s", fmtItems(got.Items), fmtItems(tt.items))
					}
					if tt.summary != nil && !reflect.DeepEqual(got.Summary, tt.summary) {
						t.Errorf("got summary %s; want %s", fmtSummary(got.Summary), fmtSummary(tt.summary))
					}
				})
			}
		})
	}
}

func fmtItems(items []query.ResourceItem) string {
	var s string
	for _, it := range items {
		s += fmt.Sprintf("  %s %s %q used %v capacity %v utilisation %v at %v above %v\n", it.Host, it.Resource, it.Name,
			deref(it.Used), deref(it.Capacity), deref(it.Utilisation), it.TS.Format(time.RFC3339), it.AboveThreshold)
	}
	return s
}

func fmtSummary(sums []query.ResourceSummary) string {
	var s string
	for _, x := range sums {
		s += fmt.Sprintf("{%s items %d hosts %d max %v above %d/%d} ", x.Resource, x.Items, x.Hosts, deref(x.MaxUtilisation),
			x.ItemsAboveThreshold, x.HostsAboveThreshold)
	}
	return s
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
