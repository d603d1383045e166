package query

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Probe details are written by Pulse's own probes as safe, typed facts.
// The read side does not rely on that alone: before a detail leaves in an
// answer, keys that name credentials or addresses are dropped and strings
// are scrubbed of URLs, IP addresses, host:port pairs and key=secret pairs.

// sensitiveParts are substrings of a key (lower case, separators removed)
// that mark it as holding a credential or a connection string.
var sensitiveParts = []string{"password", "passwd", "secret", "token", "credential", "apikey", "dsn", "connectionstring", "privatekey"}

// sensitiveWords are words of a key (split at '_', '-', '.' and spaces)
// that mark it as holding an address.
var sensitiveWords = map[string]bool{
	"url": true, "urls": true, "uri": true, "key": true, "keys": true, "host": true, "hostname": true,
	"addr": true, "address": true, "ip": true, "endpoint": true, "endpoints": true, "pwd": true,
}

func sensitiveKey(k string) bool {
	lower := strings.ToLower(k)
	joined := strings.NewReplacer("_", "", "-", "", ".", "", " ", "").Replace(lower)
	for _, p := range sensitiveParts {
		if strings.Contains(joined, p) {
			return true
		}
	}
	for _, w := range strings.FieldsFunc(lower, func(r rune) bool { return r == '_' || r == '-' || r == '.' || r == ' ' }) {
		if sensitiveWords[w] {
			return true
		}
	}
	return false
}

const redacted = "[redacted]"

var (
	secretPair = regexp.MustCompile(`(?i)\b(password|passwd|pwd|secret|token|api_?key)\s*[=:]\s*\S+`)
	urlPattern = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>]+`)
	ipv6Addr   = regexp.MustCompile(`\[[0-9A-Fa-f:.]+\](:[0-9]+)?`)
	ipv4Addr   = regexp.MustCompile(`\b[0-9]{1,3}(\.[0-9]{1,3}){3}(:[0-9]+)?\b`)
	hostPort   = regexp.MustCompile(`\b[A-Za-z0-9.\-]*[A-Za-z][A-Za-z0-9.\-]*:[0-9]{2,5}\b`)
)

// maxDetailString bounds one string of an answer that a probe wrote.
const maxDetailString = 256

// scrub removes credentials and addresses from s and bounds its length.
func scrub(s string) string {
	s = secretPair.ReplaceAllString(s, "${1}="+redacted)
	s = urlPattern.ReplaceAllString(s, redacted)
	s = ipv6Addr.ReplaceAllString(s, redacted)
	s = ipv4Addr.ReplaceAllString(s, redacted)
	s = hostPort.ReplaceAllString(s, redacted)
	if len(s) > maxDetailString {
		cut := maxDetailString
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// parseDetails reads a probe's details, a JSON object, and sanitises it.
// Anything else gives nil.
func parseDetails(text string) map[string]any {
	if text == "" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(text)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil || dec.More() {
		return nil
	}
	return sanitizeMap(m)
}

func sanitizeMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if sensitiveKey(k) {
			continue
		}
		out[scrub(k)] = sanitizeValue(v)
	}
	return out
}

func sanitizeValue(v any) any {
	switch v := v.(type) {
	case string:
		return scrub(v)
	case map[string]any:
		return sanitizeMap(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = sanitizeValue(e)
		}
		return out
	default:
		return v // numbers, booleans, null
	}
}
