package mwtest

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/gopotency/gopotency/pkg/internal/overhead"
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
// a replay (one key), with their cost as a multiple of bare ("x-bare").
func BenchOverhead(b *testing.B, bare, guarded http.Handler) {
	overhead.Compare(b, serve(b, bare), serve(b, guarded))
}

// serve sends one POST per call through h.
func serve(b *testing.B, h http.Handler) overhead.Serve {
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
