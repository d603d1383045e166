package schema

import (
	"strings"
	"testing"
)

func TestReplicated(t *testing.T) {
	f := func(stmt string, fill bool, want string) {
		t.Helper()
		if got := Replicated(stmt, "pulse", fill); got != want {
			t.Errorf("Replicated(%q, fill=%v)\ngot  %q\nwant %q", stmt, fill, got, want)
		}
	}
	path := "'/clickhouse/tables/{shard}/pulse/%s', '{replica}'"
	p := func(table string) string { return strings.Replace(path, "%s", table, 1) }

	f("CREATE TABLE IF NOT EXISTS `pulse`.requests (ts DateTime) ENGINE = MergeTree()\nORDER BY ts", true,
		"CREATE TABLE IF NOT EXISTS `pulse`.requests (ts DateTime) ENGINE = ReplicatedMergeTree("+p("requests")+")\nORDER BY ts")
	f("CREATE TABLE IF NOT EXISTS `pulse`.r1m (m DateTime) ENGINE = AggregatingMergeTree()\nORDER BY m", false,
		"CREATE TABLE IF NOT EXISTS `pulse`.r1m (m DateTime) ENGINE = ReplicatedAggregatingMergeTree("+p("r1m")+")\nORDER BY m")
	fill := "CREATE TABLE IF NOT EXISTS `pulse`.r5m\nENGINE = AggregatingMergeTree()\nORDER BY start\nAS SELECT\n    start\nFROM `pulse`.requests\nWHERE ts >= now() - 3\nGROUP BY start"
	replicated := strings.Replace(fill, "AggregatingMergeTree()", "ReplicatedAggregatingMergeTree("+p("r5m")+")", 1)
	f(fill, true, replicated)
	f(fill, false, strings.Replace(replicated, "WHERE ts", "WHERE 0 AND ts", 1))
	// Views and anything else stay as they are.
	view := "CREATE MATERIALIZED VIEW IF NOT EXISTS `pulse`.r1m_mv TO `pulse`.r1m AS\nSELECT m FROM `pulse`.requests\nWHERE 1"
	f(view, false, view)
}

// TestReplicatedMigrations checks every migration's statements: each table
// it creates is Replicated*, and each fill is emptied where fill is false.
func TestReplicatedMigrations(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		for _, stmt := range m.Statements {
			stmt = strings.ReplaceAll(stmt, "{{db}}", "`pulse`")
			got := Replicated(stmt, "pulse", false)
			if strings.HasPrefix(stmt, "CREATE TABLE") && !strings.Contains(got, "ENGINE = Replicated") {
				t.Errorf("migration %d: table not replicated:\n%s", m.Version, got)
			}
			if strings.Contains(stmt, "\nAS SELECT\n") && !strings.Contains(got, "\nWHERE 0 AND ") {
				t.Errorf("migration %d: fill not emptied:\n%s", m.Version, got)
			}
		}
	}
}
