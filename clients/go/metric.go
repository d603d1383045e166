package pulseclient

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/wedsync/pulse/internal/event"
)

// Metric is one served request.
type Metric struct {
	Endpoint     string        // route template or path; required, at most 512 bytes
	ResponseTime time.Duration // 0 to one day
	StatusCode   int           // 100-599
	Method       string        // optional HTTP method
	UserID       string        // optional UUID of the signed-in user
	ErrorMessage string        // optional, at most 2048 bytes
	Timestamp    time.Time     // default: when Record was called
	Service      string        // default: the client's service
	RequestID    string        // optional, 1-128 printable ASCII; Pulse generates one when empty
}

// wireMetric is a Metric as Pulse reads it.
type wireMetric struct {
	Endpoint       string  `json:"endpoint"`
	ResponseTimeMS float64 `json:"response_time_ms"`
	StatusCode     int     `json:"status_code"`
	Timestamp      string  `json:"timestamp"`
	Service        string  `json:"service"`
	Method         string  `json:"method,omitempty"`
	UserID         string  `json:"user_id,omitempty"`
	ErrorMessage   string  `json:"error_message,omitempty"`
	RequestID      string  `json:"request_id,omitempty"`
}

func (m *Metric) wire() wireMetric {
	return wireMetric{
		Endpoint: m.Endpoint, ResponseTimeMS: float64(m.ResponseTime) / float64(time.Millisecond), StatusCode: m.StatusCode,
		Timestamp: m.Timestamp.UTC().Format(time.RFC3339Nano), Service: m.Service, Method: m.Method,
		UserID: m.UserID, ErrorMessage: m.ErrorMessage, RequestID: m.RequestID,
	}
}

func validService(s string) bool { return event.ValidService(s) }

func isMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
		return true
	}
	return false
}

// check mirrors Pulse's validation (internal/event) and returns why Pulse
// would refuse m, or "". It normalises the service and method in place.
// The timestamp and service must be set.
func (m *Metric) check(now time.Time, retention time.Duration) string {
	switch {
	case m.Endpoint == "":
		return "endpoint: is required"
	case len(m.Endpoint) > event.MaxEndpointLen:
		return fmt.Sprintf("endpoint: must be at most %d bytes", event.MaxEndpointLen)
	case !event.Printable(m.Endpoint):
		return "endpoint: must be printable UTF-8 without control characters"
	}
	if ms := float64(m.ResponseTime) / float64(time.Millisecond); ms < 0 || ms > event.MaxResponseTimeMS || math.IsNaN(ms) {
		return fmt.Sprintf("response_time_ms: must be a number between 0 and %d", event.MaxResponseTimeMS)
	}
	if m.StatusCode < 100 || m.StatusCode > 599 {
		return "status_code: must be an integer between 100 and 599"
	}
	if m.UserID != "" {
		id, err := uuid.Parse(m.UserID)
		if err != nil || len(m.UserID) != 36 || id == uuid.Nil {
			return "user_id: must be a UUID (8-4-4-4-12 hex digits)"
		}
	}
	switch {
	case len(m.ErrorMessage) > event.MaxErrorMessageLen:
		return fmt.Sprintf("error_message: must be at most %d bytes", event.MaxErrorMessageLen)
	case !utf8.ValidString(m.ErrorMessage):
		return "error_message: must be valid UTF-8"
	}
	switch {
	case m.Timestamp.After(now.Add(event.MaxFutureSkew)):
		return fmt.Sprintf("timestamp: is more than %s in the future", event.MaxFutureSkew)
	case retention > 0 && m.Timestamp.Before(now.Add(-retention)):
		return fmt.Sprintf("timestamp: is older than the retention of %s", retention)
	}
	if !validService(m.Service) {
		if s := strings.ToLower(m.Service); validService(s) {
			m.Service = s
		} else {
			return fmt.Sprintf("service: must be 1-%d characters of a-z, 0-9, '_' or '-', starting with a letter or digit", event.MaxServiceLen)
		}
	}
	if m.Method != "" && !isMethod(m.Method) {
		if u := strings.ToUpper(m.Method); isMethod(u) {
			m.Method = u
		} else {
			return "method: must be an HTTP method such as GET or POST"
		}
	}
	if id := m.RequestID; id != "" {
		if len(id) > event.MaxRequestIDLen {
			return fmt.Sprintf("request_id: must be 1-%d printable ASCII characters", event.MaxRequestIDLen)
		}
		for i := 0; i < len(id); i++ {
			if id[i] < 0x21 || id[i] > 0x7e {
				return fmt.Sprintf("request_id: must be 1-%d printable ASCII characters", event.MaxRequestIDLen)
			}
		}
	}
	return ""
}

// truncate cuts s to at most n bytes without splitting a UTF-8 character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
