package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/app"
	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// TestBehaviourSuite runs the front-end behaviour suite (the table of
// DESIGN.md) through Envoy + the ext_proc server, on the memory store. The
// Redis run is in behaviour_redis_test.go.
func TestBehaviourSuite(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	runBehaviour(t, behaviortest.NewOutageStore(mem), mem.Close)
}

func runBehaviour(t *testing.T, store *behaviortest.OutageStore, closeFn func() error) {
	routes := behaviortest.Routes()
	up := behaviortest.NewUpstream()
	s := startStack(t, stackOptions{
		upstream:  up,
		appOpts:   []app.Option{app.WithStore(store, closeFn)},
		configure: func(c *config.Config) { c.Policies = routePolicies(routes) },
		tweak:     func(cfg []byte) []byte { return behaviourRoutes(t, cfg, routes) },
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

// behaviourRoutes swaps the shipped route list for one route per suite
// prefix, each naming its policy through ExtProcPerRoute
// grpc_initial_metadata; other paths skip the filter. The filter and
// cluster settings stay exactly as shipped.
func behaviourRoutes(t *testing.T, cfg []byte, routes []behaviortest.Route) []byte {
	start := bytes.Index(cfg, []byte("              routes:\n"))
	end := bytes.Index(cfg, []byte("          http_filters:"))
	require.True(t, start > 0 && end > start, "route anchors missing in envoy.yaml")
	var b strings.Builder
	b.WriteString("              routes:\n")
	perRoute := `
                typed_per_filter_config:
                  envoy.filters.http.ext_proc:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute
                    %s
`
	for _, r := range routes {
		fmt.Fprintf(&b, "              - match: {prefix: %q}\n                route: {cluster: app, timeout: 30s}", r.PathPrefix)
		fmt.Fprintf(&b, perRoute, fmt.Sprintf("overrides: {grpc_initial_metadata: [{key: x-gopotency-policy, value: %s}]}", policyName(r.PathPrefix)))
	}
	b.WriteString("              - match: {prefix: \"/\"}\n                route: {cluster: app, timeout: 30s}")
	fmt.Fprintf(&b, perRoute, "disabled: true")
	return append(append(append([]byte{}, cfg[:start]...), b.String()...), cfg[end:]...)
}
