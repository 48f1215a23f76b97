package main

import (
	"strings"
	"testing"
)

func soakOf(rss []int64, goroutines []int64, p99 []float64) *soakReport {
	r := &soakReport{Workers: 16, Forwarded: 100, UpstreamCalls: 100}
	for i := range rss {
		r.Slices = append(r.Slices, soakSlice{P99Ms: p99[i], After: soakSample{RSSBytes: rss[i] << 20, Goroutines: goroutines[i]}})
	}
	return r
}

// The soak flags growth past the warm state (the end of minute 1), a p99
// that doubles, errors, and application calls that do not match; a flat
// run is not flagged.
func TestSoakFlags(t *testing.T) {
	flat := soakOf([]int64{60, 62, 59, 61}, []int64{20, 21, 20, 22}, []float64{30, 35, 28, 33})
	if fl := flat.flags(); len(fl) != 0 {
		t.Fatalf("flat soak flagged: %q", fl)
	}
	for name, tc := range map[string]struct {
		r    *soakReport
		want string
	}{
		"rss":        {soakOf([]int64{60, 120, 180, 240}, []int64{20, 20, 20, 20}, []float64{30, 30, 30, 30}), "RSS grew from 60.0 MiB to 240.0 MiB"},
		"goroutines": {soakOf([]int64{60, 60, 60, 60}, []int64{20, 60, 90, 120}, []float64{30, 30, 30, 30}), "goroutines grew from 20 to 120"},
		"p99":        {soakOf([]int64{60, 60, 60, 60}, []int64{20, 20, 20, 20}, []float64{30, 40, 50, 70}), "p99 rose"},
	} {
		fl := tc.r.flags()
		if len(fl) != 1 || !strings.Contains(fl[0], tc.want) {
			t.Errorf("%s: flags %q, want one with %q", name, fl, tc.want)
		}
	}
	calls := soakOf([]int64{60, 60, 60}, []int64{20, 20, 20}, []float64{30, 30, 30})
	calls.UpstreamCalls = 101
	if fl := calls.flags(); len(fl) != 1 || !strings.Contains(fl[0], "application ran 101 times") {
		t.Errorf("calls: flags %q", fl)
	}
	errs := soakOf([]int64{60, 60, 60}, []int64{20, 20, 20}, []float64{30, 30, 30})
	errs.Slices[1].Errors = 3
	if fl := errs.flags(); len(fl) != 1 || !strings.Contains(fl[0], "3 requests failed") {
		t.Errorf("errors: flags %q", fl)
	}
	if fl := (&soakReport{}).flags(); len(fl) != 1 {
		t.Errorf("empty soak: flags %q", fl)
	}
}
