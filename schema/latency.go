package schema

import "math"

// The latency column of the rollups requests_1m_hist, requests_5m,
// requests_1h and the _svc and _ep rollups of migration 0010 is a
// histogram of response times in bins 1.5% wide on a log scale, kept as a
// quantilesTiming state of each request's bin code; migration 0005 defines
// the bins and codes. Merging such states costs a fraction of merging
// t-digests, and a percentile read from them is as exact as the bins:
// quantilesTiming returns a code of the bin that holds the requested rank,
// and LatencyMS reads the bin back as its geometric middle, within 0.75% of
// every value in it.

// LatencyQuantiles merges latency states into the bins holding P50, P95
// and P99, as Array(Float64) (bin numbers, in the order of the latencies
// they hold). The rank is chosen as quantileExact chooses its element:
// index floor(level * n) of the sorted sample. quantilesTiming picks rank
// ceil(level * n) (1-based) once a state holds more than about 5,670
// values, one rank lower when level * n is a whole number; levels raised by
// 1e-14 make both agree for any count below 10^12 (the levels in the
// column's type play no part in a merge). It then answers the code
// 1024 + 16 * bin give or take 8, which the rounding undoes (in floats, so
// that the NaN of no requests stays NaN rather than failing the query).
const LatencyQuantiles = "arrayMap(c -> floor((c + 8) / 16) - 64, " +
	"quantilesTimingMerge(0.50000000000001, 0.95000000000001, 0.99000000000001)(latency))"

const (
	latencyFloor = 0.001 // ms: where bin 1 starts; bin 0 holds less
	latencyBase  = 1.015 // ratio of a bin's upper to its lower bound
)

// LatencyMS is the response time in ms that a bin from LatencyQuantiles
// stands for: 0 for bin 0 (below 0.001 ms), else the geometric middle of the
// bin; NaN for NaN (no requests).
func LatencyMS(bin float64) float64 {
	if bin <= 0 {
		return 0
	}
	return latencyFloor * math.Pow(latencyBase, bin-0.5)
}
