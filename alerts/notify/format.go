package notify

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wedsync/pulse/alerts"
)

// amAlert is an alert of Alertmanager's v2 API (POST /api/v2/alerts) and
// of its webhook body.
type amAlert struct {
	Status       string            `json:"status,omitempty"` // webhook body only
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint,omitempty"` // webhook body only
}

// webhookBody is Alertmanager's webhook body, version 4.
type webhookBody struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []amAlert         `json:"alerts"`
}

// slackBody is a Slack incoming-webhook message.
type slackBody struct {
	Text        string            `json:"text"`
	Attachments []slackAttachment `json:"attachments,omitempty"`
}

type slackAttachment struct {
	Color  string       `json:"color"`
	Title  string       `json:"title"`
	Text   string       `json:"text"`
	Fields []slackField `json:"fields,omitempty"`
}

type slackField struct {
	Title string `json:"title"`
	Value string `json:"value"`
	Short bool   `json:"short"`
}

// Labels returns the labels a is notified and silenced with: alertname
// and rule (the rule's name), severity, kind, and a's own labels (service,
// endpoint, component, ...) under names Alertmanager accepts.
func Labels(a *alerts.Alert) map[string]string {
	out := make(map[string]string, len(a.Labels)+4)
	for k, v := range a.Labels {
		if k = labelName(k); k != "" {
			out[k] = v
		}
	}
	out["alertname"], out["rule"], out["severity"] = a.Rule, a.Rule, a.Severity
	if a.Kind == alerts.KindScaling {
		out["kind"] = a.Kind
	}
	return out
}

// labelName makes k a Prometheus label name: [a-zA-Z_][a-zA-Z0-9_]*.
func labelName(k string) string {
	var b strings.Builder
	for i, r := range k {
		switch {
		case r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if strings.HasPrefix(b.String(), "__") {
		return ""
	}
	return b.String()
}

// link is the admin view of a.
func link(externalURL string, a *alerts.Alert) string {
	return externalURL + "/api/admin/alerts?state=" + url.QueryEscape(a.State) + "&severity=" + url.QueryEscape(a.Severity)
}

func annotations(externalURL string, a *alerts.Alert) map[string]string {
	value := "no data"
	if a.Value != nil {
		value = formatFloat(*a.Value)
	}
	summary := fmt.Sprintf("%s: %s", a.Rule, a.Severity)
	if s, e := a.Labels["service"], a.Labels["endpoint"]; s != "" || e != "" {
		summary = strings.TrimSpace(fmt.Sprintf("%s on %s %s", a.Rule, s, e))
	}
	return map[string]string{
		"summary":     summary,
		"description": a.Message,
		"value":       value,
		"threshold":   formatFloat(a.Threshold),
		"link":        link(externalURL, a),
		"alert_id":    a.ID,
	}
}

func formatFloat(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "no data"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// toAM is a as Alertmanager's v2 API takes it. A firing alert ends at
// validUntil unless posted again; a resolved one at its resolution.
func toAM(externalURL string, a *alerts.Alert, validUntil time.Time) amAlert {
	out := amAlert{Labels: Labels(a), Annotations: annotations(externalURL, a), StartsAt: a.StartedAt.UTC(),
		GeneratorURL: link(externalURL, a)}
	if a.State == alerts.StateResolved && a.ResolvedAt != nil {
		out.EndsAt = a.ResolvedAt.UTC()
	} else {
		out.EndsAt = validUntil.UTC()
	}
	return out
}

// fingerprint identifies an alert's label set, as Alertmanager's does.
func fingerprint(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k + "\xff" + labels[k] + "\xff"))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// webhook is a's transition in Alertmanager's webhook body.
func webhook(receiver, externalURL string, a *alerts.Alert) webhookBody {
	am := toAM(externalURL, a, time.Time{})
	am.Status, am.Fingerprint = a.State, fingerprint(am.Labels)
	if a.State != alerts.StateResolved {
		am.EndsAt = time.Time{}
	}
	group := map[string]string{"alertname": a.Rule}
	return webhookBody{
		Version: "4", GroupKey: fmt.Sprintf("{}:{alertname=%q}", a.Rule), Status: a.State, Receiver: receiver,
		GroupLabels: group, CommonLabels: am.Labels, CommonAnnotations: am.Annotations, ExternalURL: externalURL,
		Alerts: []amAlert{am},
	}
}

// slack is a's transition as a Slack message.
func slack(externalURL string, a *alerts.Alert) slackBody {
	ann := annotations(externalURL, a)
	color, verb := "danger", "FIRING"
	switch {
	case a.State == alerts.StateResolved:
		color, verb = "good", "RESOLVED"
	case a.Severity == "warning":
		color = "warning"
	}
	labels := Labels(a)
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fields := []slackField{{Title: "value", Value: ann["value"], Short: true}, {Title: "threshold", Value: ann["threshold"], Short: true}}
	for _, k := range keys {
		if k != "alertname" && k != "rule" {
			fields = append(fields, slackField{Title: k, Value: labels[k], Short: true})
		}
	}
	return slackBody{
		Text: fmt.Sprintf("[%s] %s (%s)", verb, ann["summary"], a.Severity),
		Attachments: []slackAttachment{{Color: color, Title: ann["summary"],
			Text: a.Message + "\n<" + ann["link"] + "|open in Pulse>", Fields: fields}},
	}
}

// digestAlert is the synthetic alert of a digest: n firing alerts were
// not sent in the period that ended at now.
func digestAlert(receiver string, n int, per time.Duration, now time.Time) *alerts.Alert {
	return &alerts.Alert{
		ID: "digest-" + receiver + "-" + strconv.FormatInt(now.Unix(), 10), Kind: alerts.KindAlert, Rule: "pulse_digest",
		State: alerts.StateFiring, Severity: "warning", Labels: map[string]string{"receiver": receiver},
		StartedAt: now, Count: uint64(n),
		Message: fmt.Sprintf("%d more alerts in the last %s (rate limit of this receiver reached; see GET /api/admin/alerts)", n, humanDuration(per)),
	}
}

// humanDuration writes d as "5 minutes", "1 hour", "30 seconds".
func humanDuration(d time.Duration) string {
	unit := func(n int64, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.FormatInt(n, 10) + " " + one + "s"
	}
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return unit(int64(d/time.Hour), "hour")
	case d >= time.Minute && d%time.Minute == 0:
		return unit(int64(d/time.Minute), "minute")
	default:
		return unit(int64((d+time.Second-1)/time.Second), "second")
	}
}
