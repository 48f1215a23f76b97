// The admin listener: metrics, health, pprof and the operator API
// (docs/admin.md), whose settings are config.AdminAPI and whose client is
// the admin subcommand.

package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gopotency/gopotency/pkg/admin"
	"github.com/gopotency/gopotency/pkg/config"
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

// newAdminAPI builds the operator API (docs/admin.md) from cfg.Admin. It is
// served on the admin listener only, never on the ext_proc port, and is
// off (its routes answer 404) unless a token is configured.
func newAdminAPI(cfg *config.Config, store idempotency.Store, log *slog.Logger, reg prometheus.Registerer) (*admin.API, error) {
	var toks *admin.Tokens
	var err error
	switch {
	case cfg.Admin.TokenFile != "":
		toks, err = admin.TokenFile(cfg.Admin.TokenFile, log)
	case cfg.Admin.Token != "":
		toks, err = admin.StaticToken(cfg.Admin.Token)
	}
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	return admin.New(admin.Options{Store: store, Default: &cfg.Default, Policies: cfg.Policies, Tokens: toks, Logger: log, Registerer: reg})
}

// logAdminAPI says at start whether the admin API is on, and with which
// tokens (by id; never the tokens).
func (a *App) logAdminAPI() {
	if !a.adminAPI.Enabled() {
		a.log.Info("admin API off: set admin.token_file (--admin-token-file, GOPOTENCY_ADMIN_TOKEN_FILE) or GOPOTENCY_ADMIN_TOKEN to turn it on", "admin_addr", a.AdminAddr())
		return
	}
	toks := a.adminAPI.Tokens()
	ids, _ := toks.IDs()
	a.log.Info("admin API on: inspect and purge keys at "+admin.RouteInspect+" and "+admin.RoutePurge+"; the admin listener is plain HTTP, keep it on loopback or inside the mesh",
		"admin_addr", a.AdminAddr(), "token_source", toks.Describe(), "token_ids", ids)
}

// AdminCommand is the subcommand name: `gopotency admin`, the admin API's
// client (admin.CLI).
const AdminCommand = "admin"
