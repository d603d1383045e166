// Package dashboard serves the /admin page: a static page embedded in the
// binary that reads only the admin JSON API, with the admin token the
// person pastes (kept in the tab's sessionStorage, sent in the
// Authorization header). The page holds no data, so its routes are public;
// every API call it makes carries the token and meets the admin guard and
// rate limit.
//
// The assets are built from ui/ (uPlot from npm plus ui/src) by `make
// dashboard`; the built files are committed so that `go build` alone works.
package dashboard

import (
	"embed"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/wedsync/pulse/internal/httpapi"
)

//go:embed assets/index.html assets/dashboard.js assets/dashboard.css
var assets embed.FS

// ContentSecurityPolicy is sent with every asset of the page: scripts and
// styles only from Pulse itself (no inline script, no CDN, no fonts), API
// calls only to Pulse, no frames, no forms elsewhere.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Routes are the page's routes, each a path and the embedded file it serves.
var Routes = []struct{ Path, File, ContentType string }{
	{"/admin", "assets/index.html", echo.MIMETextHTMLCharsetUTF8},
	{"/admin/dashboard.js", "assets/dashboard.js", echo.MIMEApplicationJavaScriptCharsetUTF8},
	{"/admin/dashboard.css", "assets/dashboard.css", "text/css; charset=utf-8"},
}

// Register adds the page's routes to r, public (the page holds no data).
func Register(r *httpapi.Router) {
	for _, rt := range Routes {
		body, err := assets.ReadFile(rt.File)
		if err != nil {
			panic("dashboard: embedded asset missing: " + rt.File) // the embed directive names every file
		}
		r.Handle(http.MethodGet, rt.Path, httpapi.Public, serve(body, rt.ContentType))
	}
}

// serve answers with body and the page's security headers. The browser
// revalidates on every load, so a new binary's page is seen at once.
func serve(body []byte, contentType string) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-cache")
		return c.Blob(http.StatusOK, contentType, body)
	}
}
