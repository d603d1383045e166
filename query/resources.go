package query

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
)

// Resource samples older than ResourceWindow are not current; a host that
// sent none within it is left out of /system/resources.
const ResourceWindow = 10 * time.Minute

// DefaultAlertThreshold is the alert_threshold when none is given.
const DefaultAlertThreshold = 0.8

// ResourcesResponse is the /system/resources answer: the latest sample of
// each host, resource and name within the last ResourceWindow.
type ResourcesResponse struct {
	ResourceType   string            `json:"resource_type,omitempty"` // the filter, when given
	AlertThreshold float64           `json:"alert_threshold"`
	WindowSeconds  int               `json:"window_seconds"`
	Items          []ResourceItem    `json:"items"`
	Summary        []ResourceSummary `json:"summary"`
	LastUpdated    time.Time         `json:"last_updated"`
}

// ResourceItem is the latest sample of one resource of one host. Name tells
// apart several of a kind (a disk mount, a network interface); it is empty
// for a whole-host figure.
type ResourceItem struct {
	Host           string    `json:"host"`
	Resource       string    `json:"resource"`
	Name           string    `json:"name"`
	Used           *float64  `json:"used"`
	Capacity       *float64  `json:"capacity"`
	Utilisation    *float64  `json:"utilisation"` // used / capacity, in [0, 1]
	TS             time.Time `json:"ts"`
	AboveThreshold bool      `json:"above_threshold"` // utilisation > alert_threshold
}

// ResourceSummary sums up the items of one resource type.
type ResourceSummary struct {
	Resource            string   `json:"resource"`
	Items               int      `json:"items"`
	Hosts               int      `json:"hosts"`
	MaxUtilisation      *float64 `json:"max_utilisation"` // null without items
	ItemsAboveThreshold int      `json:"items_above_threshold"`
	HostsAboveThreshold int      `json:"hosts_above_threshold"` // hosts with at least one item above it
}

func (a *API) resources(c echo.Context) error {
	p := newParams(c.Request().URL.RawQuery, "resource_type", "alert_threshold")
	rtype := p.Enum("resource_type", "", resourceTypes...)
	threshold := p.fraction("alert_threshold", DefaultAlertThreshold)
	if err := p.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), a.cfg.QueryTimeout)
	defer cancel()
	resp, err := a.buildResources(ctx, rtype, threshold)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}

func (a *API) buildResources(ctx context.Context, rtype string, threshold float64) (*ResourcesResponse, error) {
	now := a.cfg.Now()
	// A sample stamped further ahead than ingest accepts cannot be current;
	// without the bound one would win argMax for ever.
	where := timeRange("ts", now.Add(-ResourceWindow), now.Add(event.MaxFutureSkew))
	if rtype != "" {
		where += " AND resource = " + chstore.Quote(rtype)
	}
	// Rows are told apart by where they came from in the stream, so every
	// argMax picks the same sample even when two share a second.
	const latest = "(ts, stream_seq, seq_idx)"
	sql := "SELECT host, resource, name, argMax(used, " + latest + "), argMax(capacity, " + latest + "), argMax(utilisation, " + latest + "), max(ts) FROM " +
		a.store.T("resources") + " WHERE " + where + " GROUP BY host, resource, name ORDER BY resource, host, name"
	resp := &ResourcesResponse{ResourceType: rtype, AlertThreshold: threshold, WindowSeconds: int(ResourceWindow / time.Second),
		Items: []ResourceItem{}, LastUpdated: now.UTC()}
	var it ResourceItem
	var used, capacity, util float64
	err := a.each(ctx, "resources", sql, []any{&it.Host, &it.Resource, &it.Name, &used, &capacity, &util, &it.TS}, func() {
		it.Used, it.Capacity, it.Utilisation = num(used), num(capacity), num(util)
		it.AboveThreshold = it.Utilisation != nil && *it.Utilisation > threshold
		resp.Items = append(resp.Items, it)
	})
	if err != nil {
		return nil, err
	}
	types := resourceTypes
	if rtype != "" {
		types = []string{rtype}
	}
	for _, t := range types {
		s := ResourceSummary{Resource: t}
		hosts, hot := map[string]bool{}, map[string]bool{}
		for _, it := range resp.Items {
			if it.Resource != t {
				continue
			}
			s.Items++
			hosts[it.Host] = true
			if it.Utilisation != nil && (s.MaxUtilisation == nil || *it.Utilisation > *s.MaxUtilisation) {
				s.MaxUtilisation = num(*it.Utilisation)
			}
			if it.AboveThreshold {
				s.ItemsAboveThreshold++
				hot[it.Host] = true
			}
		}
		s.Hosts, s.HostsAboveThreshold = len(hosts), len(hot)
		resp.Summary = append(resp.Summary, s)
	}
	return resp, nil
}
