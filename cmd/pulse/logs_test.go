package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestConsoleLogsColourOnlyOnTerminal: console logs written to a buffer
// or a pipe (a file, a log collector) carry no ANSI escape codes.
func TestConsoleLogsColourOnlyOnTerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	var buf bytes.Buffer
	for name, out := range map[string]interface {
		Write([]byte) (int, error)
	}{"buffer": &buf, "pipe": w} {
		if colour(out) {
			t.Errorf("colour(%s) = true; want false", name)
		}
	}
	l := logFlags{level: "info", format: "console"}
	log, err := l.logger(&buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Str("k", "v").Msg("hello")
	if strings.Contains(buf.String(), "\x1b[") || !strings.Contains(buf.String(), "hello") {
		t.Errorf("console log to a buffer: %q; want the message without escape codes", buf.String())
	}
}
