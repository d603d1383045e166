// Package notify delivers Pulse's alerts to people: to Prometheus
// Alertmanager through its v2 API, and to webhooks directly, in
// Alertmanager's webhook body or in Slack's. It also serves the admin
// routes that acknowledge alerts, manage silences and report receivers.
//
// # Delivery
//
// Every receiver (each Alertmanager URL is one, each webhook is one) has a
// durable JetStream consumer of its own on the alert stream PULSE_ALERTS
// (subjects pulse.alerts.<severity>.<rule>, filtered by the receiver's
// severities), named notify-<receiver>. The consumer allows one
// unacknowledged message at a time, so replicas of the alerts role may
// all run a Notifier: each transition goes to one of them, in stream
// order, and when a replica dies (or loses NATS) its message is redelivered
// to another after the ack wait. A transition is acknowledged only after
// the receiver accepted it (or it was deliberately not sent: silenced,
// filtered or folded into a digest); a failure is retried with exponential
// backoff and jitter, waiting at least what a Retry-After header asks,
// forever, the message kept in progress meanwhile. So a receiver that is
// down gets what it missed, in order, when it returns, within the
// stream's retention, and a broken receiver holds back only its own
// consumer.
//
// Before sending a transition to a receiver the Notifier looks up its
// delivery key (receiver and Nats-Msg-Id "<id>/<state>") in the KV bucket
// PULSE_ALERTS_DELIVERED, and writes it right after the receiver accepted
// it, before acking. A redelivery after a restart, a leader change or a
// lost ack, and a transition published again, are therefore not sent
// twice. What is not covered: a process that dies between the receiver's
// answer and the key's write sends that one transition again.
//
// # Alertmanager
//
// Alertmanager receivers get firing and resolved alerts on POST
// /api/v2/alerts with labels alertname (the rule), rule, severity and the
// alert's own labels (service, endpoint, component, ...), annotations
// summary, description, value, threshold, link and alert_id, startsAt and
// endsAt. Every ResendEvery, each Notifier also posts every firing alert of
// the state bucket again, with endsAt four intervals ahead, as Prometheus
// does: a restarted Alertmanager learns them again, and alerts of a Pulse
// that stopped resolve on their own. Alertmanager deduplicates the posts
// of several replicas. Alertmanager receivers are not rate-limited:
// Alertmanager groups and throttles notifications itself.
//
// # Storms
//
// A webhook receiver sends at most RateLimit firing notifications per
// period; the firing alerts beyond it are counted and, when the period
// ends, sent as one digest ("37 more alerts in the last 5 minutes"). A
// resolved transition is sent when its firing one was, and not when the
// firing one went into a digest. The window and the digest count live in
// the memory of each replica (with several, a receiver may get up to that
// many times the limit): a restart loses a pending digest's count, never an
// alert's record.
//
// # Acknowledgements and silences
//
// An acknowledgement records who took an alert and when (KV and the audit
// log); it mutes nothing: a silence does. Silences live in Alertmanager
// when one is configured, so that there is one source of truth (webhook
// deliveries consult them there too), else in the KV bucket
// PULSE_ALERTS_NOTIFY. Scale recommendations (pulse.scaling.>) are not
// notified.
package notify

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/alerts/rules"
	"github.com/wedsync/pulse/internal/ratelimit"
)

// Kinds of receiver.
const (
	KindAlertmanager = "alertmanager"
	KindWebhook      = "webhook"
)

// Formats of a webhook body.
const (
	FormatAlertmanager = "alertmanager" // Alertmanager's webhook body (version 4)
	FormatSlack        = "slack"        // a Slack incoming-webhook message
)

// Receiver is one destination of notifications. Its URL may hold
// secrets (a token in the path, a password): it is never logged nor
// answered, only its Name.
type Receiver struct {
	Name       string
	Kind       string   // alertmanager or webhook
	URL        string   // Alertmanager's base URL, or the webhook's URL
	Severities []string // webhook: only alerts of these severities (empty: all)
	Format     string   // webhook: alertmanager (default) or slack
}

