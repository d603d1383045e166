package validate

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"time"
)

// Severities of an Issue: the spec's scale (its ValidationResult issues
// are critical, warning or info). SeverityCritical is splinter's ERROR; a
// run with a critical finding is not valid.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// legacySeverity is what SeverityCritical was called before Pulse adopted
// the spec's word; runs recorded then still say it (see History).
const legacySeverity = "error"

// Issue is one finding of a check.
type Issue struct {
	Lint           string `json:"lint"`                  // the check that found it, e.g. "unindexed_foreign_keys"
	Severity       string `json:"severity"`              // critical, warning or info (the spec's scale)
	Category       string `json:"category"`              // schema, permissions, performance or security
	Object         string `json:"object"`                // what it concerns: "public.orders", "queryid:42", "route GET /x"
	Message        string `json:"message"`               // what is wrong and why it matters
	Recommendation string `json:"recommendation"`        // the fix
	CacheKey       string `json:"cache_key"`             // hex SHA-256 of lint and object: stable, to acknowledge a finding
	Splinter       string `json:"splinter,omitempty"`    // splinter's lint (e.g. 0001_unindexed_foreign_keys) when it is one of Supabase's
	Remediation    string `json:"remediation,omitempty"` // where the fix is explained (Supabase's linter docs for splinter's lints)
	// Accepted is set when an admin accepted the finding
	// (POST /architecture/accepted) until a time not yet passed: it no
	// longer fails a run or a compliance control.
	Accepted *Acceptance `json:"accepted,omitempty"`
}

// cacheKey is the stable identity of a finding.
func cacheKey(lint, object string) string {
	h := sha256.Sum256([]byte(lint + "\x00" + object))
	return hex.EncodeToString(h[:])
}

// QueryPlan is the optimisation plan of one slow statement, in the spirit
// of the spec's DatabasePerformanceOptimizer.
type QueryPlan struct {
	QueryID    string    `json:"query_id"`
	Query      string    `json:"query"` // as normalised by pg_stat_statements, at most 2,000 characters
	Calls      int64     `json:"calls"`
	MeanMS     float64   `json:"mean_ms"`
	TotalMS    float64   `json:"total_ms"`
	Plan       *PlanInfo `json:"plan,omitempty"`
	PlanError  string    `json:"plan_error,omitempty"` // why there is no plan
	SeqScans   []SeqScan `json:"seq_scans,omitempty"`  // sequential scans of large tables in the plan
	Suggestion []string  `json:"suggested_indexes,omitempty"`
	Method     string    `json:"plan_method,omitempty"` // generic_plan (PG16+), prepared_generic (older) or plain
}

// PlanInfo summarises an EXPLAIN (FORMAT JSON) plan.
type PlanInfo struct {
	NodeType  string   `json:"node_type"` // of the top node
	TotalCost float64  `json:"total_cost"`
	PlanRows  float64  `json:"plan_rows"`
	Nodes     []string `json:"nodes"` // every node type, depth first
}

// SeqScan is a sequential scan in a plan.
type SeqScan struct {
	Table         string  `json:"table"` // schema.table
	EstimatedRows float64 `json:"estimated_rows"`
	Filter        string  `json:"filter,omitempty"`
}

// Result is the answer of POST /architecture/validate.
type Result struct {
	RunID             string        `json:"run_id"`
	Valid             bool          `json:"valid"`
	Component         string        `json:"component"`
	ValidationType    string        `json:"validation_type"`
	StrictMode        bool          `json:"strict_mode"`
	Issues            []Issue       `json:"issues"`
	Recommendations   []string      `json:"recommendations"`
	OptimizationPlans []QueryPlan   `json:"optimization_plans,omitempty"`
	ConnectionPool    *PoolSettings `json:"connection_pool,omitempty"`
	CheckedAt         time.Time     `json:"checked_at"`
	DurationMS        float64       `json:"duration_ms"`
	Recorded          bool          `json:"recorded"` // stored in the validation history
	// NotApplicable are the lints this run did not apply, and why (a
	// Supabase schema or extension the database lacks, or a lint Pulse
	// does not check).
	NotApplicable []NotApplicable `json:"not_applicable,omitempty"`
}

// sevRank orders severities, worst first.
func sevRank(s string) int {
	switch s {
	case SeverityCritical:
		return 0
	case SeverityWarning:
		return 1
	}
	return 2
}

// valid says whether issues pass: nothing critical, and in strict mode no warning;
// accepted findings do not count.
func valid(issues []Issue, strict bool) bool {
	for _, is := range issues {
		if is.Accepted != nil {
			continue
		}
		if is.Severity == SeverityCritical || strict && is.Severity == SeverityWarning {
			return false
		}
	}
	return true
}

// finish sorts issues worst first (stable within a severity), drops exact
// duplicates and lists the distinct recommendations in that order.
func finish(issues []Issue) ([]Issue, []string) {
	slices.SortStableFunc(issues, func(a, b Issue) int { return sevRank(a.Severity) - sevRank(b.Severity) })
	seen := map[string]bool{}
	out := make([]Issue, 0, len(issues))
	var recs []string
	seenRec := map[string]bool{}
	for _, is := range issues {
		k := is.CacheKey + "\x00" + is.Message
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, is)
		if is.Recommendation != "" && !seenRec[is.Recommendation] {
			seenRec[is.Recommendation] = true
			recs = append(recs, is.Recommendation)
		}
	}
	if recs == nil {
		recs = []string{}
	}
	return out, recs
}

// findings collects the issues of one check run.
type findings struct {
	category      string
	issues        []Issue
	notApplicable []NotApplicable
}

// add adds a finding; a lint of the catalogue gets its splinter name and
// remediation.
func (f *findings) add(lint, severity, object, message, recommendation string) {
	l := catalogue[lint]
	f.issues = append(f.issues, Issue{Lint: lint, Severity: severity, Category: f.category, Object: object,
		Message: message, Recommendation: recommendation, CacheKey: cacheKey(lint, object),
		Splinter: l.Splinter, Remediation: l.Remediation})
}

// skip notes that lint did not apply, and why.
func (f *findings) skip(lint, reason string) {
	f.notApplicable = append(f.notApplicable, NotApplicable{Lint: lint, Splinter: splinterOf(lint), Reason: reason})
}
