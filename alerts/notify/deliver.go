package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/alerts"
)

// Buckets of the notifier.
const (
	// DeliveredBucket holds one key per transition and receiver once the
	// receiver got it (or it was deliberately not sent).
	DeliveredBucket = "PULSE_ALERTS_DELIVERED"
	// NotifyBucket holds silences (without Alertmanager), acknowledgements
	// and the receivers' last status.
	NotifyBucket = "PULSE_ALERTS_NOTIFY"
)

// Outcomes of a transition at a receiver, as its delivery key records.
const (
	outcomeSent     = "sent"
	outcomeSilenced = "silenced"
	outcomeDigested = "digested" // rate limit reached: counted into a digest
	outcomeUnsent   = "unsent"   // resolved, but its firing was never sent
	outcomeRejected = "rejected" // the receiver refused this message (400, 413, 422)
)

// ConsumerName is the durable consumer of receiver.
func ConsumerName(receiver string) string { return "notify-" + receiver }

// Notifier delivers alert transitions to its receivers. New builds it;
// Run delivers until its context ends. Several Notifiers (replicas) may
// run with the same receivers: they share each receiver's consumer.
type Notifier struct {
	cfg      Config
	js       jetstream.JetStream
	client   *http.Client
	log      zerolog.Logger
	silences *silenceCache
	m        metrics
}

type metrics struct {
	sent, failures, digests, resends *prometheus.CounterVec
	skipped                          *prometheus.CounterVec
	up                               *prometheus.GaugeVec
}

// New returns a Notifier for cfg.Receivers. It fills cfg's defaults, checks
// it and registers its metrics on cfg.Registerer:
// pulse_alerts_notify_sent_total, _failures_total, _skipped_total
// (by reason), _digests_total, _resends_total and _receiver_up, each by
// receiver. It starts nothing; call Run.
func New(cfg Config, js jetstream.JetStream, log zerolog.Logger) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("alert notifications: %w", err)
	}
	cfg.defaults()
	n := &Notifier{cfg: cfg, js: js, log: log.With().Str("component", "alerts.notify").Logger(),
		client: &http.Client{Timeout: cfg.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	n.silences = &silenceCache{store: newSilenceStore(cfg, js, n.client), maxAge: cfg.SilenceRefresh, now: cfg.Now}
	by := []string{"receiver"}
	n.m = metrics{
		sent:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_alerts_notify_sent_total", Help: "Notifications a receiver accepted."}, by),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_alerts_notify_failures_total", Help: "Failed delivery attempts (retried)."}, by),
		digests:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_alerts_notify_digests_total", Help: "Digests sent for alerts beyond a receiver's rate limit."}, by),
		resends:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_alerts_notify_resends_total", Help: "Periodic re-sends of firing alerts to Alertmanager."}, by),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_alerts_notify_skipped_total",
			Help: "Transitions not sent to a receiver, by reason: duplicate, silenced, digested, unsent (resolved, firing never sent), rejected, malformed."},
			[]string{"receiver", "reason"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pulse_alerts_notify_receiver_up", Help: "1 while a receiver's last delivery attempt succeeded, 0 while it fails."}, by),
	}
	if cfg.Registerer != nil {
		cs := []prometheus.Collector{n.m.sent, n.m.failures, n.m.digests, n.m.resends, n.m.skipped, n.m.up}
		for i, c := range cs {
			if err := cfg.Registerer.Register(c); err != nil {
				for _, done := range cs[:i] {
					cfg.Registerer.Unregister(done)
				}
				return nil, fmt.Errorf("alert notifications: register metrics: %w", err)
			}
		}
	}
	for _, r := range cfg.Receivers {
		n.m.up.WithLabelValues(r.Name).Set(1)
	}
	return n, nil
}

func newSilenceStore(cfg Config, js jetstream.JetStream, client *http.Client) silenceStore {
	if ams := Alertmanagers(cfg.Receivers); len(ams) > 0 {
		urls := make([]string, len(ams))
		for i, r := range ams {
			urls[i] = r.URL
		}
		return &amSilences{urls: urls, client: client, timeout: cfg.Timeout}
	}
	return &kvSilences{js: js, bucket: NotifyBucket, now: cfg.Now}
}

// Run delivers to every receiver until ctx ends, then returns nil; a
// transition in hand is handed back (Nak) for the next Notifier.
func (n *Notifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, r := range n.cfg.Receivers {
		wg.Add(1)
		go func() { defer wg.Done(); n.runReceiver(ctx, r) }()
		if r.Kind == KindAlertmanager {
			wg.Add(1)
			go func() { defer wg.Done(); n.resend(ctx, r) }()
		}
	}
	wg.Wait()
	return nil
}