var receiverName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// ParseAlertmanagerURLs reads --alertmanager-url: base URLs separated by
// commas, one per member of an HA pair. Receivers are named alertmanager,
// alertmanager-2, ... in order.
func ParseAlertmanagerURLs(s string) ([]Receiver, error) {
	var out []Receiver
	for i, u := range splitList(s, ",") {
		name := KindAlertmanager
		if i > 0 {
			name = fmt.Sprintf("%s-%d", KindAlertmanager, i+1)
		}
		if err := checkURL(u); err != nil {
			return nil, fmt.Errorf("--alertmanager-url #%d: %w", i+1, err)
		}
		out = append(out, Receiver{Name: name, Kind: KindAlertmanager, URL: strings.TrimSuffix(u, "/")})
	}
	return out, nil
}

// ParseWebhooks reads --alert-webhook: entries separated by commas, each
// name=url followed by options separated by semicolons:
//
//	ops=https://hooks.example.com/T0/B0/x;severity=critical|warning;format=slack
//
// severity lists the severities sent (default all), format is
// alertmanager (default) or slack. A comma or semicolon inside a URL must
// be percent-encoded. Errors name the webhook, never its URL.
func ParseWebhooks(s string) ([]Receiver, error) {
	var out []Receiver
	seen := map[string]bool{}
	for i, entry := range splitList(s, ",") {
		parts := strings.Split(entry, ";")
		name, u, ok := strings.Cut(parts[0], "=")
		name, u = strings.TrimSpace(name), strings.TrimSpace(u)
		switch {
		case !ok:
			return nil, fmt.Errorf("webhook #%d: want name=url", i+1)
		case !receiverName.MatchString(name):
			return nil, fmt.Errorf("webhook #%d: name must be 1-32 lower-case letters, digits, - or _, starting with a letter or digit", i+1)
		case strings.HasPrefix(name, KindAlertmanager):
			return nil, fmt.Errorf("webhook %q: names starting with alertmanager are reserved", name)
		case seen[name]:
			return nil, fmt.Errorf("webhook %q is named twice", name)
		}
		seen[name] = true
		if err := checkURL(u); err != nil {
			return nil, fmt.Errorf("webhook %q: %w", name, err)
		}
		r := Receiver{Name: name, Kind: KindWebhook, URL: u, Format: FormatAlertmanager}
		for _, opt := range parts[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(opt), "=")
			switch k {
			case "severity":
				for _, sev := range strings.Split(v, "|") {
					if !slices.Contains(rules.Severities, sev) {
						return nil, fmt.Errorf("webhook %q: unknown severity %q (want %s, separated by |)", name, sev, strings.Join(rules.Severities, ", "))
					}
					if !slices.Contains(r.Severities, sev) {
						r.Severities = append(r.Severities, sev)
					}
				}
			case "format":
				if v != FormatAlertmanager && v != FormatSlack {
					return nil, fmt.Errorf("webhook %q: format must be alertmanager or slack", name)
				}
				r.Format = v
			default:
				return nil, fmt.Errorf("webhook %q: unknown option %q (want severity= or format=)", name, k)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

func splitList(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// checkURL accepts an absolute http(s) URL with a host. Its errors never
// quote the URL.
func checkURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.New("not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("URL must start with http:// or https://")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("URL has no host")
	case u.Fragment != "":
		return errors.New("URL must not have a #fragment")
	}
	return nil
}

// Config tunes the Notifier. Zero fields take defaults.
type Config struct {
	Stream    alerts.StreamConfig
	Receivers []Receiver
	// ExternalURL is where people reach Pulse, for links in
	// notifications (default http://127.0.0.1:7480).
	ExternalURL string
	// Timeout bounds one delivery attempt (default 10s): a slower
	// receiver counts as failed.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts (default
	// 500ms and 5m); it doubles from one to the other, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// MaxRetryAfter caps what a Retry-After header may ask (default 10m).
	MaxRetryAfter time.Duration
	// ResendEvery is how often firing alerts are posted to Alertmanager
	// again (default 1m).
	ResendEvery time.Duration
	// RateLimit is how many firing notifications a webhook receiver gets
	// per period before the rest go into a digest (default 10 per 5m).
	RateLimit ratelimit.Limit
	// AckWait is how long a message delivered to a Notifier that stopped
	// answering waits before another gets it (default 30s).
	AckWait time.Duration
	// SilenceRefresh is how old the list of silences a webhook delivery
	// consults may be (default 2s).
	SilenceRefresh time.Duration
	// MaxWait is how long a fetch waits for messages (default 1s).
	MaxWait time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Registerer receives the metrics, pulse_alerts_notify_*; nil
	// registers none.
	Registerer prometheus.Registerer
}

func (c *Config) defaults() {
	c.Stream = streamDefaults(c.Stream)
	if c.ExternalURL == "" {
		c.ExternalURL = "http://127.0.0.1:7480"
	}
	c.ExternalURL = strings.TrimSuffix(c.ExternalURL, "/")
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Minute
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = 10 * time.Minute
	}
	if c.ResendEvery == 0 {
		c.ResendEvery = time.Minute
	}
	if c.RateLimit == (ratelimit.Limit{}) {
		c.RateLimit = ratelimit.Limit{Requests: 10, Per: 5 * time.Minute}
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxWait == 0 {
		c.MaxWait = time.Second
	}
	if c.SilenceRefresh == 0 {
		c.SilenceRefresh = 2 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks c; zero fields are valid (they take defaults).
func (c Config) Validate() error {
	seen := map[string]bool{}
	for _, r := range c.Receivers {
		switch {
		case r.Kind != KindAlertmanager && r.Kind != KindWebhook:
			return fmt.Errorf("receiver %q: kind must be alertmanager or webhook", r.Name)
		case !receiverName.MatchString(r.Name):
			return fmt.Errorf("receiver %q: bad name", r.Name)
		case seen[r.Name]:
			return fmt.Errorf("receiver %q is named twice", r.Name)
		case r.Format != "" && r.Format != FormatAlertmanager && r.Format != FormatSlack:
			return fmt.Errorf("receiver %q: format must be alertmanager or slack", r.Name)
		}
		seen[r.Name] = true
		if err := checkURL(r.URL); err != nil {
			return fmt.Errorf("receiver %q: %w", r.Name, err)
		}
	}
	if c.ExternalURL != "" {
		if err := checkURL(c.ExternalURL); err != nil {
			return fmt.Errorf("external URL: %w", err)
		}
	}
	switch {
	case c.Timeout < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0 || c.MaxRetryAfter < 0 || c.ResendEvery < 0 || c.AckWait < 0 || c.MaxWait < 0 || c.SilenceRefresh < 0:
		return errors.New("notification durations must not be negative")
	case c.MinBackoff > 0 && c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff:
		return errors.New("notification min backoff must not exceed max backoff")
	case c.ResendEvery > 0 && c.ResendEvery < time.Second:
		return errors.New("alertmanager resend interval must be at least a second")
	case c.RateLimit != (ratelimit.Limit{}) && c.RateLimit.Validate() != nil:
		return fmt.Errorf("notification rate limit: %w", c.RateLimit.Validate())
	}
	return c.Stream.Validate()
}

// Alertmanagers returns the Alertmanager receivers of rs.
func Alertmanagers(rs []Receiver) []Receiver {
	var out []Receiver
	for _, r := range rs {
		if r.Kind == KindAlertmanager {
			out = append(out, r)
		}
	}
	return out
}

func streamDefaults(c alerts.StreamConfig) alerts.StreamConfig {
	if c.Stream == "" {
		c.Stream = alerts.DefaultStream
	}
	if c.Bucket == "" {
		c.Bucket = alerts.DefaultBucket
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxAge == 0 {
		c.MaxAge = 30 * 24 * time.Hour
	}
	return c
}
