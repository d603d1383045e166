package ingest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/stream"
)

func TestPostResources(t *testing.T) {
	v := newEnv(t, nil, Config{}, stream.Config{})
	const path = "/api/admin/system/resources"
	body := `[{"host":"web-1","resource":"cpu","used":1.5,"capacity":2},{"host":"web-1","resource":"memory","used":3e9,"capacity":4e9,"timestamp":"` +
		now.Add(-time.Minute).Format(time.RFC3339) + `"}]`
	v.accept(t, post{path: path, body: bytes.NewReader([]byte(body)), key: "s-1"}, 2)
	v.accept(t, post{path: path, body: bytes.NewReader([]byte(body)), key: "s-1"}, 2) // a retry: stored once

	msgs := v.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("stream holds %d messages; want 1 (the retry deduplicated)", len(msgs))
	}
	if msgs[0].Subject != stream.SubjectResources+"edge" {
		t.Errorf("subject %q; want %q", msgs[0].Subject, stream.SubjectResources+"edge")
	}
	// What the edge publishes is what the aggregator decodes.
	got, err := event.DecodeResources(msgs[0].Data, event.Rules{Now: now, Retention: time.Hour}, 10)
	if err != nil {
		t.Fatalf("published samples do not decode: %v", err)
	}
	want := []event.ResourceSample{
		{Timestamp: now, Host: "web-1", Resource: "cpu", Used: 1.5, Capacity: 2, Utilisation: 0.75},
		{Timestamp: now.Add(-time.Minute), Host: "web-1", Resource: "memory", Used: 3e9, Capacity: 4e9, Utilisation: 0.75},
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("published %+v; want %+v", got, want)
	}

	f := func(p post, status int, field string) {
		t.Helper()
		p.path = path
		rec := v.do(p)
		if rec.Code != status {
			t.Errorf("got %d; want %d (body %s)", rec.Code, status, rec.Body)
			return
		}
		if field != "" && !strings.Contains(rec.Body.String(), `"field":"`+field+`"`) {
			t.Errorf("body %s does not name field %s", rec.Body, field)
		}
	}
	f(post{body: strings.NewReader(`{"host":"web-1","resource":"gpu","used":1,"capacity":2}`)}, http.StatusBadRequest, "resource")
	f(post{body: strings.NewReader(`{"host":"web-1","resource":"cpu","used":3,"capacity":2}`)}, http.StatusBadRequest, "used")
	f(post{body: strings.NewReader(`{"host":"web-1"`)}, http.StatusBadRequest, "body")
	f(post{body: strings.NewReader(`{}`), ct: "application/x-ndjson"}, http.StatusUnsupportedMediaType, "")
	f(post{body: strings.NewReader(`{}`), token: "-"}, http.StatusUnauthorized, "")
	many, _ := json.Marshal(make([]struct{}, MaxSamples+1))
	f(post{body: bytes.NewReader(many)}, http.StatusRequestEntityTooLarge, "")
	if n := len(v.messages(t)); n != 1 {
		t.Errorf("stream holds %d messages after rejected posts; want 1", n)
	}
}
