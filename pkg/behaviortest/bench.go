package behaviortest

// A front end's cost against a bare baseline, measured in one benchmark
// run so the ratios compare figures taken together (this was the package
// internal/overhead and mwtest's bench.go). storetest.Bench measures the
// stores on their own.

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchServe runs one operation with key through the thing measured and
// reports whether it answered as expected.
type BenchServe func(key string) bool

// BenchOverheadFunc runs, as sub-benchmarks of b: bare (a new key per
// operation), miss (guarded, a new key per operation: acquire, run,
// record) and replay (guarded, one key). miss and replay report their cost
// as a multiple of bare ("x-bare"); b logs the three together. Front ends
// that are not net/http handlers (Fiber, gRPC, functions) use it directly.
func BenchOverheadFunc(b *testing.B, bare, guarded BenchServe) {
	var ns [3]float64
	var seq atomic.Uint64 // keys stay new across -count repetitions
	fresh := func() string { return "miss-" + strconv.FormatUint(seq.Add(1), 10) }
	cases := []struct {
		name  string
		serve BenchServe
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

// BenchHandler is the handler the overhead benchmarks guard: it reads the
// body and answers 201 with a Location and a small JSON body, like a
// typical create endpoint.
var BenchHandler http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/orders/42")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(`{"id":42,"status":"created","amount":1250,"currency":"EUR"}`))
})

// BenchOverhead measures, in one run, bare (the framework serving
// BenchHandler) against guarded (the same with the middleware over the
// memory store): a miss (a new key per request: acquire, run, record) and
// a replay (one key), with their cost as a multiple of bare ("x-bare").
func BenchOverhead(b *testing.B, bare, guarded http.Handler) {
	BenchOverheadFunc(b, serve(b, bare), serve(b, guarded))
}

// serve sends one POST per call through h.
func serve(b *testing.B, h http.Handler) BenchServe {
	body := []byte(`{"item":"book","quantity":1,"amount":1250,"currency":"EUR"}`)
	rd := bytes.NewReader(body)
	req, err := http.NewRequest(http.MethodPost, "/orders", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.RequestURI = "/orders"
	req.Header.Set("Content-Type", "application/json")
	w := &discard{h: http.Header{}}
	return func(key string) bool {
		rd.Reset(body)
		req.Body, req.ContentLength = io.NopCloser(rd), int64(len(body))
		req.Header.Set("Idempotency-Key", key)
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, req)
		return w.code == http.StatusCreated
	}
}

// discard is a ResponseWriter that keeps only the status.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(code int)        { d.code = code }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
