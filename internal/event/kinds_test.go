package event

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestDecodeResources(t *testing.T) {
	r := Rules{Now: now, Retention: 24 * time.Hour}
	got, err := DecodeResources([]byte(`[{"host":"Web-1.internal","resource":"cpu","used":1.5,"capacity":2},
		{"host":"db","resource":"connections","name":"postgres","used":80,"capacity":100,"timestamp":"2026-06-20T13:59:00Z"},
		{"host":"web-1","resource":"network","name":"eth0","used":12345,"utilisation":0.25}]`), r, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []ResourceSample{
		{Timestamp: now, Host: "web-1.internal", Resource: "cpu", Used: 1.5, Capacity: 2, Utilisation: 0.75},
		{Timestamp: now.Add(-time.Minute), Host: "db", Resource: "connections", Name: "postgres", Used: 80, Capacity: 100, Utilisation: 0.8},
		{Timestamp: now, Host: "web-1", Resource: "network", Name: "eth0", Used: 12345, Utilisation: 0.25},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d samples; want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("sample %d: got %+v; want %+v", i, got[i], want[i])
		}
	}

	bad := func(body, field string) {
		t.Helper()
		_, err := DecodeResources([]byte(body), r, 10)
		var be *BatchError
		if !errors.As(err, &be) || len(be.Errors) == 0 || be.Errors[0].Field != field {
			t.Errorf("DecodeResources(%s): err %v; want a field error on %s", body, err, field)
		}
	}
	bad(`{"host":"","resource":"cpu","used":1,"capacity":2}`, "host")
	bad(`{"host":"a b","resource":"cpu","used":1,"capacity":2}`, "host")
	bad(`{"host":"a","resource":"gpu","used":1,"capacity":2}`, "resource")
	bad(`{"host":"a","resource":"cpu","capacity":2}`, "used")
	bad(`{"host":"a","resource":"cpu","used":-1,"capacity":2}`, "used")
	bad(`{"host":"a","resource":"cpu","used":3,"capacity":2}`, "used")
	bad(`{"host":"a","resource":"cpu","used":1}`, "utilisation")
	bad(`{"host":"a","resource":"cpu","used":1,"utilisation":1.5}`, "utilisation")
	bad(`{"host":"a","resource":"cpu","used":1,"capacity":-2}`, "capacity")
	bad(`{"host":"a","resource":"cpu","used":1,"capacity":2,"timestamp":"yesterday"}`, "timestamp")
	bad(`{"host":"a","resource":"cpu","used":1,"capacity":2,"colour":"red"}`, "colour")
	bad(`{"host":"a","resource":"cpu","used":"1","capacity":2}`, "used")
	bad(`[{"host":"a"`, "body")
	bad(``, "body")
	bad(`[]`, "body")
	if _, err := DecodeResources([]byte(`[{},{},{}]`), r, 2); !errors.Is(err, ErrTooManyEvents) {
		t.Errorf("3 samples with max 2: err %v; want ErrTooManyEvents", err)
	}
}

func TestDecodeHealth(t *testing.T) {
	in := []HealthResult{
		{Timestamp: now, Component: "database", Status: StatusHealthy, ResponseTimeMS: 3.5, Details: json.RawMessage(`{"active_connections":4}`)},
		{Timestamp: now, Component: "external", Target: "stripe", Status: StatusCritical, ResponseTimeMS: 5000},
	}
	body, _ := json.Marshal(in)
	got, err := DecodeHealth(body, 10)
	if err != nil || len(got) != 2 || got[0].Component != "database" || string(got[0].Details) != `{"active_connections":4}` || got[1].Target != "stripe" {
		t.Fatalf("DecodeHealth: %+v, %v", got, err)
	}
	bad := func(h HealthResult, field string) {
		t.Helper()
		body, _ := json.Marshal(h)
		_, err := DecodeHealth(body, 10)
		var be *BatchError
		if !errors.As(err, &be) || be.Errors[0].Field != field {
			t.Errorf("DecodeHealth(%s): err %v; want a field error on %s", body, err, field)
		}
	}
	ok := HealthResult{Timestamp: now, Component: "auth", Status: StatusDegraded}
	h := ok
	h.Component = "gpu"
	bad(h, "component")
	h = ok
	h.Status = "fine"
	bad(h, "status")
	h = ok
	h.ResponseTimeMS = -1
	bad(h, "response_time_ms")
	h = ok
	h.Details = json.RawMessage(`[1]`)
	bad(h, "details")
	h = ok
	h.Timestamp = time.Time{}
	bad(h, "timestamp")
}
