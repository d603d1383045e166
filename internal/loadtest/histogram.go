package loadtest

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram records latencies in logarithmic buckets, like HdrHistogram:
// every power of two of microseconds is split into subBuckets linear
// buckets, so a quantile is off by at most 1/(2*subBuckets) (0.4%) of its
// value, at any magnitude, in a fixed 59 KiB. Record and the readers are
// safe for concurrent use; a reader running beside Record sees each
// recording whole or not at all, but not necessarily all of them.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	n      atomic.Uint64
	sumUS  atomic.Uint64
	maxUS  atomic.Uint64
}

const (
	subBits    = 7
	subBuckets = 1 << subBits // linear buckets per power of two
	linear     = 2 * subBuckets
	numBuckets = linear + (64-subBits-1)*subBuckets
)

// bucketOf is the bucket of v microseconds.
func bucketOf(v uint64) int {
	if v < linear {
		return int(v)
	}
	shift := bits.Len64(v) - (subBits + 1)
	mant := v >> shift // in [subBuckets, 2*subBuckets)
	return linear + (shift-1)*subBuckets + int(mant-subBuckets)
}

// bucketRange is the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < linear {
		return uint64(i), uint64(i)
	}
	shift := (i-linear)/subBuckets + 1
	mant := uint64((i-linear)%subBuckets + subBuckets)
	return mant << shift, (mant+1)<<shift - 1
}

// Record adds one latency; negative latencies count as zero.
func (h *Histogram) Record(d time.Duration) {
	us := uint64(max(d.Microseconds(), 0))
	h.counts[bucketOf(us)].Add(1)
	h.n.Add(1)
	h.sumUS.Add(us)
	for {
		m := h.maxUS.Load()
		if us <= m || h.maxUS.CompareAndSwap(m, us) {
			return
		}
	}
}

// Count is the number of latencies recorded.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Mean is the average latency, exact to the microsecond; 0 when empty.
func (h *Histogram) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sumUS.Load()/n) * time.Microsecond
}

// Max is the largest latency recorded, exact to the microsecond.
func (h *Histogram) Max() time.Duration { return time.Duration(h.maxUS.Load()) * time.Microsecond }

// Quantile returns the latency below or at which a fraction q (0..1) of
// the recordings lie: the middle of the bucket holding the ceil(q*n)-th
// smallest, never above Max. 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.999999)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := bucketRange(i)
			return time.Duration(min(lo+(hi-lo)/2, h.maxUS.Load())) * time.Microsecond
		}
	}
	return h.Max()
}
