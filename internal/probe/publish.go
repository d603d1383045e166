package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wedsync/pulse/internal/stream"
)

// JetStreamPublisher publishes to JetStream and waits for the stream's
// acknowledgement. Each message carries a Nats-Msg-Id, so that a retried
// publish is stored once: "health/<component>/<target>/<unix ms>" for a
// health result (the first of its array; the Runner sends one target per
// message) and "resources/<host>/<resource>/<unix ms>" for resource samples
// (the first of them). It is safe for concurrent use.
type JetStreamPublisher struct {
	JS jetstream.JetStream
}

// Publish implements Publisher.
func (p JetStreamPublisher) Publish(ctx context.Context, subject string, data []byte) error {
	var opts []jetstream.PublishOpt
	if id := msgID(subject, data); id != "" {
		opts = append(opts, jetstream.WithMsgID(id))
	}
	if _, err := p.JS.Publish(ctx, subject, data, opts...); err != nil {
		return fmt.Errorf("publish to %s: %w", subject, err)
	}
	return nil
}

// idFields are the fields of a health result or resource sample that name
// it.
type idFields struct {
	Timestamp time.Time `json:"timestamp"`
	Component string    `json:"component"`
	Target    string    `json:"target"`
	Host      string    `json:"host"`
	Resource  string    `json:"resource"`
}

// msgID derives the deduplication ID of a probe message from its first
// event; "" when data is not one the probes write.
func msgID(subject string, data []byte) string {
	var first idFields
	trimmed := strings.TrimSpace(string(data))
	if strings.HasPrefix(trimmed, "[") {
		var all []idFields
		if json.Unmarshal(data, &all) != nil || len(all) == 0 {
			return ""
		}
		first = all[0]
	} else if json.Unmarshal(data, &first) != nil {
		return ""
	}
	if first.Timestamp.IsZero() {
		return ""
	}
	ms := strconv.FormatInt(first.Timestamp.UnixMilli(), 10)
	switch {
	case strings.HasPrefix(subject, stream.SubjectHealth) && first.Component != "":
		return "health/" + first.Component + "/" + first.Target + "/" + ms
	case strings.HasPrefix(subject, stream.SubjectResources) && first.Host != "":
		return "resources/" + first.Host + "/" + first.Resource + "/" + ms
	}
	return ""
}
