package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wedsync/pulse/internal/event"
)

// Matcher matches one label, as Alertmanager's API writes it: equal (or,
// with IsEqual false, not equal) to Value, or matching it as a regular
// expression anchored at both ends.
type Matcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	IsEqual *bool  `json:"isEqual,omitempty"` // default true
}

func (m Matcher) equal() bool { return m.IsEqual == nil || *m.IsEqual }

// matches reports whether labels satisfy m; a missing label is "".
func (m Matcher) matches(labels map[string]string) bool {
	v := labels[m.Name]
	ok := v == m.Value
	if m.IsRegex {
		re, err := regexp.Compile("^(?:" + m.Value + ")$")
		ok = err == nil && re.MatchString(v)
	}
	return ok == m.equal()
}

// Silence mutes the notifications of the alerts whose labels satisfy all
// its matchers from StartsAt to EndsAt. Silenced alerts are still
// recorded (stream, history, GET /api/admin/alerts).
type Silence struct {
	ID        string    `json:"id"`
	Matchers  []Matcher `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
	// State is pending, active or expired (computed when answered).
	State string `json:"state"`
}

// stateAt is s's state at now.
func (s *Silence) stateAt(now time.Time) string {
	switch {
	case !now.Before(s.EndsAt):
		return "expired"
	case now.Before(s.StartsAt):
		return "pending"
	}
	return "active"
}

// mutes reports whether s silences labels at now.
func (s *Silence) mutes(labels map[string]string, now time.Time) bool {
	if s.stateAt(now) != "active" {
		return false
	}
	for _, m := range s.Matchers {
		if !m.matches(labels) {
			return false
		}
	}
	return true
}

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// checkSilence checks a silence to create at now, naming every problem.
func checkSilence(s *Silence, now time.Time) []event.FieldError {
	var errs []event.FieldError
	bad := func(field, msg string) { errs = append(errs, event.FieldError{Field: field, Message: msg}) }
	if len(s.Matchers) == 0 {
		bad("matchers", "at least one matcher is required")
	}
	if len(s.Matchers) > 32 {
		bad("matchers", "at most 32 matchers")
	}
	allEmpty := len(s.Matchers) > 0
	for i, m := range s.Matchers {
		f := fmt.Sprintf("matchers[%d]", i)
		if !labelNameRE.MatchString(m.Name) {
			bad(f+".name", "must be a label name: letters, digits and _, not starting with a digit")
		}
		if len(m.Value) > 1024 {
			bad(f+".value", "at most 1024 characters")
		}
		if m.IsRegex {
			if _, err := regexp.Compile("^(?:" + m.Value + ")$"); err != nil {
				bad(f+".value", "is not a valid regular expression")
				allEmpty = false
				continue
			}
		}
		if !m.matches(map[string]string{}) {
			allEmpty = false
		}
	}
	if allEmpty {
		bad("matchers", "would match every alert (each matcher matches an empty label); name at least one label that must be set")
	}
	switch {
	case s.EndsAt.IsZero():
		bad("endsAt", "is required")
	case !s.EndsAt.After(s.StartsAt):
		bad("endsAt", "must be after startsAt")
	case !s.EndsAt.After(now):
		bad("endsAt", "must be in the future")
	case s.EndsAt.Sub(s.StartsAt) > 366*24*time.Hour:
		bad("endsAt", "a silence lasts at most a year")
	}
	if len(s.Comment) > 1024 {
		bad("comment", "at most 1024 characters")
	}
	if strings.TrimSpace(s.Comment) == "" {
		bad("comment", "is required: say why")
	}
	return errs
}

var errSilenceNotFound = errors.New("silence not found")

// silenceStore keeps silences: in KV without Alertmanager, in
// Alertmanager with it.
type silenceStore interface {
	create(ctx context.Context, s Silence) (string, error)
	list(ctx context.Context) ([]Silence, error)
	expire(ctx context.Context, id string) error
}

// kvSilences keeps silences in the notify bucket, one key each.
type kvSilences struct {
	js     jetstream.JetStream
	bucket string
	now    func() time.Time
}

const prefixSilence = "silence."

func (k *kvSilences) kv(ctx context.Context) (jetstream.KeyValue, error) {
	return ensureNotifyBucket(ctx, k.js, k.bucket)
}

func (k *kvSilences) create(ctx context.Context, s Silence) (string, error) {
	kv, err := k.kv(ctx)
	if err != nil {
		return "", err
	}
	s.ID, s.State = newID(), ""
	b, _ := json.Marshal(s)
	if _, err := kv.Create(ctx, prefixSilence+s.ID, b); err != nil {
		return "", fmt.Errorf("store silence: %w", err)
	}
	return s.ID, nil
}

func (k *kvSilences) list(ctx context.Context) ([]Silence, error) {
	kv, err := k.kv(ctx)
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeysFiltered(ctx, prefixSilence+">")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("list silences: %w", err)
	}
	defer lister.Stop()
	var out []Silence
	now := k.now()
	for key := range lister.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue
		}
		var s Silence
		if json.Unmarshal(e.Value(), &s) != nil {
			continue
		}
		// Expired for a week: forgotten.
		if now.Sub(s.EndsAt) > 7*24*time.Hour {
			_ = kv.Delete(ctx, key)
			continue
		}
		out = append(out, s)
	}
	return out, ctx.Err()
}

func (k *kvSilences) expire(ctx context.Context, id string) error {
	kv, err := k.kv(ctx)
	if err != nil {
		return err
	}
	e, err := kv.Get(ctx, prefixSilence+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) || errors.Is(err, jetstream.ErrInvalidKey) {
		return errSilenceNotFound
	}
	if err != nil {
		return fmt.Errorf("read silence: %w", err)
	}
	var s Silence
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return fmt.Errorf("decode silence: %w", err)
	}
	if now := k.now(); now.Before(s.EndsAt) {
		s.EndsAt = now
		if s.StartsAt.After(now) {
			s.StartsAt = now
		}
		b, _ := json.Marshal(s)
		if _, err := kv.Update(ctx, prefixSilence+id, b, e.Revision()); err != nil {
			return fmt.Errorf("expire silence: %w", err)
		}
	}
	return nil
}

// amSilences keeps silences in Alertmanager (its v2 API): the first of
// the configured Alertmanagers that answers, since a cluster shares them.
type amSilences struct {
	urls    []string
	client  *http.Client
	timeout time.Duration
}

// amSilence is a silence as Alertmanager's API answers it.
type amSilence struct {
	Silence
	Status struct {
		State string `json:"state"`
	} `json:"status"`
}

// each calls f with each Alertmanager's base URL until one succeeds.
func (a *amSilences) each(ctx context.Context, f func(ctx context.Context, base string) error) error {
	var last error
	for _, base := range a.urls {
		c, cancel := context.WithTimeout(ctx, a.timeout)
		err := f(c, base)
		cancel()
		if err == nil || errors.Is(err, errSilenceNotFound) {
			return err
		}
		last = err
	}
	return fmt.Errorf("alertmanager silences: %w", last)
}

func (a *amSilences) do(ctx context.Context, method, u string, in, out any) error {
	var body *strings.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = strings.NewReader(string(b))
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return errors.New("invalid Alertmanager URL")
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return &sendError{desc: describe(err, a.timeout)}
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound && method == http.MethodDelete {
		return errSilenceNotFound
	}
	if resp.StatusCode/100 != 2 {
		return &sendError{desc: fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode)), status: resp.StatusCode}
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return errors.New("undecodable answer from Alertmanager")
		}
	}
	return nil
}

func (a *amSilences) create(ctx context.Context, s Silence) (string, error) {
	var id string
	err := a.each(ctx, func(ctx context.Context, base string) error {
		var out struct {
			SilenceID string `json:"silenceID"`
		}
		in := map[string]any{"matchers": s.Matchers, "startsAt": s.StartsAt, "endsAt": s.EndsAt, "createdBy": s.CreatedBy, "comment": s.Comment}
		if err := a.do(ctx, http.MethodPost, base+"/api/v2/silences", in, &out); err != nil {
			return err
		}
		id = out.SilenceID
		return nil
	})
	return id, err
}

func (a *amSilences) list(ctx context.Context) ([]Silence, error) {
	var out []Silence
	err := a.each(ctx, func(ctx context.Context, base string) error {
		var got []amSilence
		if err := a.do(ctx, http.MethodGet, base+"/api/v2/silences", nil, &got); err != nil {
			return err
		}
		out = out[:0]
		for _, s := range got {
			out = append(out, s.Silence)
		}
		return nil
	})
	return out, err
}

func (a *amSilences) expire(ctx context.Context, id string) error {
	return a.each(ctx, func(ctx context.Context, base string) error {
		return a.do(ctx, http.MethodDelete, base+"/api/v2/silence/"+url.PathEscape(id), nil, nil)
	})
}

// silenceCache answers "is this silenced?" from a list at most maxAge
// old, so that a burst of notifications reads the store once.
type silenceCache struct {
	store  silenceStore
	maxAge time.Duration
	now    func() time.Time

	mu      sync.Mutex
	at      time.Time
	entries []Silence
}

// silenced reports whether labels are muted now. When the store cannot be
// read it answers false (notify rather than lose an alert) with the error.
func (c *silenceCache) silenced(ctx context.Context, labels map[string]string) (bool, error) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	if c.at.IsZero() || now.Sub(c.at) > c.maxAge {
		var got []Silence
		if got, err = c.store.list(ctx); err == nil {
			c.entries, c.at = got, now
		}
	}
	for i := range c.entries {
		if c.entries[i].mutes(labels, now) {
			return true, nil
		}
	}
	return false, err
}

func sortSilences(ss []Silence) {
	sort.Slice(ss, func(i, j int) bool {
		if !ss[i].StartsAt.Equal(ss[j].StartsAt) {
			return ss[i].StartsAt.After(ss[j].StartsAt)
		}
		return ss[i].ID < ss[j].ID
	})
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
