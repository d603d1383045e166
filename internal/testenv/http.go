package testenv

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// Response is an answer as a client sees it.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Get sends GET target to h in process, with token as its bearer
// credential (none when token is ""), and returns the answer.
func Get(t testing.TB, h http.Handler, target, token string) Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Result().Body)
	return Response{Status: rec.Code, Header: rec.Header(), Body: body}
}

// WantFieldErrors checks that r is a 400 invalid_request whose details name
// exactly fields, in that order, each with a message: the answer of
// Pulse's API to bad parameters (httpapi.ErrorBody, read here without
// importing httpapi, whose tests use this package).
func WantFieldErrors(t testing.TB, r Response, fields ...string) {
	t.Helper()
	if r.Status != http.StatusBadRequest {
		t.Fatalf("got status %d, body %s; want 400", r.Status, r.Body)
	}
	var body struct {
		Error   string `json:"error"`
		Details []struct {
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"details"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	var got []string
	for _, d := range body.Details {
		got = append(got, d.Field)
		if d.Message == "" {
			t.Errorf("field %s: got no message", d.Field)
		}
	}
	if body.Error != "invalid_request" || !slices.Equal(got, fields) {
		t.Errorf("got error %q with fields %v; want invalid_request with %v (body %s)", body.Error, got, fields, r.Body)
	}
}
