package validate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// maxQueryText bounds the statement text shown in findings and plans.
const maxQueryText = 2000

// checkSlowQueries reports the statements of pg_stat_statements whose mean
// time exceeds the threshold, each with an optimisation plan, or says
// exactly why it cannot.
func checkSlowQueries(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var extSchema string
	err := tx.QueryRow(ctx, marker+`SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
		WHERE e.extname = 'pg_stat_statements'`).Scan(&extSchema)
	if errors.Is(err, pgx.ErrNoRows) {
		s.f.add("pg_stat_statements_missing", SeverityInfo, "extension pg_stat_statements",
			"The pg_stat_statements extension is not installed in this database, so slow queries cannot be found.",
			"Add pg_stat_statements to shared_preload_libraries (Supabase has it) and run CREATE EXTENSION pg_stat_statements SCHEMA extensions;")
		return nil
	}
	if err != nil {
		return err
	}
	if !s.superuser && !s.stats {
		return nil // said by checkStatsPrivilege
	}
	mean, total := "mean_exec_time", "total_exec_time"
	if s.version < 130000 {
		mean, total = "mean_time", "total_time"
	}
	type stmt struct {
		id             string
		query          string
		calls          int64
		meanMS, totalM float64
	}
	var slow []stmt
	var st stmt
	err = rows(ctx, tx, `SELECT queryid::text, query, calls, `+mean+`, `+total+` FROM `+pgIdent(extSchema, "pg_stat_statements")+`
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND `+mean+` > $1
		  AND query NOT LIKE '/* pulse-validate */%'
		ORDER BY `+mean+` DESC LIMIT $2`, []any{msOf(s.v.cfg.SlowQueryThreshold), s.v.cfg.MaxSlowQueries}, func() error {
		slow = append(slow, st)
		return nil
	}, &st.id, &st.query, &st.calls, &st.meanMS, &st.totalM)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55000" {
		s.f.add("pg_stat_statements_not_loaded", SeverityWarning, "extension pg_stat_statements",
			"The pg_stat_statements extension is installed but not loaded (it must be in shared_preload_libraries), so slow queries cannot be found.",
			"Add pg_stat_statements to shared_preload_libraries in postgresql.conf and restart Postgres.")
		return nil
	}
	if err != nil {
		return err
	}
	for _, st := range slow {
		p := QueryPlan{QueryID: st.id, Query: shortSQL(st.query), Calls: st.calls, MeanMS: round3(st.meanMS), TotalMS: round3(st.totalM)}
		s.explain(ctx, tx, st.query, &p)
		s.plans = append(s.plans, p)
		rec := "Look at the statement's plan (optimization_plans) and index what it filters on."
		if len(p.Suggestion) > 0 {
			rec = strings.Join(p.Suggestion, " ")
		}
		s.f.add("slow_query", SeverityWarning, "queryid:"+st.id,
			fmt.Sprintf("Statement %s takes %.0f ms on average over %d calls (threshold %.0f ms): %s", st.id, st.meanMS, st.calls, msOf(s.v.cfg.SlowQueryThreshold), oneLine(p.Query, 300)),
			rec)
	}
	return nil
}

var (
	sqlLiteral  = regexp.MustCompile(`'(?:[^']|'')*'`)
	blank       = regexp.MustCompile(`\s+`)
	placeholder = regexp.MustCompile(`\$([0-9]+)`)
	intoWord    = regexp.MustCompile(`(?i)\binto\b`)
	planSeq     atomic.Uint64
)

// shortSQL is a statement's text to show: string literals pg_stat_statements
// could not normalise replaced by '?', at most maxQueryText characters.
func shortSQL(q string) string {
	q = sqlLiteral.ReplaceAllString(q, "'?'")
	if r := []rune(q); len(r) > maxQueryText {
		q = string(r[:maxQueryText]) + "…"
	}
	return q
}

