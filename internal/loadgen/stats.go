package loadgen

import (
	"math"
	"time"
)

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// latencies sorted ascending: the smallest value with at least p% of the
// values at or below it. It returns 0 for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 || p <= 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// Summary condenses a Result.
type Summary struct {
	Requests int
	OK       int
	Errors   int
	Elapsed  time.Duration
	RPS      float64 // accepted responses per second
	P50      time.Duration
	P99      time.Duration
	Max      time.Duration
}

// Summarize computes throughput and percentiles.
func (r *Result) Summarize() Summary {
	s := Summary{Requests: r.Requests, OK: len(r.Latencies), Errors: r.Errors, Elapsed: r.Elapsed,
		P50: Percentile(r.Latencies, 50), P99: Percentile(r.Latencies, 99)}
	if n := len(r.Latencies); n > 0 {
		s.Max = r.Latencies[n-1]
	}
	if r.Elapsed > 0 {
		s.RPS = float64(s.OK) / r.Elapsed.Seconds()
	}
	return s
}
