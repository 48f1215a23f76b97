// Package overhead measures a front end's cost against a bare baseline in
// one benchmark run, so the ratios compare figures taken together.
package overhead

import (
	"strconv"
	"sync/atomic"
	"testing"
)

// Serve runs one operation with key through the thing measured and
// reports whether it answered as expected.
type Serve func(key string) bool

// Compare runs, as sub-benchmarks of b: bare (a new key per operation),
// miss (guarded, a new key per operation: acquire, run, record) and replay
// (guarded, one key). miss and replay report their cost as a multiple of
// bare ("x-bare"); b logs the three together.
func Compare(b *testing.B, bare, guarded Serve) {
	var ns [3]float64
	var seq atomic.Uint64 // keys stay new across -count repetitions
	fresh := func() string { return "miss-" + strconv.FormatUint(seq.Add(1), 10) }
	cases := []struct {
		name  string
		serve Serve
		key   func() string
	}{
		{"bare", bare, fresh},
		{"miss", guarded, fresh},
		{"replay", guarded, func() string { return "replay" }},
	}
	for c, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for ; b.Loop(); n++ {
				if !tc.serve(tc.key()) {
					b.Fatalf("%s: unexpected answer", tc.name)
				}
			}
			ns[c] = float64(b.Elapsed().Nanoseconds()) / float64(max(n, 1))
			if c > 0 && ns[0] > 0 {
				b.ReportMetric(ns[c]/ns[0], "x-bare")
			}
		})
	}
	if ns[0] > 0 {
		b.Logf("bare %.0f ns/op; miss %.0f ns/op (%.2fx); replay %.0f ns/op (%.2fx)", ns[0], ns[1], ns[1]/ns[0], ns[2], ns[2]/ns[0])
	}
}
