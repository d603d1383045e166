package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/wedsync/pulse/internal/event"
)

// Bounds of rule fields.
const (
	maxNameLen     = 63
	minWindow      = 10 * time.Second
	maxWindow      = 6 * time.Hour
	maxFor         = 24 * time.Hour
	minCooldown    = time.Second
	maxCooldown    = 24 * time.Hour
	maxFactor      = 10
	maxLabels      = 32
	maxLabelValue  = 256
	maxMinRequests = 1_000_000_000
)

var (
	namePattern  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	labelPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,63}$`)
)

// parser walks a YAML document and collects every problem it finds.
type parser struct {
	errs []Error
}

func (p *parser) add(n *yaml.Node, field, format string, args ...any) {
	e := Error{Field: field, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

func parse(file string, data []byte) (*Set, error) {
	p := &parser{}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	err := dec.Decode(&doc)
	switch {
	case errors.Is(err, io.EOF) || err == nil && doc.Kind == yaml.DocumentNode && len(doc.Content) == 0:
		p.errs = append(p.errs, Error{Line: 1, Message: "the file holds no rules"})
		return nil, p.result(file)
	case err != nil:
		e := syntaxError(err)
		if line := problemLine(data, e.Message); line > 0 && line != e.Line {
			if e.Line > 0 {
				e.Message += fmt.Sprintf(" (in the block that starts on line %d)", e.Line)
			}
			e.Line = line
		}
		e.Message = "invalid YAML: " + e.Message
		p.errs = append(p.errs, e)
		return nil, p.result(file)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := 0
		if err == nil {
			line = extra.Line
		}
		p.errs = append(p.errs, Error{Line: line, Message: "the file must hold one YAML document"})
		return nil, p.result(file)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	s := p.set(root)
	if err := p.result(file); err != nil {
		return nil, err
	}
	return s, nil
}

// syntaxError splits a yaml.v3 error into its line and message.
func syntaxError(err error) Error {
	e := Error{Message: strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Message = strings.TrimPrefix(e.Message, m[0]+": ")
	}
	return e
}

// problemLine finds the line a YAML syntax error is on: yaml.v3 reports
// where the enclosing block starts, which is often far above. It is the
// last line of the shortest prefix of the document that fails with the
// same message; 0 when there is none.
func problemLine(data []byte, message string) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > 5000 {
		return 0
	}
	n := 0
	for k := 1; k <= len(lines); k++ {
		n += len(lines[k-1])
		var doc yaml.Node
		if err := yaml.Unmarshal(data[:n], &doc); err != nil && syntaxError(err).Message == message {
			return k
		}
	}
	return 0
}

func (p *parser) result(file string) error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool {
		a, b := p.errs[i], p.errs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return &Errors{File: file, List: p.errs}
}

func (p *parser) set(root *yaml.Node) *Set {
	s := &Set{Instant: []Instant{}, Window: []Window{}, Scaling: []Window{}}
	m, ok := p.mapping(root, "", "version", "instant", "window", "scaling")
	if !ok {
		return s
	}
	if n := m["version"]; n != nil {
		if v, ok := p.integer(n, "version"); ok && v != 1 {
			p.add(n, "version", "must be 1, the only version of the rules format")
		}
	}
	names := map[string]int{} // rule name -> line of its first use
	name := func(n *yaml.Node, field string) string {
		v, ok := p.str(n, field)
		if !ok {
			return ""
		}
		if !namePattern.MatchString(v) {
			p.add(n, field, "%q must be 1-%d characters of a-z, 0-9 and '_', starting with a letter (it is a NATS subject token)", truncate(v), maxNameLen)
			return v
		}
		if line, dup := names[v]; dup {
			p.add(n, field, "%q is already the name of the rule on line %d; names must be unique", v, line)
			return v
		}
		names[v] = n.Line
		return v
	}
	for i, n := range p.sequence(m["instant"], "instant") {
		if r, ok := p.instant(n, fmt.Sprintf("instant[%d]", i), name); ok {
			s.Instant = append(s.Instant, r)
		}
	}
	for i, n := range p.sequence(m["window"], "window") {
		if r, ok := p.window(n, fmt.Sprintf("window[%d]", i), name, false); ok {
			s.Window = append(s.Window, r)
		}
	}
	for i, n := range p.sequence(m["scaling"], "scaling") {
		if r, ok := p.window(n, fmt.Sprintf("scaling[%d]", i), name, true); ok {
			s.Scaling = append(s.Scaling, r)
		}
	}
	if len(p.errs) == 0 && s.Len() == 0 {
		p.add(root, "", "the file holds no rules: give at least one of instant, window or scaling")
	}
	return s
}

func (p *parser) instant(n *yaml.Node, path string, name func(*yaml.Node, string) string) (Instant, bool) {
	before := len(p.errs)
	r := Instant{Line: n.Line, GroupBy: []string{"service", "endpoint"}, Cooldown: Duration(time.Minute), Severity: SeverityWarning}
	m, ok := p.mapping(n, path, "name", "field", "op", "value", "group_by", "filters", "cooldown", "severity", "labels")
	if !ok {
		return r, false
	}
	p.require(n, path, m, "name", "field", "op", "value")
	if v := m["name"]; v != nil {
		r.Name = name(v, path+".name")
	}
	if v := m["field"]; v != nil {
		r.Field, _ = p.enum(v, path+".field", FieldResponseTime, FieldStatusCode)
	}
	if v := m["op"]; v != nil {
		r.Op, _ = p.enum(v, path+".op", InstantOps...)
	}
	if v := m["value"]; v != nil {
		if f, ok := p.number(v, path+".value"); ok {
			r.Value = f
			switch r.Field {
			case FieldStatusCode:
				if f != float64(int(f)) || f < 100 || f > 599 {
					p.add(v, path+".value", "a status_code is an integer between 100 and 599")
				}
			case FieldResponseTime:
				if f < 0 || f > event.MaxResponseTimeMS {
					p.add(v, path+".value", "a response_time_ms is between 0 and %d", event.MaxResponseTimeMS)
				}
			}
		}
	}
	if v := m["group_by"]; v != nil {
		r.GroupBy = p.groupBy(v, path+".group_by", "service", "endpoint")
	}
	if v := m["filters"]; v != nil {
		r.Filters = p.filters(v, path+".filters", "service", "endpoint")
	}
	if v := m["cooldown"]; v != nil {
		if d, ok := p.duration(v, path+".cooldown"); ok {
			if d < minCooldown || d > maxCooldown {
				p.add(v, path+".cooldown", "must be between %s and %s", minCooldown, Duration(maxCooldown))
			}
			r.Cooldown = Duration(d)
		}
	}
	if v := m["severity"]; v != nil {
		r.Severity, _ = p.enum(v, path+".severity", Severities...)
	}
	if v := m["labels"]; v != nil {
		r.Labels = p.labels(v, path+".labels", append(slices.Clone(r.GroupBy), filterNames(r.Filters)...))
	}
	return r, len(p.errs) == before
}

func (p *parser) window(n *yaml.Node, path string, name func(*yaml.Node, string) string, scaling bool) (Window, bool) {
	before := len(p.errs)
	r := Window{Line: n.Line, GroupBy: []string{}, Op: Above, Window: Duration(5 * time.Minute), NoData: NoDataKeep, Severity: SeverityWarning}
	known := []string{"name", "metric", "filters", "group_by", "op", "threshold", "resolve_threshold", "for", "window",
		"no_data", "min_requests", "severity", "labels"}
	required := []string{"name", "metric", "threshold"}
	if scaling {
		known = append(known, "direction", "factor")
		required = append(required, "direction", "factor")
		r.Severity = SeverityInfo
	}
	m, ok := p.mapping(n, path, known...)
	if !ok {
		return r, false
	}
	p.require(n, path, m, required...)
	if v := m["name"]; v != nil {
		r.Name = name(v, path+".name")
	}
	if v := m["direction"]; v != nil {
		if r.Direction, ok = p.enum(v, path+".direction", ScaleUp, ScaleDown); ok && r.Direction == ScaleDown {
			r.Op = Below
		}
	}
	metricOK := false
	if v := m["metric"]; v != nil {
		r.Metric, metricOK = p.enum(v, path+".metric", Metrics...)
	}
	var groups, filters []string
	switch {
	case RequestMetric(r.Metric):
		groups, filters = []string{"service", "endpoint"}, []string{"service", "endpoint"}
	case r.Metric == MetricResource:
		groups, filters = []string{"host", "resource", "name"}, []string{"resource", "host"}
	case r.Metric == MetricHealth:
		groups, filters = []string{"component", "target"}, []string{"component", "target"}
	}
	if v := m["filters"]; v != nil && metricOK {
		r.Filters = p.filters(v, path+".filters", filters...)
	}
	if v := m["group_by"]; v != nil && metricOK {
		r.GroupBy = p.groupBy(v, path+".group_by", groups...)
	}
	if v := m["op"]; v != nil {
		r.Op, _ = p.enum(v, path+".op", Above, Below)
	}
	thresholdOK := false
	if v := m["threshold"]; v != nil {
		if r.Threshold, thresholdOK = p.number(v, path+".threshold"); thresholdOK && metricOK {
			thresholdOK = p.metricValue(v, path+".threshold", r.Metric, r.Threshold)
		}
	}
	r.ResolveThreshold = r.Threshold
	if v := m["resolve_threshold"]; v != nil {
		var ok bool
		if r.ResolveThreshold, ok = p.number(v, path+".resolve_threshold"); ok {
			ok = !metricOK || p.metricValue(v, path+".resolve_threshold", r.Metric, r.ResolveThreshold)
			switch {
			case !ok || !thresholdOK:
			case r.Op == Above && r.ResolveThreshold > r.Threshold:
				p.add(v, path+".resolve_threshold", "%s is above threshold %s: with op above, an alert fires above threshold and resolves at or below resolve_threshold, so it must not be greater",
					fmtNum(r.ResolveThreshold), fmtNum(r.Threshold))
			case r.Op == Below && r.ResolveThreshold < r.Threshold:
				p.add(v, path+".resolve_threshold", "%s is below threshold %s: with op below, an alert fires below threshold and resolves at or above resolve_threshold, so it must not be smaller",
					fmtNum(r.ResolveThreshold), fmtNum(r.Threshold))
			}
		}
	}
	if v := m["window"]; v != nil {
		if d, ok := p.duration(v, path+".window"); ok {
			if d < minWindow || d > maxWindow {
				p.add(v, path+".window", "must be between %s and %s", Duration(minWindow), Duration(maxWindow))
			} else if d%time.Second != 0 {
				p.add(v, path+".window", "must be whole seconds")
			}
			r.Window = Duration(d)
		}
	}
	if v := m["for"]; v != nil {
		if d, ok := p.duration(v, path+".for"); ok {
			if d < 0 || d > maxFor {
				p.add(v, path+".for", "must be between 0s and %s", Duration(maxFor))
			}
			r.For = Duration(d)
		}
	}
	if v := m["no_data"]; v != nil {
		r.NoData, _ = p.enum(v, path+".no_data", NoDataKeep, NoDataResolve, NoDataAlert)
	}
	if v := m["min_requests"]; v != nil {
		if i, ok := p.integer(v, path+".min_requests"); ok {
			switch {
			case metricOK && !RequestMetric(r.Metric):
				p.add(v, path+".min_requests", "applies only to request metrics (%s), not to %s", strings.Join(Metrics[:6], ", "), r.Metric)
			case i < 0 || i > maxMinRequests:
				p.add(v, path+".min_requests", "must be an integer between 0 and %d", maxMinRequests)
			default:
				r.MinRequests = uint64(i)
			}
		}
	}
	if v := m["severity"]; v != nil {
		r.Severity, _ = p.enum(v, path+".severity", Severities...)
	}
	if v := m["factor"]; v != nil {
		if f, ok := p.number(v, path+".factor"); ok {
			r.Factor = f
			switch r.Direction {
			case ScaleUp:
				if f <= 1 || f > maxFactor {
					p.add(v, path+".factor", "scaling up needs a factor above 1 and at most %d, e.g. 1.5", maxFactor)
				}
			case ScaleDown:
				if f <= 0 || f >= 1 {
					p.add(v, path+".factor", "scaling down needs a factor between 0 and 1 (exclusive), e.g. 0.75")
				}
			}
		}
	}
	if v := m["labels"]; v != nil {
		taken := append(slices.Clone(r.GroupBy), filterNames(r.Filters)...)
		r.Labels = p.labels(v, path+".labels", taken)
	}
	return r, len(p.errs) == before
}

// metricValue checks that v can be a value of metric.
func (p *parser) metricValue(n *yaml.Node, field, metric string, v float64) bool {
	switch metric {
	case MetricErrorRate, MetricResource, MetricHealth:
		if v < 0 || v > 1 {
			p.add(n, field, "%s is a share between 0 and 1, not %s", metric, fmtNum(v))
			return false
		}
	case MetricThroughputDrop:
		if v < -10 || v > 1 {
			p.add(n, field, "%s is 1 - requests / requests a week earlier: at most 1 (and at least -10), not %s", metric, fmtNum(v))
			return false
		}
	case MetricP50, MetricP95, MetricP99:
		if v < 0 || v > event.MaxResponseTimeMS {
			p.add(n, field, "%s is a response time in ms between 0 and %d, not %s", metric, event.MaxResponseTimeMS, fmtNum(v))
			return false
		}
	case MetricThroughput:
		if v < 0 {
			p.add(n, field, "%s is requests per second, at least 0, not %s", metric, fmtNum(v))
			return false
		}
	}
	return true
}

// require reports each of fields missing from m, at the mapping n.
func (p *parser) require(n *yaml.Node, path string, m map[string]*yaml.Node, fields ...string) {
	for _, f := range fields {
		if m[f] == nil {
			p.add(n, path+"."+f, "is required")
		}
	}
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	return n
}

// mapping checks that n is a mapping with only the known keys, each once,
// and returns its values by key.
func (p *parser) mapping(n *yaml.Node, path string, known ...string) (map[string]*yaml.Node, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		p.add(n, orTop(path), "must be a mapping of %s, not %s", strings.Join(known, ", "), describe(n))
		return nil, false
	}
	out := map[string]*yaml.Node{}
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.add(k, orTop(path), "keys must be plain names, not %s", describe(k))
			continue
		}
		field := join(path, k.Value)
		if line, dup := first[k.Value]; dup {
			p.add(k, field, "is given twice (first on line %d)", line)
			continue
		}
		first[k.Value] = k.Line
		if !slices.Contains(known, k.Value) {
			p.add(k, field, "is not a known field%s (known: %s)", suggest(k.Value, known), strings.Join(known, ", "))
			continue
		}
		out[k.Value] = v
	}
	return out, true
}

// sequence returns the items of a list; an absent list (nil) is empty.
func (p *parser) sequence(n *yaml.Node, path string) []*yaml.Node {
	n = resolve(n)
	if n == nil || n.ShortTag() == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.add(n, path, "must be a list of rules, not %s", describe(n))
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = resolve(c)
	}
	return out
}

func (p *parser) str(n *yaml.Node, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.add(n, field, "must be a string, not %s", describe(n))
		return "", false
	}
	if !utf8.ValidString(n.Value) {
		p.add(n, field, "must be valid UTF-8")
		return "", false
	}
	return n.Value, true
}

func (p *parser) number(n *yaml.Node, field string) (float64, bool) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		p.add(n, field, "must be a number, not %s", describe(n))
		return 0, false
	}
	var f float64
	if err := n.Decode(&f); err != nil || !finite(f) {
		p.add(n, field, "must be a finite number, not %q", truncate(n.Value))
		return 0, false
	}
	return f, true
}

func (p *parser) integer(n *yaml.Node, field string) (int64, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		p.add(n, field, "must be an integer, not %s", describe(n))
		return 0, false
	}
	var i int64
	if err := n.Decode(&i); err != nil {
		p.add(n, field, "must be an integer that fits 64 bits, not %q", truncate(n.Value))
		return 0, false
	}
	return i, true
}

func (p *parser) duration(n *yaml.Node, field string) (time.Duration, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.add(n, field, "must be a duration such as 30s, 5m or 1h, not %s", describe(n))
		return 0, false
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		p.add(n, field, "%q is not a duration such as 30s, 5m or 1h", truncate(n.Value))
		return 0, false
	}
	return d, true
}

func (p *parser) enum(n *yaml.Node, field string, values ...string) (string, bool) {
	v, ok := p.str(n, field)
	if !ok {
		return "", false
	}
	if !slices.Contains(values, v) {
		p.add(n, field, "%q is not one of %s%s", truncate(v), strings.Join(values, ", "), suggest(v, values))
		return "", false
	}
	return v, true
}

// groupBy reads a list of distinct label names, each one of allowed.
func (p *parser) groupBy(n *yaml.Node, field string, allowed ...string) []string {
	out := []string{}
	if n.Kind != yaml.SequenceNode {
		p.add(n, field, "must be a list of %s, not %s", strings.Join(allowed, ", "), describe(n))
		return out
	}
	for i, c := range n.Content {
		c = resolve(c)
		f := fmt.Sprintf("%s[%d]", field, i)
		v, ok := p.enum(c, f, allowed...)
		if !ok {
			continue
		}
		if slices.Contains(out, v) {
			p.add(c, f, "%q is listed twice", v)
			continue
		}
		out = append(out, v)
	}
	// Groups follow the order of allowed, so that equal sets are equal.
	sort.Slice(out, func(i, j int) bool { return slices.Index(allowed, out[i]) < slices.Index(allowed, out[j]) })
	return out
}

func (p *parser) filters(n *yaml.Node, field string, allowed ...string) Filters {
	var f Filters
	all := []string{"service", "endpoint", "resource", "host", "component", "target"}
	if n.Kind != yaml.MappingNode {
		p.add(n, field, "must be a mapping of %s, not %s", strings.Join(allowed, ", "), describe(n))
		return f
	}
	m, _ := p.mapping(n, field, all...)
	for _, name := range all {
		v := m[name]
		if v == nil {
			continue
		}
		fn := field + "." + name
		if !slices.Contains(allowed, name) {
			p.add(v, fn, "does not apply here (filters of this rule: %s)", strings.Join(allowed, ", "))
			continue
		}
		s, ok := p.str(v, fn)
		if !ok {
			continue
		}
		switch name {
		case "service":
			if !event.ValidService(s) {
				p.add(v, fn, "%q is not a service name: 1-%d characters of a-z, 0-9, '_' or '-'", truncate(s), event.MaxServiceLen)
			}
			f.Service = s
		case "endpoint":
			if !strings.HasPrefix(s, "/") || len(s) > event.MaxEndpointLen || event.NormalizeEndpoint(s) != s {
				p.add(v, fn, "%q is not a route template: it starts with '/', has no query string, and writes ids as :id, e.g. /api/clients/:id", truncate(s))
			}
			f.Endpoint = s
		case "resource":
			if !slices.Contains(event.ResourceTypes, s) {
				p.add(v, fn, "%q is not one of %s", truncate(s), strings.Join(event.ResourceTypes, ", "))
			}
			f.Resource = s
		case "host":
			if s == "" || len(s) > 253 || strings.ToLower(s) != s {
				p.add(v, fn, "%q is not a host name (lower case, 1-253 characters)", truncate(s))
			}
			f.Host = s
		case "component":
			if !slices.Contains(event.Components, s) {
				p.add(v, fn, "%q is not one of %s", truncate(s), strings.Join(event.Components, ", "))
			}
			f.Component = s
		case "target":
			if s == "" || len(s) > 128 {
				p.add(v, fn, "must be 1-128 characters")
			}
			f.Target = s
		}
	}
	return f
}

// labels reads a mapping of label names to scalar values; names in taken
// are set by the rule's filters and groups and may not be given.
func (p *parser) labels(n *yaml.Node, field string, taken []string) map[string]string {
	if n.Kind != yaml.MappingNode {
		p.add(n, field, "must be a mapping of label names to values, not %s", describe(n))
		return nil
	}
	out := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		f := join(field, k.Value)
		switch {
		case k.Kind != yaml.ScalarNode || !labelPattern.MatchString(k.Value):
			p.add(k, f, "label names are 1-64 characters of a-z, 0-9 and '_', not starting with a digit")
		case slices.Contains(taken, k.Value):
			p.add(k, f, "is set by the rule's group_by or filters and cannot be given as a label")
		case hasKey(out, k.Value):
			p.add(k, f, "is given twice")
		case v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null":
			p.add(v, f, "must be a string, not %s", describe(v))
		case len(v.Value) > maxLabelValue || !utf8.ValidString(v.Value):
			p.add(v, f, "must be valid UTF-8 of at most %d bytes", maxLabelValue)
		default:
			out[k.Value] = v.Value
		}
	}
	if len(out) > maxLabels {
		p.add(n, field, "at most %d labels", maxLabels)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

func filterNames(f Filters) []string {
	var out []string
	f.Each(func(name, _ string) { out = append(out, name) })
	return out
}

// describe names the YAML type of n for error messages.
func describe(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!null":
		return "null"
	case "!!bool":
		return "true/false " + strconv.Quote(n.Value)
	case "!!int", "!!float":
		return "the number " + truncate(n.Value)
	case "!!str":
		return "the string " + strconv.Quote(truncate(n.Value))
	}
	return "a " + strings.TrimPrefix(n.ShortTag(), "!!")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orTop(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func truncate(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// suggest returns ` (did you mean "x"?)` when a known value is within two
// edits of v.
func suggest(v string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := distance(strings.ToLower(v), k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" || best == v {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance of a and b, capped for long input.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
