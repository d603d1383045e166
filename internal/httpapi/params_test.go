package httpapi

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestParams(t *testing.T) {
	p := NewParams("a=x&b=true&n=7&n2=%2B7&bad%01name=1&a2=1&a2=2", "a", "b", "n", "n2", "a2", "c")
	if got := p.Enum("a", "d", "x", "y"); got != "x" {
		t.Errorf("Enum(a) = %q; want x", got)
	}
	if got := p.Enum("c", "d", "x"); got != "d" {
		t.Errorf("Enum of an absent parameter = %q; want the default d", got)
	}
	if !p.Bool("b", false) || p.Bool("c", false) {
		t.Error("Bool: want true for b=true and the default for an absent c")
	}
	if got := p.Int("n", 1, 1, 10); got != 7 {
		t.Errorf("Int(n) = %d; want 7", got)
	}
	if got := p.Int("n2", 1, 1, 10); got != 1 {
		t.Errorf("Int(+7) = %d; want the default 1 (signs are refused)", got)
	}
	var he *Error
	if err := p.Err(); !errors.As(err, &he) || he.Status != http.StatusBadRequest {
		t.Fatalf("Err() = %v; want a 400", err)
	}
	fields := map[string]string{}
	for _, e := range p.Errors() {
		fields[e.Field] = e.Message
	}
	for field, want := range map[string]string{"bad?name": "is not a parameter", "a2": "at most once", "n2": "integer between 1 and 10"} {
		if !strings.Contains(fields[field], want) {
			t.Errorf("error on %q: %q; want it to say %q (all: %v)", field, fields[field], want, fields)
		}
	}
	if err := NewParams("", "a").Err(); err != nil {
		t.Errorf("no parameters: Err() = %v; want nil", err)
	}
	if got := SafeName(strings.Repeat("x", 70) + "\x01"); len(got) != 64 {
		t.Errorf("SafeName of a long name has %d bytes; want 64", len(got))
	}
}
