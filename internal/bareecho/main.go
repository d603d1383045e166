// Command bareecho is the raw limit of Pulse's single-event ingest path for
// `make bench`: an echo v4 server whose handler only reads and decodes the
// JSON body and answers 202, with nothing persisted. scripts/bench-http.sh
// loads it and `pulse serve` side by side with the same wrk script.
//
//	bareecho 127.0.0.1:7590
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/labstack/echo/v4"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: bareecho host:port")
		os.Exit(2)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/api/admin/system/metrics", func(c echo.Context) error {
		b, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return c.NoContent(http.StatusBadRequest)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return c.NoContent(http.StatusBadRequest)
		}
		return c.JSON(http.StatusAccepted, map[string]int{"accepted": 1})
	})
	if err := e.Start(os.Args[1]); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
