package main

import "testing"

// TestClickHouseOutage stops the ClickHouse server for 30 s while events
// keep arriving over HTTP: the edge must keep answering 202 throughout,
// and once the server is back every event must be stored exactly once
// (see faultClickHouseStopped).
func TestClickHouseOutage(t *testing.T) { assertTally(t, faultClickHouseStopped(t, 1)) }
