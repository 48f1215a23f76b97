package app

import (
	"strings"

	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// warnUnsafeDeployment logs, at warn level, settings that run but do not
// keep the at-most-once promise once more than one process serves the
// traffic: the Dockerfile's default config and a forgotten GOPOTENCY_STORE
// end up here.
func (a *App) warnUnsafeDeployment() {
	if scheme, _, _ := strings.Cut(a.cfg.Store, "://"); !memstore.IsURLScheme(scheme) {
		return
	}
	const why = "keys live in this process only: with more than one replica a retry that reaches another replica runs again, and a restart forgets every key; use a shared store (redis://, postgres://) in a deployment"
	if a.cfg.StoreDefaulted {
		a.log.Warn("no store configured (GOPOTENCY_STORE, --store or store:), so memory:// is used: "+why, "store", a.cfg.Store)
		return
	}
	a.log.Warn("memory store: "+why, "store", a.cfg.Store)
}

// tlsMode names the ext_proc listener's transport for the startup log.
func (a *App) tlsMode() string {
	switch {
	case a.tls == nil:
		return "off"
	case a.cfg.GRPCTLS.ClientCAFile != "":
		return "mtls"
	}
	return "tls"
}
