package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wedsync/pulse/alerts/rules"
)

// TailConfig says what Tail prints.
type TailConfig struct {
	// Severities, when not empty, are the only severities printed.
	Severities []string
	// Firing prints the alerts firing now before the live ones.
	Firing bool
	// Stream names the state bucket Firing reads (zero fields: defaults).
	Stream StreamConfig
}

// Tail subscribes to alerts and scale recommendations on nc (core NATS:
// it works against any Pulse NATS and consumes nothing) and writes one
// line per message to w until ctx ends, when it returns nil:
//
//	2026-06-20T14:03:00Z  CRITICAL  FIRING    server_error  endpoint=/api/payments service=api  value=502 threshold=500 count=1  server_error: ...
//
// With severities, only alerts of those severities are printed (alerts are
// subscribed to by severity subject; scale recommendations are filtered on
// their severity field). Alerts only announce transitions, so an alert
// that keeps firing prints nothing more: with cfg.Firing, once subscribed,
// Tail first writes "# firing now: N" and a line per alert firing now (read
// from the state bucket; an alert that changes meanwhile may print twice).
// Before the first live alert it writes a line starting with "#" naming
// what it listens to, once the subscriptions are in place.
// Text from the message is stripped of control characters, so a crafted
// alert cannot drive the terminal.
func Tail(ctx context.Context, nc *nats.Conn, cfg TailConfig, w io.Writer) error {
	severities := cfg.Severities
	for _, s := range severities {
		if !slices.Contains(rules.Severities, s) {
			return fmt.Errorf("unknown severity %q: want %s", s, strings.Join(rules.Severities, ", "))
		}
	}
	subjects := []string{SubjectAlerts + ">", SubjectScaling + ">"}
	if len(severities) > 0 {
		subjects = subjects[:0]
		for _, s := range severities {
			subjects = append(subjects, SubjectAlerts+s+".>")
		}
		subjects = append(subjects, SubjectScaling+">")
	}
	ch := make(chan *nats.Msg, 4096)
	for _, subj := range subjects {
		sub, err := nc.ChanSubscribe(subj, ch)
		if err != nil {
			return fmt.Errorf("subscribe to %s: %w", subj, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("subscribe to alerts: %w", err)
	}
	if cfg.Firing {
		if err := printFiring(ctx, nc, cfg, w); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(w, "# listening on %s\n", strings.Join(subjects, ", ")); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			line, ok := tailLine(m, severities)
			if !ok {
				continue
			}
			if _, err := io.WriteString(w, line+"\n"); err != nil {
				return fmt.Errorf("write alert: %w", err)
			}
		}
	}
}

// printFiring writes the alerts of cfg.Severities firing now.
func printFiring(ctx context.Context, nc *nats.Conn, cfg TailConfig, w io.Writer) error {
	cfg.Stream.defaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("read firing alerts: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var firing []Alert
	kv, err := js.KeyValue(ctx, cfg.Stream.Bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound): // no alert state yet: none firing
	case err != nil:
		return fmt.Errorf("read firing alerts: bucket %s: %w", cfg.Stream.Bucket, err)
	default:
		all, err := Firing(ctx, kv)
		if err != nil {
			return fmt.Errorf("read firing alerts: %w", err)
		}
		for _, a := range all {
			if len(cfg.Severities) == 0 || slices.Contains(cfg.Severities, a.Severity) {
				firing = append(firing, a)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# firing now: %d\n", len(firing))
	for _, a := range firing {
		b.WriteString(alertLine(a) + "\n")
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// tailLine formats one alert message; ok is false when severities filter
// it out.
func tailLine(m *nats.Msg, severities []string) (string, bool) {
	var a Alert
	if err := json.Unmarshal(m.Data, &a); err != nil || a.Rule == "" || a.State == "" {
		return fmt.Sprintf("%s  ?         ?         (not an alert on %s)", time.Now().UTC().Format(time.RFC3339), clean(m.Subject)), true
	}
	if len(severities) > 0 && !slices.Contains(severities, a.Severity) {
		return "", false
	}
	return alertLine(a), true
}

// alertLine formats one alert.
func alertLine(a Alert) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-8s  %-8s  %s", a.At().UTC().Format(time.RFC3339), clean(strings.ToUpper(a.Severity)),
		clean(strings.ToUpper(a.State)), clean(a.Rule))
	if a.Kind == KindScaling {
		fmt.Fprintf(&b, "  scale %s x%s", clean(a.Direction), fmtValue(a.Factor))
	}
	if l := formatLabels(a.Labels); l != "" {
		b.WriteString("  " + clean(l))
	}
	v := "none"
	if a.Value != nil {
		v = fmtValue(*a.Value)
	}
	fmt.Fprintf(&b, "  value=%s threshold=%s count=%d  %s", v, fmtValue(a.Threshold), a.Count, clean(a.Message))
	return b.String()
}

// clean replaces control characters and invalid UTF-8 with '?'.
func clean(s string) string {
	if len(s) > 2048 {
		s = s[:2048] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0xfffd {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}
