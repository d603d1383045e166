package stream_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

// publishesToStream connects with o and checks that a publish on the
// ingest subjects is acknowledged by JetStream.
func publishesToStream(t *testing.T, url string, o stream.ClientOptions) {
	t.Helper()
	nc, err := stream.Connect(url, "auth-test", o, zerolog.Nop())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Streams(t, js, stream.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, stream.SubjectHealth+"auth", []byte(`[]`)); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConnectCredentials(t *testing.T) {
	const token = "s3cret-nats-token-for-tests"
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	pub, _ := user.PublicKey()
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()

	tokenNATS := testenv.NATSWith(t, func(o *server.Options) { o.Authorization = token })
	nkeyNATS := testenv.NATSWith(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })

	t.Run("token", func(t *testing.T) {
		publishesToStream(t, tokenNATS.ClientURL(), stream.ClientOptions{Token: token})
	})
	t.Run("nkey", func(t *testing.T) {
		publishesToStream(t, nkeyNATS.ClientURL(), stream.ClientOptions{NKeyFile: writeFile(t, "user.nk", string(seed))})
	})

	refused := func(name, url string, o stream.ClientOptions) {
		t.Run(name, func(t *testing.T) {
			nc, err := stream.Connect(url, "auth-test", o, zerolog.Nop())
			if err == nil {
				nc.Close()
				t.Fatal("connected; want refused")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("err %v; want an authorization violation", err)
			}
			if o.Token != "" && strings.Contains(err.Error(), o.Token) {
				t.Errorf("the error %q holds the token", err)
			}
		})
	}
	refused("no token", tokenNATS.ClientURL(), stream.ClientOptions{})
	refused("wrong token", tokenNATS.ClientURL(), stream.ClientOptions{Token: "wrong-token-0123456789"})
	refused("wrong nkey", nkeyNATS.ClientURL(), stream.ClientOptions{NKeyFile: writeFile(t, "other.nk", string(otherSeed))})

	if _, err := stream.Connect(nkeyNATS.ClientURL(), "auth-test", stream.ClientOptions{NKeyFile: filepath.Join(t.TempDir(), "missing.nk")}, zerolog.Nop()); err == nil {
		t.Error("connected with a missing nkey seed file")
	}
}

func TestConnectTLS(t *testing.T) {
	ca := testenv.NewCA(t)
	const token = "tls-and-token-for-tests"
	ns := testenv.NATSWith(t, func(o *server.Options) {
		o.TLSConfig = ca.ServerTLS(t, false)
		o.Authorization = token
	})
	mutual := testenv.NATSWith(t, func(o *server.Options) { o.TLSConfig = ca.ServerTLS(t, true) })

	t.Run("CA and token", func(t *testing.T) {
		publishesToStream(t, ns.ClientURL(), stream.ClientOptions{CAFile: ca.CAFile, Token: token})
	})
	t.Run("mutual TLS", func(t *testing.T) {
		publishesToStream(t, mutual.ClientURL(), stream.ClientOptions{CAFile: ca.CAFile, CertFile: ca.ClientCert, KeyFile: ca.ClientKey})
	})

	f := func(name, url string, o stream.ClientOptions, want string) {
		t.Run(name, func(t *testing.T) {
			nc, err := stream.Connect(url, "tls-test", o, zerolog.Nop())
			if err == nil {
				nc.Close()
				t.Fatal("connected; want refused")
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("err %v; want one saying %q", err, want)
			}
		})
	}
	// Without the CA the server's certificate is not trusted.
	f("no CA", ns.ClientURL(), stream.ClientOptions{Token: token}, "certificate signed by unknown authority")
	f("another CA", ns.ClientURL(), stream.ClientOptions{Token: token, CAFile: testenv.NewCA(t).CAFile}, "certificate signed by unknown authority")
	f("wrong token", ns.ClientURL(), stream.ClientOptions{CAFile: ca.CAFile, Token: "not-the-token-0123"}, "uthorization")
	f("no client certificate", mutual.ClientURL(), stream.ClientOptions{CAFile: ca.CAFile}, "")
}

