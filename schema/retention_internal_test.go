package schema

import (
	"testing"
	"time"
)

func TestTTLOf(t *testing.T) {
	tests := map[string]string{
		"MergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (service, endpoint, ts) TTL ts + toIntervalDay(30) SETTINGS index_granularity = 8192": "ts + toIntervalDay(30)",
		"MergeTree ORDER BY ts TTL ts + toIntervalDay(3)":                                                          "ts + toIntervalDay(3)",
		"MergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (service, endpoint, ts) SETTINGS index_granularity = 8192": "",
		"AggregatingMergeTree() PARTITION BY toYYYYMM(minute) ORDER BY (service, endpoint, minute)":                "",
	}
	for engine, want := range tests {
		if got := ttlOf(engine); got != want {
			t.Errorf("ttlOf(%q): got %q; want %q", engine, got, want)
		}
	}
}

func TestRetentionValidate(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		r  Retention
		ok bool
	}{
		{DefaultRetention, true},
		{Retention{Raw: day, Rollup: day}, true},
		{Retention{Raw: day - time.Second, Rollup: day}, false},
		{Retention{Raw: day, Rollup: 0}, false},
		{Retention{}, false},
	}
	for _, tt := range tests {
		if err := tt.r.Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(%+v): got %v; want ok=%t", tt.r, err, tt.ok)
		}
	}
}