// receiver is the delivery state of one receiver in this process.
type receiver struct {
	Receiver
	delivered jetstream.KeyValue
	status    jetstream.KeyValue
	failing   int // consecutive failed attempts

	// Rate limit: a fixed window from windowStart.
	windowStart time.Time
	sentInWin   int
	suppressed  int
}

func (n *Notifier) runReceiver(ctx context.Context, r Receiver) {
	rc := &receiver{Receiver: r}
	log := n.log.With().Str("receiver", r.Name).Logger()
	var cons jetstream.Consumer
	for attempt := 0; ctx.Err() == nil; attempt++ {
		var err error
		cons, err = n.setup(ctx, rc)
		if err == nil {
			break
		}
		if attempt == 0 {
			log.Warn().Err(err).Msg("alert delivery consumer unavailable; retrying")
		}
		if !sleep(ctx, time.Second) {
			return
		}
	}
	for ctx.Err() == nil {
		n.flushDigest(ctx, rc, false)
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(n.cfg.MaxWait))
		if err != nil {
			if ctx.Err() == nil {
				log.Debug().Err(err).Msg("fetch failed; retrying")
				sleep(ctx, time.Second)
			}
			continue
		}
		for m := range batch.Messages() {
			n.handle(ctx, rc, m)
		}
	}
}

// setup makes sure the buckets and the receiver's consumer exist.
func (n *Notifier) setup(ctx context.Context, rc *receiver) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := alerts.Ensure(ctx, n.js, n.cfg.Stream); err != nil {
		return nil, err
	}
	var err error
	if rc.delivered, err = n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: DeliveredBucket, Description: "Pulse alert transitions delivered, by receiver",
		History: 1, TTL: n.cfg.Stream.MaxAge + 24*time.Hour, Storage: jetstream.FileStorage, Replicas: n.cfg.Stream.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("create key-value bucket %s: %w", DeliveredBucket, err)
	}
	if rc.status, err = ensureNotifyBucket(ctx, n.js, NotifyBucket); err != nil {
		return nil, err
	}
	filters := []string{alerts.SubjectAlerts + ">"}
	if len(rc.Severities) > 0 {
		filters = filters[:0]
		for _, s := range rc.Severities {
			filters = append(filters, alerts.SubjectAlerts+s+".>")
		}
	}
	cc := jetstream.ConsumerConfig{
		Durable:        ConsumerName(rc.Name),
		Description:    "Pulse alert delivery to receiver " + rc.Name,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        n.cfg.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  1, // in order, one replica at a time
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		FilterSubjects: filters,
	}
	if len(filters) == 1 {
		cc.FilterSubject, cc.FilterSubjects = filters[0], nil
	}
	cons, err := n.js.CreateOrUpdateConsumer(ctx, n.cfg.Stream.Stream, cc)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", cc.Durable, err)
	}
	return cons, nil
}

