package app

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gopotency/gopotency/pkg/admin"
	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/idempotency"
)

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
