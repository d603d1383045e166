package stream_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

// fleetUsers is a users file with one publisher of events: it may publish
// to pulse.ingest.> and receive JetStream's acks on its inbox, nothing
// else.
const fleetUsers = `authorization {
  users = [
    { user: fleet, password: "fleet-password-for-tests",
      permissions: { publish: ["pulse.ingest.>"], subscribe: ["_INBOX.>"] } }
  ]
}
`

// TestRunEmbeddedUsers: with a users file the embedded server (on a
// loopback port of its own) admits Pulse with full rights and the
// publisher with its permissions only: its events are stored, its publish
// to alerts, its purge of the ingest stream and its subscription to the
// streams' subjects are refused; a client without a credential, or with a
// wrong password, does not get in.
func TestRunEmbeddedUsers(t *testing.T) {
	c := stream.EmbeddedConfig{Listen: testenv.FreeAddr(t), StoreDir: t.TempDir()}
	if err := c.LoadUsersFile(writeFile(t, "users.conf", fleetUsers)); err != nil {
		t.Fatalf("LoadUsersFile: %v", err)
	}
	if !c.Authenticated() {
		t.Fatal("Authenticated() = false with users")
	}
	ns, err := stream.RunEmbedded(c, zerolog.Nop())
	if err != nil {
		t.Fatalf("RunEmbedded with users: %v", err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	url := ns.ClientURL()

	self, err := stream.Connect(url, "pulse", c.ClientOptions(), zerolog.Nop())
	if err != nil {
		t.Fatalf("Pulse connects as its own user: %v", err)
	}
	defer self.Close()
	js, err := jetstream.New(self)
	if err != nil {
		t.Fatal(err)
	}
	sc := testenv.Streams(t, js, stream.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stored := func() uint64 {
		t.Helper()
		s, err := js.Stream(ctx, sc.IngestStream)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State.Msgs
	}

	var (
		mu         sync.Mutex
		violations []string
	)
	fleet, err := nats.Connect(url, nats.UserInfo("fleet", "fleet-password-for-tests"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				mu.Lock()
				violations = append(violations, err.Error())
				mu.Unlock()
			}
		}))
	if err != nil {
		t.Fatalf("the publisher connects: %v", err)
	}
	defer fleet.Close()
	fjs, err := jetstream.New(fleet)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fjs.Publish(ctx, stream.SubjectResources+"fleet", []byte(`{"cpu":1}`)); err != nil {
		t.Fatalf("the publisher's JetStream publish to %sfleet: %v; want acked", stream.SubjectResources, err)
	}
	if n := stored(); n != 1 {
		t.Fatalf("ingest stream holds %d messages; want the publisher's 1", n)
	}

	violated := func(subject string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, v := range violations {
			if strings.Contains(v, subject) {
				return true
			}
		}
		return false
	}
	if err := fleet.Publish("pulse.alerts.fake", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	purge := "$JS.API.STREAM.PURGE." + sc.IngestStream
	if _, err := fleet.Request(purge, nil, 500*time.Millisecond); err == nil {
		t.Errorf("the publisher's purge request was answered")
	}
	if _, err := fleet.SubscribeSync("pulse.>"); err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{"pulse.alerts.fake", purge, "pulse.>"} {
		testenv.Eventually(t, 5*time.Second, "a permissions violation for "+subject, func() bool { return violated(subject) })
	}
	if n := stored(); n != 1 {
		t.Errorf("ingest stream holds %d messages after the refused purge; want 1", n)
	}

	for name, opt := range map[string]nats.Option{
		"without a credential":                    func(*nats.Options) error { return nil },
		"with a wrong password":                   nats.UserInfo("fleet", "not-the-password"),
		"as Pulse's user with a guessed password": nats.UserInfo(stream.SelfUser, "guess"),
	} {
		if nc, err := nats.Connect(url, opt); err == nil {
			nc.Close()
			t.Errorf("a client %s connected", name)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("a client %s: %v; want an authorization violation", name, err)
		}
	}
}

// TestRunEmbeddedUsersBeyondLoopback: users count as authentication for a
// non-loopback address; a token and users together are refused.
func TestRunEmbeddedUsersBeyondLoopback(t *testing.T) {
	c := stream.EmbeddedConfig{Listen: "0.0.0.0:0", StoreDir: t.TempDir()}
	if err := c.LoadUsersFile(writeFile(t, "users.conf", fleetUsers)); err != nil {
		t.Fatal(err)
	}
	ns, err := stream.RunEmbedded(c, zerolog.Nop())
	if err != nil {
		t.Fatalf("RunEmbedded on 0.0.0.0 with users: %v", err)
	}
	url := strings.Replace(ns.ClientURL(), "0.0.0.0", "127.0.0.1", 1)
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Error("an unauthenticated client connected")
	}
	ns.Shutdown()
	ns.WaitForShutdown()

	c.Token = "a-token-as-well-0123"
	if _, err := stream.RunEmbedded(c, zerolog.Nop()); err == nil {
		t.Error("RunEmbedded with a token and users: no error")
	}
}

func TestLoadUsersFile(t *testing.T) {
	f := func(name, content, want string) {
		t.Run(name, func(t *testing.T) {
			var c stream.EmbeddedConfig
			err := c.LoadUsersFile(writeFile(t, "users.conf", content))
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err %v; want one saying %q", err, want)
			}
			if strings.Contains(err.Error(), "sekrit-password") {
				t.Errorf("the error %q quotes the password", err)
			}
			if c.Authenticated() {
				t.Error("Authenticated() after a failed load")
			}
		})
	}
	f("no users", "port: 4222\n", "defines no users")
	f("a token", `authorization { token: "sekrit-password" }`, "single token")
	f("accounts", `accounts { A { users = [ { user: a, password: "sekrit-password" } ] } }`, "defines accounts")
	f("Pulse's user", `authorization { users = [ { user: `+stream.SelfUser+`, password: "sekrit-password" } ] }`, "rename it")
	f("not a config", `authorization { users = [ { user: a, password: "sekrit-password" `, "read NATS users file")

	var c stream.EmbeddedConfig
	if err := c.LoadUsersFile(t.TempDir() + "/missing.conf"); err == nil {
		t.Error("a missing users file: no error")
	}
}
