package query_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/wedsync/pulse/internal/testenv"
	"github.com/wedsync/pulse/query"
)

// fuzzRoutes are the query routes and the parameters each allows.
var fuzzRoutes = []struct {
	path    string
	allowed []string
}{
	{"/api/admin/system/performance", []string{"timeframe", "metric", "service", "endpoint", "fill", "series", "limit"}},
	{"/api/admin/system/resources", []string{"resource_type", "alert_threshold"}},
	{"/api/admin/system/health", []string{"component", "detailed", "timeframe"}},
}

// FuzzQueryParams sends any query string to each query route, on a real
// ClickHouse: the answer is 200 or 400, never a 5xx or a panic; a 400
// names each problem with a short, printable field; and a 200 is given
// only to a query string that parses, names allowed parameters only, each
// at most once.
func FuzzQueryParams(f *testing.F) {
	for _, q := range []string{
		"", "timeframe=1h", "timeframe=7d&metric=throughput&service=web&endpoint=/api/x/42&fill=true&series=false&limit=5",
		"metric=resource_usage", "limit=101", "timeframe=%zz", "%01x%ff=1", "service=Web", "endpoint=/api%00",
		"fill=true&fill=false", "resource_type=cpu&alert_threshold=0.5", "alert_threshold=1e-1", "alert_threshold=NaN",
		"component=database&detailed=true", "detailed=1", "a=1;b=2", "timeframe=1h#frag", "service=%E2%82%AC",
	} {
		for r := range fuzzRoutes {
			f.Add(uint8(r), q)
		}
	}
	e, _ := newServer(f, query.Config{}, testenv.ClickHouse(f), nil)
	f.Fuzz(func(t *testing.T, route uint8, rawQuery string) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		req := httptest.NewRequest(http.MethodGet, rt.path, nil)
		req.URL.RawQuery = rawQuery
		req.Header.Set("Authorization", "Bearer "+adminToken)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			vals, err := url.ParseQuery(rawQuery)
			if err != nil {
				t.Fatalf("GET %s?%s: 200 to a query that does not parse (%v)", rt.path, rawQuery, err)
			}
			for name, vs := range vals {
				if !slices.Contains(rt.allowed, name) || len(vs) > 1 {
					t.Fatalf("GET %s?%s: 200 with parameter %q given %d times", rt.path, rawQuery, name, len(vs))
				}
			}
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("GET %s?%s: 200 with a body that is not JSON: %.200s", rt.path, rawQuery, rec.Body)
			}
		case http.StatusBadRequest:
			var b struct {
				Error   string `json:"error"`
				Details []struct{ Field, Message string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.Error != "invalid_request" || len(b.Details) == 0 {
				t.Fatalf("GET %s?%s: a 400 that is not invalid_request with details: %s", rt.path, rawQuery, rec.Body)
			}
			vals, _ := url.ParseQuery(rawQuery)
			_, emptyName := vals[""]
			for _, d := range b.Details {
				// A parameter without a name ("?=1") is reported with an
				// empty field, the name it has (found by this fuzz test;
				// internal/httpapi.SafeName could say so in words).
				if d.Message == "" || d.Field == "" && !emptyName || len(d.Field) > 64*utf8.UTFMax || !utf8.ValidString(d.Field) || !printable(d.Field) {
					t.Fatalf("GET %s?%s: detail %+v lacks a message or echoes an unsafe field", rt.path, rawQuery, d)
				}
			}
		default:
			t.Fatalf("GET %s?%s: got %d %.300s; want 200 or 400", rt.path, rawQuery, rec.Code, rec.Body)
		}
	})
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return false
		}
	}
	return true
}