func oneLine(q string, n int) string {
	q = strings.TrimSpace(blank.ReplaceAllString(q, " "))
	if r := []rune(q); len(r) > n {
		q = string(r[:n]) + "…"
	}
	return q
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// explainable says why a statement must not be explained, or "" when it is
// a single plain SELECT: it starts with SELECT (after comments), holds no
// semicolon (one statement) and no INTO (SELECT INTO creates a table).
func explainable(q string) string {
	t := strings.TrimSpace(q)
	for {
		switch {
		case strings.HasPrefix(t, "--"):
			_, rest, _ := strings.Cut(t, "\n")
			t = strings.TrimSpace(rest)
			continue
		case strings.HasPrefix(t, "/*"):
			_, rest, _ := strings.Cut(t, "*/")
			t = strings.TrimSpace(rest)
			continue
		}
		break
	}
	switch {
	case strings.Contains(q, "<insufficient privilege>"):
		return "its text is hidden from the validator's role"
	case len(t) < 7 || !strings.EqualFold(t[:6], "select") || identByte(lowerByte(t[6])):
		return "only plain SELECT statements are explained"
	case strings.Contains(q, ";"):
		return "only single statements are explained"
	case intoWord.MatchString(q):
		return "SELECT INTO is not explained"
	}
	return ""
}

func lowerByte(b byte) byte {
	if b >= 'A' && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// placeholders returns the highest $n placeholder of a normalised statement.
func placeholders(q string) int {
	n := 0
	for _, m := range placeholder.FindAllStringSubmatch(q, -1) {
		if v, err := strconv.Atoi(m[1]); err == nil && v > n {
			n = v
		}
	}
	return n
}

// explainStatements returns the statements that show the generic plan of
// q, a statement with n parameters, on a server of the given version, and
// the method's name. EXPLAIN is never given ANALYZE: nothing is executed.
// PostgreSQL 16 has EXPLAIN (GENERIC_PLAN); before it the statement is
// prepared and its forced generic plan explained with NULL parameters.
// prepare, explain and deallocate run in that order; prepare and
// deallocate are empty when not needed.
func explainStatements(q string, n, version int, name string) (prepare, explain, deallocate, method string) {
	switch {
	case n == 0:
		return "", marker + "EXPLAIN (VERBOSE, FORMAT JSON) " + q, "", "plain"
	case version >= 160000:
		return "", marker + "EXPLAIN (GENERIC_PLAN, VERBOSE, FORMAT JSON) " + q, "", "generic_plan"
	}
	nulls := strings.TrimSuffix(strings.Repeat("NULL, ", n), ", ")
	prepare = marker + "SET LOCAL plan_cache_mode = force_generic_plan; PREPARE " + pgIdent(name) + " AS " + q
	return prepare, marker + "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE " + pgIdent(name) + "(" + nulls + ")", "DEALLOCATE " + pgIdent(name), "prepared_generic"
}

// explain fills p with the plan of q, or with why there is none. It runs
// inside a savepoint so that a failure leaves tx usable.
func (s *dbSession) explain(ctx context.Context, tx pgx.Tx, q string, p *QueryPlan) {
	if why := explainable(q); why != "" {
		p.PlanError = why
		return
	}
	n := placeholders(q)
	if n > 100 {
		p.PlanError = "too many parameters to explain"
		return
	}
	name := fmt.Sprintf("pulse_validate_plan_%d", planSeq.Add(1))
	prepare, explain, deallocate, method := explainStatements(q, n, s.version, name)
	p.Method = method
	sp, err := tx.Begin(ctx)
	if err != nil {
		p.PlanError = "the plan could not be computed (" + cause(err) + ")"
		return
	}
	pg := tx.Conn().PgConn()
	var out []*pgconn.Result
	prepared := false
	if prepare != "" {
		_, err = pg.Exec(ctx, prepare).ReadAll()
		prepared = err == nil
	}
	if err == nil {
		out, err = pg.Exec(ctx, explain).ReadAll()
	}
	_ = sp.Rollback(ctx)
	if prepared {
		// PREPARE is not transactional: the statement outlives the
		// savepoint unless deallocated.
		_, _ = pg.Exec(ctx, marker+deallocate).ReadAll()
	}
	if err != nil {
		if isPrivilegeError(err) {
			p.PlanError = "the validator's role may not read a table of this statement (permission denied)"
			return
		}
		p.PlanError = "the plan could not be computed (" + cause(err) + ")"
		return
	}
	if len(out) == 0 || len(out[len(out)-1].Rows) == 0 {
		p.PlanError = "the plan could not be computed (empty answer)"
		return
	}
	s.summarise(ctx, tx, out[len(out)-1].Rows[0][0], p)
}

// planNode is a node of EXPLAIN (FORMAT JSON).
type planNode struct {
	NodeType  string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	Schema    string     `json:"Schema"`
	Filter    string     `json:"Filter"`
	PlanRows  float64    `json:"Plan Rows"`
	TotalCost float64    `json:"Total Cost"`
	Plans     []planNode `json:"Plans"`
}

// summarise reads an EXPLAIN (FORMAT JSON) answer into p: the plan
// summary, the sequential scans of tables with at least LargeTableRows
// estimated rows, and an index for each such scan that filters on columns.
func (s *dbSession) summarise(ctx context.Context, tx pgx.Tx, raw []byte, p *QueryPlan) {
	var doc []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc) == 0 {
		p.PlanError = "the plan could not be read"
		return
	}
	root := doc[0].Plan
	info := &PlanInfo{NodeType: root.NodeType, TotalCost: root.TotalCost, PlanRows: root.PlanRows}
	var scans []planNode
	var walk func(n planNode)
	walk = func(n planNode) {
		info.Nodes = append(info.Nodes, n.NodeType)
		if n.NodeType == "Seq Scan" && n.Relation != "" {
			scans = append(scans, n)
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(root)
	p.Plan = info
	for _, sc := range scans {
		var rowsEst float64
		var cols []string
		// The relation's name comes from the catalogue: quoted before it
		// is parsed again by to_regclass.
		err := tx.QueryRow(ctx, marker+`SELECT c.reltuples::float8,
				array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)
			FROM pg_class c WHERE c.oid = to_regclass($1)`, pgIdent(sc.Schema, sc.Relation)).Scan(&rowsEst, &cols)
		if err != nil || rowsEst < float64(s.v.cfg.LargeTableRows) {
			continue
		}
		p.SeqScans = append(p.SeqScans, SeqScan{Table: qualified(sc.Schema, sc.Relation), EstimatedRows: rowsEst, Filter: sc.Filter})
		if idx := filterColumns(sc.Filter, cols); len(idx) > 0 {
			sug := fmt.Sprintf("CREATE INDEX CONCURRENTLY ON %s (%s);", pgIdent(sc.Schema, sc.Relation), identList(idx))
			if !slices.Contains(p.Suggestion, sug) {
				p.Suggestion = append(p.Suggestion, sug)
			}
		}
	}
}

var identToken = regexp.MustCompile(`"((?:[^"]|"")+)"|[A-Za-z_][A-Za-z0-9_$]*`)

// filterColumns returns the columns of cols a plan's Filter compares, those
// compared with = first, at most three: the columns of a btree index that
// would replace the scan.
func filterColumns(filter string, cols []string) []string {
	var eq, other []string
	for _, loc := range identToken.FindAllStringSubmatchIndex(filter, -1) {
		tok := filter[loc[0]:loc[1]]
		if loc[2] >= 0 {
			tok = strings.ReplaceAll(filter[loc[2]:loc[3]], `""`, `"`)
		}
		if loc[0] > 0 && filter[loc[0]-1] == ':' || loc[1] < len(filter) && filter[loc[1]] == '.' { // a type cast (::text) or a qualifier (t.)
			continue
		}
		if !slices.Contains(cols, tok) || slices.Contains(eq, tok) || slices.Contains(other, tok) {
			continue
		}
		rest := strings.TrimLeft(filter[loc[1]:], " )")
		if i := strings.Index(rest, "::"); i == 0 {
			rest = strings.TrimLeft(strings.TrimLeft(rest[2:], `abcdefghijklmnopqrstuvwxyz_ "`), " )")
		}
		if strings.HasPrefix(rest, "= ") {
			eq = append(eq, tok)
		} else {
			other = append(other, tok)
		}
	}
	out := append(eq, other...)
	if len(out) > 3 {
		out = out[:3]
	}
	return out
}