// ensureNotifyBucket creates (or opens) the bucket of silences, acks and
// receiver status.
func ensureNotifyBucket(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err == nil {
		return kv, nil
	}
	kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, Description: "Pulse alert silences, acknowledgements and receiver status",
		History: 1, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("create key-value bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// deliveredKey is the delivery key of transition msgID at receiver.
func deliveredKey(receiver, msgID string) string {
	h := sha256.Sum256([]byte(msgID))
	return receiver + "." + hex.EncodeToString(h[:16])
}

// handle takes one transition to its end at rc: sent, or deliberately not
// sent, then acked. It returns early only when ctx ends (the message is
// handed back).
func (n *Notifier) handle(ctx context.Context, rc *receiver, m jetstream.Msg) {
	var a alerts.Alert
	if err := json.Unmarshal(m.Data(), &a); err != nil || a.ID == "" || a.Rule == "" ||
		(a.State != alerts.StateFiring && a.State != alerts.StateResolved) {
		n.m.skipped.WithLabelValues(rc.Name, "malformed").Inc()
		_ = m.Term()
		return
	}
	key := deliveredKey(rc.Name, a.MsgID())
	if done, err := n.outcome(ctx, rc, key); err == nil && done != "" {
		n.m.skipped.WithLabelValues(rc.Name, "duplicate").Inc()
		_ = m.Ack()
		return
	}
	outcome := n.decide(ctx, rc, &a)
	if outcome == "" {
		err := n.retry(ctx, rc, m, func(ctx context.Context) error { return n.send(ctx, rc, &a) })
		var se *sendError
		switch {
		case err == nil:
			outcome = outcomeSent
			n.m.sent.WithLabelValues(rc.Name).Inc()
			if a.State == alerts.StateFiring && rc.Kind == KindWebhook {
				rc.sentInWin++
			}
		case errors.As(err, &se) && se.permanent():
			outcome = outcomeRejected
			n.m.skipped.WithLabelValues(rc.Name, outcomeRejected).Inc()
			n.log.Error().Str("receiver", rc.Name).Str("alert", a.ID).Str("state", a.State).Str("error", se.desc).
				Msg("the receiver refused this notification; it will not be sent again")
		default: // ctx ended: hand the message back
			_ = m.Nak()
			return
		}
	} else {
		n.m.skipped.WithLabelValues(rc.Name, outcome).Inc()
	}
	n.record(ctx, rc, key, outcome)
	_ = m.Ack()
}

// outcome reads a transition's delivery key: "" when it was not delivered.
func (n *Notifier) outcome(ctx context.Context, rc *receiver, key string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	e, err := rc.delivered.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

// record writes a transition's delivery key, retrying for a while: the
// ack follows it, and a missing key is what lets a redelivery through.
func (n *Notifier) record(ctx context.Context, rc *receiver, key, outcome string) {
	for i := 0; i < 10; i++ {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_, err := rc.delivered.Put(c, key, []byte(outcome))
		cancel()
		if err == nil {
			return
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return
		}
	}
	n.log.Warn().Str("receiver", rc.Name).Msg("could not record a delivery; a redelivery may send it again")
}

// decide says why a's transition is not sent to rc ("" to send it).
func (n *Notifier) decide(ctx context.Context, rc *receiver, a *alerts.Alert) string {
	if rc.Kind != KindWebhook {
		return "" // Alertmanager silences and throttles itself
	}
	if len(rc.Severities) > 0 && !slices.Contains(rc.Severities, a.Severity) {
		return outcomeUnsent
	}
	if a.State == alerts.StateResolved {
		was, err := n.outcome(ctx, rc, deliveredKey(rc.Name, a.ID+"/"+alerts.StateFiring))
		if err == nil && was != "" && was != outcomeSent {
			return outcomeUnsent
		}
		return ""
	}
	silenced, err := n.silences.silenced(ctx, Labels(a))
	if err != nil {
		n.log.Warn().Str("receiver", rc.Name).Msg("silences unavailable; notifying")
	}
	if silenced {
		return outcomeSilenced
	}
	now := n.cfg.Now()
	if rc.windowStart.IsZero() || now.Sub(rc.windowStart) >= n.cfg.RateLimit.Per {
		n.flushDigest(ctx, rc, true)
	}
	if rc.sentInWin >= n.cfg.RateLimit.Requests {
		rc.suppressed++
		return outcomeDigested
	}
	return ""
}

// flushDigest sends the digest of rc's window once it is over (or at
// once with force) and opens a new window.
func (n *Notifier) flushDigest(ctx context.Context, rc *receiver, force bool) {
	now := n.cfg.Now()
	if !force && (rc.windowStart.IsZero() || now.Sub(rc.windowStart) < n.cfg.RateLimit.Per) {
		return
	}
	if rc.suppressed > 0 {
		d := digestAlert(rc.Name, rc.suppressed, n.cfg.RateLimit.Per, now)
		if err := n.retry(ctx, rc, nil, func(ctx context.Context) error { return n.send(ctx, rc, d) }); err != nil {
			return // ctx ended (or refused): try again next time
		}
		n.m.digests.WithLabelValues(rc.Name).Inc()
	}
	rc.windowStart, rc.sentInWin, rc.suppressed = now, 0, 0
}

// send makes one attempt at delivering a to rc.
func (n *Notifier) send(ctx context.Context, rc *receiver, a *alerts.Alert) error {
	now := n.cfg.Now()
	switch {
	case rc.Kind == KindAlertmanager:
		return post(ctx, n.client, rc.URL+"/api/v2/alerts", []amAlert{toAM(n.cfg.ExternalURL, a, now.Add(4*n.cfg.ResendEvery))}, n.cfg.Timeout, now)
	case rc.Format == FormatSlack:
		return post(ctx, n.client, rc.URL, slack(n.cfg.ExternalURL, a), n.cfg.Timeout, now)
	default:
		return post(ctx, n.client, rc.URL, webhook(rc.Name, n.cfg.ExternalURL, a), n.cfg.Timeout, now)
	}
}

// retry calls attempt until it succeeds, fails permanently or ctx ends,
// waiting between attempts with exponential backoff and full jitter, at
// least what Retry-After asked; m (when not nil) is kept in progress
// meanwhile so that it is not redelivered elsewhere.
func (n *Notifier) retry(ctx context.Context, rc *receiver, m jetstream.Msg, attempt func(context.Context) error) error {
	backoff := n.cfg.MinBackoff
	lastProgress := time.Now()
	for {
		err := attempt(ctx)
		n.report(ctx, rc, err)
		var se *sendError
		if err == nil || (errors.As(err, &se) && se.permanent()) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if errors.As(err, &se) && se.retryAfter > wait {
			wait = min(se.retryAfter, n.cfg.MaxRetryAfter)
		}
		backoff = min(2*backoff, n.cfg.MaxBackoff)
		for wait > 0 {
			step := min(wait, n.cfg.AckWait/3)
			if !sleep(ctx, step) {
				return ctx.Err()
			}
			wait -= step
			if m != nil && time.Since(lastProgress) >= n.cfg.AckWait/3 {
				_ = m.InProgress()
				lastProgress = time.Now()
			}
		}
		if m != nil {
			_ = m.InProgress()
			lastProgress = time.Now()
		}
	}
}

// ReceiverStatus is what GET /api/admin/alerts/receivers tells of a
// receiver, as the Notifier that last delivered to it recorded.
type ReceiverStatus struct {
	Name        string     `json:"name"`
	Kind        string     `json:"kind"`
	Format      string     `json:"format,omitempty"`
	Severities  []string   `json:"severities,omitempty"`
	State       string     `json:"state"` // ok, failing, or unknown (nothing delivered yet)
	LastSuccess *time.Time `json:"last_success,omitempty"`
	LastFailure *time.Time `json:"last_failure,omitempty"`
	// LastError is the last failure's cause, without the receiver's URL:
	// "HTTP 503 Service Unavailable", "connection refused", "no answer
	// within 10s", ...
	LastError           string `json:"last_error,omitempty"`
	ConsecutiveFailures int    `json:"consecutive_failures"`
	// Pending is how many transitions wait for the receiver (stream
	// messages not yet acknowledged by its consumer).
	Pending uint64 `json:"pending"`
}

const prefixReceiver = "receiver."

// report records an attempt's result in metrics, the log and the status
// key: a log line when a receiver starts failing (and every 10th failure
// in a row after that), and when it recovers.
func (n *Notifier) report(ctx context.Context, rc *receiver, err error) {
	now := n.cfg.Now().UTC()
	st := ReceiverStatus{}
	if e, gerr := rc.status.Get(ctx, prefixReceiver+rc.Name); gerr == nil {
		_ = json.Unmarshal(e.Value(), &st)
	}
	st.Name, st.Kind, st.Format, st.Severities = rc.Name, rc.Kind, rc.Format, rc.Severities
	if err == nil {
		if rc.failing > 0 {
			n.log.Info().Str("receiver", rc.Name).Int("failed_attempts", rc.failing).Msg("alert receiver recovered")
		}
		rc.failing = 0
		n.m.up.WithLabelValues(rc.Name).Set(1)
		st.State, st.LastSuccess, st.ConsecutiveFailures = "ok", &now, 0
	} else {
		if ctx.Err() != nil {
			return
		}
		rc.failing++
		n.m.failures.WithLabelValues(rc.Name).Inc()
		n.m.up.WithLabelValues(rc.Name).Set(0)
		if rc.failing == 1 || rc.failing%10 == 0 {
			n.log.Warn().Str("receiver", rc.Name).Str("error", err.Error()).Int("failed_attempts", rc.failing).
				Msg("alert receiver failing; retrying with backoff")
		}
		st.State, st.LastFailure, st.LastError, st.ConsecutiveFailures = "failing", &now, err.Error(), rc.failing
	}
	b, _ := json.Marshal(st)
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	_, _ = rc.status.Put(c, prefixReceiver+rc.Name, b)
	cancel()
}

// resend posts every firing alert to Alertmanager r every ResendEvery.
func (n *Notifier) resend(ctx context.Context, r Receiver) {
	t := time.NewTicker(n.cfg.ResendEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
		err := n.resendOnce(c, r)
		cancel()
		if err != nil && ctx.Err() == nil {
			n.log.Debug().Str("receiver", r.Name).Str("error", err.Error()).Msg("re-send of firing alerts failed")
		}
	}
}

func (n *Notifier) resendOnce(ctx context.Context, r Receiver) error {
	kv, err := n.js.KeyValue(ctx, n.cfg.Stream.Bucket)
	if err != nil {
		return errors.New("alert state unavailable")
	}
	firing, err := alerts.Firing(ctx, kv)
	if err != nil {
		return errors.New("alert state unavailable")
	}
	now := n.cfg.Now()
	var body []amAlert
	for i := range firing {
		if firing[i].Kind != alerts.KindScaling {
			body = append(body, toAM(n.cfg.ExternalURL, &firing[i], now.Add(4*n.cfg.ResendEvery)))
		}
	}
	if len(body) == 0 {
		return nil
	}
	if err := post(ctx, n.client, r.URL+"/api/v2/alerts", body, n.cfg.Timeout, now); err != nil {
		return err
	}
	n.m.resends.WithLabelValues(r.Name).Inc()
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
