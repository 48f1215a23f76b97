package app

import (
	"context"
	"errors"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gopotency/gopotency/pkg/admin"
	"github.com/gopotency/gopotency/pkg/idempotency"
)

// readyProbeKey is a storage key no request can produce (storage keys are
// base64url SHA-256 digests, never containing '!').
const readyProbeKey = "gopotency!readiness-probe"

func (a *App) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(admin.Prefix, a.adminAPI) // off unless a token is configured
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if a.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		// A read of a key that cannot exist proves the store answers.
		if _, err := a.store.Get(ctx, readyProbeKey); err != nil && !errors.Is(err, idempotency.ErrNotFound) {
			a.log.Warn("readiness: store unreachable", "error", err)
			http.Error(w, "store unreachable", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
		if a.durability != "" {
			_, _ = w.Write([]byte("durability at start: " + a.durability + "\n"))
		}
	})
	if a.cfg.Pprof {
		// Opt-in only: profiles expose internals and cost CPU while taken.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}