func TestClientOptionsValidate(t *testing.T) {
	f := func(o stream.ClientOptions, ok bool) {
		t.Helper()
		if err := o.Validate(); (err == nil) != ok {
			t.Errorf("%+v.Validate() = %v; want ok %v", o, err, ok)
		}
	}
	f(stream.ClientOptions{}, true)
	f(stream.ClientOptions{Token: "x", CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"}, true)
	f(stream.ClientOptions{Token: "x", NKeyFile: "u.nk"}, false)
	f(stream.ClientOptions{CredsFile: "u.creds", NKeyFile: "u.nk"}, false)
	f(stream.ClientOptions{CertFile: "c.pem"}, false)
	f(stream.ClientOptions{KeyFile: "k.pem"}, false)
}

func TestRunEmbeddedAuthentication(t *testing.T) {
	// Beyond loopback without a token: refused.
	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		_, err := stream.RunEmbedded(stream.EmbeddedConfig{Listen: addr, StoreDir: t.TempDir()}, zerolog.Nop())
		if !errors.Is(err, stream.ErrUnauthenticatedListen) {
			t.Errorf("RunEmbedded on %s without a token: err %v; want ErrUnauthenticatedListen", addr, err)
		}
	}

	// With a token: Pulse's options get in, a client without them cannot
	// publish to pulse.ingest.>.
	c := stream.EmbeddedConfig{Listen: "0.0.0.0:0", StoreDir: t.TempDir(), Token: "embedded-token-for-tests"}
	ns, err := stream.RunEmbedded(c, zerolog.Nop())
	if err != nil {
		t.Fatalf("RunEmbedded with a token: %v", err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	url := strings.Replace(ns.ClientURL(), "0.0.0.0", "127.0.0.1", 1)
	publishesToStream(t, url, c.ClientOptions())

	if nc, err := nats.Connect(url); err == nil {
		defer nc.Close()
		err := nc.Publish(stream.SubjectRequests+"intruder", []byte(`{}`))
		if err == nil {
			err = nc.Flush()
		}
		t.Fatalf("an unauthenticated client connected (publish: %v)", err)
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("unauthenticated connect: %v; want an authorization violation", err)
	}
	if _, err := nats.Connect(url, nats.Token("wrong-token-0123456")); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("connect with a wrong token: %v; want an authorization violation", err)
	}
}

// TestConnectCredsFile: a .creds file (user JWT + nkey seed) of an account
// the operator-mode server trusts gets in; one of an unknown account does
// not.
func TestConnectCredsFile(t *testing.T) {
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	opJWT, err := jwt.NewOperatorClaims(opPub).Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	opClaims, err := jwt.DecodeOperatorClaims(opJWT)
	if err != nil {
		t.Fatal(err)
	}
	creds := func(acc nkeys.KeyPair) string {
		t.Helper()
		user, _ := nkeys.CreateUser()
		userPub, _ := user.PublicKey()
		seed, _ := user.Seed()
		userJWT, err := jwt.NewUserClaims(userPub).Encode(acc)
		if err != nil {
			t.Fatal(err)
		}
		b, err := jwt.FormatUserConfig(userJWT, seed)
		if err != nil {
			t.Fatal(err)
		}
		return writeFile(t, "user.creds", string(b))
	}
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	accJWT, err := jwt.NewAccountClaims(accPub).Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(accPub, accJWT); err != nil {
		t.Fatal(err)
	}
	ns := testenv.NATSWith(t, func(o *server.Options) {
		o.JetStream = false
		o.TrustedOperators = []*jwt.OperatorClaims{opClaims}
		o.AccountResolver = resolver
	})

	nc, err := stream.Connect(ns.ClientURL(), "creds-test", stream.ClientOptions{CredsFile: creds(acc)}, zerolog.Nop())
	if err != nil {
		t.Fatalf("connect with the creds file: %v", err)
	}
	if err := nc.Publish(stream.SubjectHealth+"creds", nil); err != nil {
		t.Error(err)
	}
	if err := nc.Flush(); err != nil {
		t.Errorf("flush: %v", err)
	}
	nc.Close()

	unknown, _ := nkeys.CreateAccount()
	if nc, err := stream.Connect(ns.ClientURL(), "creds-test", stream.ClientOptions{CredsFile: creds(unknown)}, zerolog.Nop()); err == nil {
		nc.Close()
		t.Error("connected with the creds of an unknown account")
	}
}

// TestConnectCountsRefusals: when the server stops accepting Pulse's
// credential (the token changed), the connection is not CONNECTED (what
// /readyz reports) and pulse_nats_errors_total{kind="auth"} counts the
// refused reconnects.
func TestConnectCountsRefusals(t *testing.T) {
	var opts *server.Options
	ns := testenv.NATSWith(t, func(o *server.Options) {
		o.JetStream = false
		o.Authorization = "first-token-for-tests"
		opts = o
	})
	reg := prometheus.NewRegistry()
	nc, err := stream.Connect(ns.ClientURL(), "refusal-test", stream.ClientOptions{Token: "first-token-for-tests", Registerer: reg}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	authErrors := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if mf.GetName() == "pulse_nats_errors_total" && m.GetLabel()[0].GetValue() == "auth" {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	if n := authErrors(); n != 0 {
		t.Fatalf("auth errors %v before any refusal; want 0", n)
	}
	changed := opts.Clone()
	changed.Authorization = "second-token-for-tests"
	if err := ns.ReloadOptions(changed); err != nil {
		t.Fatalf("reload NATS with another token: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, "a refusal counted", func() bool { return authErrors() > 0 })
	// Refused again on every attempt: the connection stays away.
	testenv.Eventually(t, 10*time.Second, "the connection away", func() bool { return nc.Status() != nats.CONNECTED })
	testenv.Eventually(t, 10*time.Second, "refused reconnects counted", func() bool { return authErrors() >= 2 })
	if st := nc.Status(); st == nats.CONNECTED {
		t.Errorf("status %v after the credential was refused again; want not connected", st)
	}
}
