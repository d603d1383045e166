package stream_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestRunEmbeddedFallsBackWhenPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var logs strings.Builder
	ns, err := stream.RunEmbedded(stream.EmbeddedConfig{Listen: taken.Addr().String(), StoreDir: t.TempDir()}, zerolog.New(&logs))
	if err != nil {
		t.Fatalf("RunEmbedded with its port taken: %v", err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if ns.ClientURL() == "nats://"+taken.Addr().String() {
		t.Fatalf("embedded NATS claims the taken address %s", taken.Addr())
	}
	if !strings.Contains(logs.String(), "port taken") {
		t.Errorf("fallback not logged; log: %s", logs.String())
	}
	nc, err := stream.Connect(ns.ClientURL(), "test", stream.ClientOptions{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(context.Background()); err != nil {
		t.Errorf("JetStream not enabled on the embedded server: %v", err)
	}
}

func TestRunEmbeddedBadAddress(t *testing.T) {
	for _, addr := range []string{"nonsense", "127.0.0.1:port"} {
		if _, err := stream.RunEmbedded(stream.EmbeddedConfig{Listen: addr, StoreDir: t.TempDir()}, zerolog.Nop()); err == nil {
			t.Errorf("stream.RunEmbedded(%q): no error", addr)
		}
	}
}

func TestEnsure(t *testing.T) {
	ns := testenv.NATS(t)
	_, js := testenv.Connect(t, ns.ClientURL())
	c := stream.Config{MaxBytes: 1 << 20, DuplicateWindow: time.Minute}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, c); err != nil {
		t.Fatal(err)
	}
	if err := stream.Ensure(ctx, js, c); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	st, err := js.Stream(ctx, "PULSE_INGEST")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.Retention != jetstream.WorkQueuePolicy || cfg.Discard != jetstream.DiscardNew || cfg.Storage != jetstream.FileStorage ||
		cfg.MaxBytes != 1<<20 || cfg.Duplicates != time.Minute || len(cfg.Subjects) != 1 || cfg.Subjects[0] != "pulse.ingest.>" {
		t.Errorf("ingest stream config %+v; want work queue, discard new, file storage, 1 MiB, 1m dedup, pulse.ingest.>", cfg)
	}

	// A full backlog refuses publishes: backpressure, not silent loss.
	payload := make([]byte, 256<<10)
	var full error
	for i := 0; i < 8 && full == nil; i++ {
		_, full = js.Publish(ctx, stream.SubjectEdgeRequests, payload)
	}
	var apiErr *jetstream.APIError
	if full == nil || !errors.As(full, &apiErr) {
		t.Fatalf("publishing 2 MiB into a 1 MiB stream: err %v; want a JetStream API error", full)
	}

	// Publishes with the same Nats-Msg-Id within the window are stored once.
	if err := st.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := js.Publish(ctx, stream.SubjectEdgeRequests, []byte("x"), jetstream.WithMsgID("same")); err != nil {
			t.Fatal(err)
		}
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("3 publishes with one message ID stored %d messages; want 1", info.State.Msgs)
	}

	dl, err := js.Stream(ctx, "PULSE_DEADLETTER")
	if err != nil {
		t.Fatal(err)
	}
	if subj := dl.CachedInfo().Config.Subjects; len(subj) != 1 || subj[0] != "pulse.deadletter.>" {
		t.Errorf("dead-letter subjects %v; want pulse.deadletter.>", subj)
	}
}

func TestConfigValidate(t *testing.T) {
	f := func(mutate func(*stream.Config)) {
		t.Helper()
		c := stream.Config{}
		c.Defaults()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("config %+v: no error", c)
		}
	}
	f(func(c *stream.Config) { c.MaxBytes = 1000 })
	f(func(c *stream.Config) { c.MaxAge = time.Second })
	f(func(c *stream.Config) { c.Replicas = 7 })
	f(func(c *stream.Config) { c.DuplicateWindow = c.MaxAge + time.Hour })
}

// TestDrain: Drain returns once the messages a subscriber holds are
// handled and the connection is closed; a connection that cannot drain in
// time is closed anyway, with an error; a closed one is already drained.
func TestDrain(t *testing.T) {
	ns := testenv.NATS(t)
	f := func(timeout time.Duration, release bool) (int32, bool, error) {
		t.Helper()
		nc, err := stream.Connect(ns.ClientURL(), "drain-test", stream.ClientOptions{}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		unblock := make(chan struct{})
		var started sync.Once
		inHandler := make(chan struct{})
		var handled atomic.Int32
		if _, err := nc.Subscribe("drain.test", func(*nats.Msg) {
			started.Do(func() { close(inHandler) })
			<-unblock
			handled.Add(1)
		}); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := nc.Publish("drain.test", nil); err != nil {
				t.Fatal(err)
			}
		}
		<-inHandler
		if release {
			// Unblock the handler once Drain is under way.
			go func() {
				for !nc.IsDraining() && !nc.IsClosed() {
					time.Sleep(time.Millisecond)
				}
				close(unblock)
			}()
		} else {
			defer close(unblock)
		}
		err = stream.Drain(nc, timeout)
		return handled.Load(), nc.IsClosed(), err
	}
	if handled, closed, err := f(10*time.Second, true); err != nil || handled != 3 || !closed {
		t.Errorf("drain of a busy subscriber: err %v, %d handled, closed %v; want nil, 3, true", err, handled, closed)
	}
	if _, closed, err := f(200*time.Millisecond, false); err == nil || !closed {
		t.Errorf("drain of a stuck subscriber: err %v, closed %v; want an error and closed", err, closed)
	}

	nc, err := stream.Connect(ns.ClientURL(), "drain-test", stream.ClientOptions{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if err := stream.Drain(nc, time.Second); err != nil {
		t.Errorf("drain of a closed connection: %v; want nil", err)
	}
}
