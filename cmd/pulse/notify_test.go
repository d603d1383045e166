package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestAlertDeliveryFlags: a malformed receiver is refused at start with a
// usage error (exit 2) naming the flag and the receiver, never quoting
// the URL, which may hold a secret.
func TestAlertDeliveryFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--alert-webhook", "ops=ftp://hooks.example.com/s3cr3t"},
		{"--alert-webhook", "ops=https://hooks.example.com/s3cr3t;format=teams"},
		{"--alert-webhook", "ops"},
		{"--alertmanager-url", "am.example.com:9093/s3cr3t"},
		{"--alert-webhook-rate-limit", "lots"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"serve"}, args...), &stdout, &stderr)
		if code != 2 {
			t.Errorf("serve %v: exit %d; want 2 (stderr %q)", args, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), args[0]) {
			t.Errorf("serve %v: stderr %q does not name %s", args, stderr.String(), args[0])
		}
		if strings.Contains(stderr.String(), "s3cr3t") {
			t.Errorf("serve %v: stderr %q quotes the URL", args, stderr.String())
		}
	}
	f := serveFlags{httpAddr: ":7480", alertNotifyRate: "10/5m", alertWebhooks: "ops=https://hooks.example.com/x;severity=critical"}
	c, err := notifyConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if c.ExternalURL != "http://127.0.0.1:7480" || len(c.Receivers) != 1 || c.RateLimit.Requests != 10 {
		t.Errorf("notifyConfig = %+v; want one webhook, links to http://127.0.0.1:7480, 10 per period", c)
	}
}
