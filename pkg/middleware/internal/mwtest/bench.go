package mwtest

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
)

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
// a replay (one key). The miss and replay lines report their cost as a
// multiple of bare ("x-bare"); the parent logs the three together.
func BenchOverhead(b *testing.B, bare, guarded http.Handler) {
	var ns [3]float64
	var seq atomic.Uint64 // keys stay new across -count repetitions
	fresh := func() string { return "miss-" + strconv.FormatUint(seq.Add(1), 10) }
	cases := []struct {
		name string
		h    http.Handler
		key  func() string
	}{
		{"bare", bare, fresh},
		{"miss", guarded, fresh},
		{"replay", guarded, func() string { return "replay" }},
	}
	for c, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			ns[c] = serveLoop(b, tc.h, tc.key)
			if c > 0 && ns[0] > 0 {
				b.ReportMetric(ns[c]/ns[0], "x-bare")
			}
		})
	}
	if ns[0] > 0 {
		b.Logf("bare %.0f ns/op; miss %.0f ns/op (%.2fx); replay %.0f ns/op (%.2fx)", ns[0], ns[1], ns[1]/ns[0], ns[2], ns[2]/ns[0])
	}
}

// serveLoop serves one POST per iteration and returns ns per request.
func serveLoop(b *testing.B, h http.Handler, key func() string) float64 {
	b.ReportAllocs()
	body := []byte(`{"item":"book","quantity":1,"amount":1250,"currency":"EUR"}`)
	rd := bytes.NewReader(body)
	req, err := http.NewRequest(http.MethodPost, "/orders", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.RequestURI = "/orders"
	req.Header.Set("Content-Type", "application/json")
	w := &discard{h: http.Header{}}
	n := 0
	for ; b.Loop(); n++ {
		rd.Reset(body)
		req.Body, req.ContentLength = io.NopCloser(rd), int64(len(body))
		req.Header.Set("Idempotency-Key", key())
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, req)
		if w.code != http.StatusCreated {
			b.Fatalf("answer %d, want 201", w.code)
		}
	}
	return float64(b.Elapsed().Nanoseconds()) / float64(max(n, 1))
}

// discard is a ResponseWriter that keeps only the status.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(code int)        { d.code = code }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
