package e2e

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/app"
	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/envoyconfig"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// TestBehaviourSuite runs the front-end behaviour suite (the README's table
// "What a client sees") through Envoy + the ext_proc server, on the memory store. The
// Redis run is in behaviour_redis_test.go.
func TestBehaviourSuite(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	runBehaviour(t, behaviortest.NewOutageStore(mem), mem.Close)
}

// TestBehaviourSuiteBodyFirst runs the suite through the body-first
// layout (envoy.body_first): keyed requests with a small body reach the
// server as one buffered body message with CEL attributes.
func TestBehaviourSuiteBodyFirst(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	runBehaviourLayout(t, behaviortest.NewOutageStore(mem), mem.Close, true)
}

func runBehaviour(t *testing.T, store *behaviortest.OutageStore, closeFn func() error) {
	runBehaviourLayout(t, store, closeFn, false)
}

func runBehaviourLayout(t *testing.T, store *behaviortest.OutageStore, closeFn func() error, bodyFirst bool) {
	routes := behaviortest.Routes()
	up := behaviortest.NewUpstream()
	s := startStack(t, stackOptions{
		upstream:  up,
		appOpts:   []app.Option{app.WithStore(store, closeFn)},
		configure: func(c *config.Config) { c.Policies = routePolicies(routes) },
		envoy:     behaviourEnvoy(t, routes, bodyFirst),
	})
	behaviortest.Run(t, behaviortest.Target{BaseURL: s.URL, Upstream: up, StoreOutage: store.Outage})
}

// routePolicies names each route's policy after its prefix.
func routePolicies(routes []behaviortest.Route) map[string]*idempotency.Policy {
	m := map[string]*idempotency.Policy{}
	for i := range routes {
		m[policyName(routes[i].PathPrefix)] = &routes[i].Policy
	}
	return m
}

func policyName(prefix string) string { return strings.Trim(prefix, "/") }

// behaviourEnvoy is the Envoy config the generator makes for the suite's
// routes, each naming its policy, on the shipped envoy section; other
// paths skip the filter.
func behaviourEnvoy(t *testing.T, routes []behaviortest.Route, bodyFirst bool) []byte {
	cfg, err := config.Load([]string{"--config", filepath.Join(root(t), "envoy", "gopotency.yaml")}, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	cfg.Policies = routePolicies(routes)
	e, err := cfg.RequireEnvoy()
	require.NoError(t, err)
	e.Routes, e.BodyFirst = nil, bodyFirst
	for _, r := range routes {
		e.Routes = append(e.Routes, config.EnvoyRoute{Prefix: r.PathPrefix, Policy: policyName(r.PathPrefix), Cluster: "app", Timeout: 30 * time.Second})
	}
	e.Routes = append(e.Routes, config.EnvoyRoute{Prefix: "/", Cluster: "app", Disabled: true})
	out, err := envoyconfig.Generate(cfg, "the behaviour suite's routes")
	require.NoError(t, err)
	return out
}
