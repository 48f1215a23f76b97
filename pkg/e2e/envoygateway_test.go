package e2e

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/gopotency/gopotency/internal/envoyrun"
	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/envoyconfig"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// The shipped deploy/overlays/envoy-gateway objects go through Envoy
// Gateway's own translator (egctl x translate, the version `make egctl`
// pins), and the xDS it produces runs in a real Envoy: what a user's
// Gateway would run, but for the endpoints, which point at this test's
// upstream and gopotency. The rest (listener buffer limit, the ext_proc
// filter disabled on the listener and enabled per route, timeouts, the
// ext_proc cluster's health checks) stays as translated.

const (
	egHost = "shop.example.com" // httproute.yaml's hostname
	// The cluster IPs this test gives the Services; the translated
	// clusters reach a Service by its cluster IP.
	egOrdersIP    = "10.96.0.10"
	egGoPotencyIP = "10.96.0.20"
	// egLedgerIP is the gRPC test's Service (TestEnvoyGatewayGRPC), served
	// by the test's upstream like orders.
	egLedgerIP = "10.96.0.30"
)

// egctlBin is Envoy Gateway's egctl: $GOPOTENCY_EGCTL, or what `make
// egctl` built into .cache/bin for the version controlplane/envoygateway
// pins.
func egctlBin(t *testing.T) string {
	t.Helper()
	testenv.SkipShort(t, "egctl and Envoy")
	p := os.Getenv("GOPOTENCY_EGCTL")
	if p == "" {
		mod, err := os.ReadFile(filepath.Join(root(t), "controlplane", "envoygateway", "go.mod"))
		require.NoError(t, err)
		version := ""
		for _, l := range strings.Split(string(mod), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "github.com/envoyproxy/gateway" {
				version = f[1]
			}
		}
		require.NotEmpty(t, version, "controlplane/envoygateway/go.mod requires no github.com/envoyproxy/gateway")
		p = filepath.Join(root(t), ".cache", "bin", "egctl-"+version)
	}
	if _, err := os.Stat(p); err != nil {
		testenv.Unavailable(t, "egctl: %v (run `make egctl`, or set GOPOTENCY_EGCTL)", err)
	}
	return p
}

// egInput is what egctl translates: the overlay's Gateway API and Envoy
// Gateway objects, and what a cluster supplies (the GatewayClass of the
// Envoy Gateway controller, the Services with cluster IPs).
// withCTP false leaves out the ClientTrafficPolicy.
func egInput(t *testing.T, withCTP bool) []byte {
	t.Helper()
	dir := filepath.Join(root(t), "deploy", "overlays", "envoy-gateway")
	var docs []string
	for _, f := range []string{"httproute.yaml", "extensionpolicy.yaml", "referencegrant.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		for _, d := range strings.Split(string(b), "\n---\n") {
			if !withCTP && strings.Contains(d, "\nkind: ClientTrafficPolicy\n") {
				continue
			}
			docs = append(docs, d)
		}
	}
	require.Equal(t, withCTP, strings.Contains(strings.Join(docs, ""), "kind: ClientTrafficPolicy"), "the overlay ships a ClientTrafficPolicy")
	// The shipped gopotency Service (deploy/base), in its namespace.
	var svc map[string]any
	raw, err := os.ReadFile(filepath.Join(root(t), "deploy", "base", "service.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &svc))
	svc["metadata"].(map[string]any)["namespace"] = "gopotency"
	svc["spec"].(map[string]any)["clusterIP"] = egGoPotencyIP
	b, err := yaml.Marshal(svc)
	require.NoError(t, err)
	docs = append(docs, string(b), `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: eg}
spec: {controllerName: gateway.envoyproxy.io/gatewayclass-controller}
`, `apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec:
  clusterIP: `+egOrdersIP+`
  ports: [{name: http, port: 8080, protocol: TCP}]
`)
	return []byte(strings.Join(docs, "\n---\n"))
}

// egTranslate runs egctl x translate on input and returns the config dump
// of the one Gateway, and the translated Gateway API objects with status.
func egTranslate(t *testing.T, input []byte) (dump []any, objects map[string]any) {
	t.Helper()
	bin := egctlBin(t)
	in := filepath.Join(t.TempDir(), "objects.yaml")
	require.NoError(t, os.WriteFile(in, input, 0o600))
	out, err := exec.Command(bin, "x", "translate", "--from", "gateway-api", "--to", "gateway-api,xds", "-o", "json", "-f", in).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("egctl x translate: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("egctl x translate: %v", err)
	}
	var res map[string]any
	require.NoError(t, json.Unmarshal(out, &res))
	xds, _ := res["xds"].(map[string]any)
	require.Len(t, xds, 1, "one Gateway, one Envoy: %v", keys(xds))
	for _, v := range xds {
		dump, _ = v.(map[string]any)["configs"].([]any)
	}
	require.NotEmpty(t, dump)
	return dump, res
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// accepted checks the translator accepted every policy and route: it
// drops what it rejects without failing (a policy left out is a route
// without gopotency, or a 500).
func accepted(t *testing.T, objects map[string]any) {
	t.Helper()
	n := 0
	for _, kind := range []string{"httpRoutes", "envoyExtensionPolicies", "clientTrafficPolicies"} {
		list, _ := objects[kind].([]any)
		for _, o := range list {
			o := o.(map[string]any)
			name := kind + " " + fmt.Sprint(o["metadata"].(map[string]any)["name"])
			st, _ := o["status"].(map[string]any)
			var parents []any
			if p, ok := st["parents"].([]any); ok {
				parents = p
			} else {
				parents, _ = st["ancestors"].([]any)
			}
			require.NotEmpty(t, parents, "%s has no status", name)
			for _, p := range parents {
				for _, c := range p.(map[string]any)["conditions"].([]any) {
					c := c.(map[string]any)
					if c["type"] == "Accepted" || c["type"] == "ResolvedRefs" {
						assert.Equal(t, "True", c["status"], "%s: %s: %v", name, c["type"], c["message"])
					}
				}
			}
			n++
		}
	}
	assert.GreaterOrEqual(t, n, 3, "routes and policies found in the translator's output")
}

// section returns the config dump section of type typ (…ConfigDump).
// egctl writes protojson: field names are lowerCamelCase, which Envoy
// reads as well as snake_case.
func section(t *testing.T, dump []any, typ string) map[string]any {
	t.Helper()
	for _, c := range dump {
		if c := c.(map[string]any); c["@type"] == "type.googleapis.com/envoy.admin.v3."+typ {
			return c
		}
	}
	t.Fatalf("no %s in the config dump", typ)
	return nil
}

// resource strips the Any's type from an xDS resource: a bootstrap
// takes the message itself.
func resource(m any) map[string]any {
	r := m.(map[string]any)
	delete(r, "@type")
	return r
}

// egConfig is the translated xDS of the Gateway's HTTP listener.
type egConfig struct {
	listener map[string]any
	routes   map[string]map[string]any // by name
	clusters []map[string]any
	// endpoints are the EDS assignments by name.
	endpoints map[string]map[string]any
}

func parseEG(t *testing.T, dump []any) egConfig {
	t.Helper()
	c := egConfig{routes: map[string]map[string]any{}, endpoints: map[string]map[string]any{}}
	// Besides the Gateway's listener, Envoy Gateway adds its readiness
	// listener (no RDS): the proxy's own, not the Gateway's.
	for _, l := range section(t, dump, "ListenersConfigDump")["dynamicListeners"].([]any) {
		l := resource(l.(map[string]any)["activeState"].(map[string]any)["listener"])
		if _, ok := hcmOf(l)["rds"]; ok {
			require.Nil(t, c.listener, "one Gateway listener (one HTTP listener in httproute.yaml)")
			c.listener = l
		}
	}
	require.NotNil(t, c.listener, "no listener with routes")
	for _, r := range section(t, dump, "RoutesConfigDump")["dynamicRouteConfigs"].([]any) {
		rc := resource(r.(map[string]any)["routeConfig"])
		c.routes[rc["name"].(string)] = rc
	}
	for _, cl := range section(t, dump, "ClustersConfigDump")["dynamicActiveClusters"].([]any) {
		c.clusters = append(c.clusters, resource(cl.(map[string]any)["cluster"]))
	}
	for _, e := range section(t, dump, "EndpointsConfigDump")["dynamicEndpointConfigs"].([]any) {
		la := resource(e.(map[string]any)["endpointConfig"])
		c.endpoints[la["clusterName"].(string)] = la
	}
	return c
}

// hcmOf returns a listener's one HTTP connection manager config (Envoy
// Gateway puts it in the default filter chain), or nil.
func hcmOf(l map[string]any) map[string]any {
	var chains []any
	if fc, ok := l["defaultFilterChain"]; ok {
		chains = append(chains, fc)
	}
	if fcs, ok := l["filterChains"].([]any); ok {
		chains = append(chains, fcs...)
	}
	for _, fc := range chains {
		for _, f := range fc.(map[string]any)["filters"].([]any) {
			if f := f.(map[string]any); f["name"] == "envoy.filters.network.http_connection_manager" {
				return f["typedConfig"].(map[string]any)
			}
		}
	}
	return nil
}

// extProc returns the ext_proc filter of the connection manager.
func (c egConfig) extProc(t *testing.T) (name string, cfg map[string]any, disabled bool) {
	t.Helper()
	for _, f := range hcmOf(c.listener)["httpFilters"].([]any) {
		f := f.(map[string]any)
		tc, _ := f["typedConfig"].(map[string]any)
		if tc["@type"] == "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor" {
			require.Empty(t, name, "one ext_proc filter")
			name, cfg = f["name"].(string), tc
			disabled, _ = f["disabled"].(bool)
		}
	}
	require.NotEmpty(t, name, "no ext_proc filter")
	return name, cfg, disabled
}

// routeList is every route of the listener's route config.
func (c egConfig) routeList(t *testing.T) []map[string]any {
	t.Helper()
	rds := hcmOf(c.listener)["rds"].(map[string]any)
	rc, ok := c.routes[rds["routeConfigName"].(string)]
	require.True(t, ok, "route config %v", rds["routeConfigName"])
	var out []map[string]any
	for _, vh := range rc["virtualHosts"].([]any) {
		for _, r := range vh.(map[string]any)["routes"].([]any) {
			out = append(out, r.(map[string]any))
		}
	}
	return out
}

// extProcStats is the prefix of the filter's stats: the connection
// manager's prefix, then the filter's own (Envoy Gateway sets none).
func (c egConfig) extProcStats(t *testing.T) string {
	_, cfg, _ := c.extProc(t)
	own, _ := cfg["statPrefix"].(string)
	return "http." + hcmOf(c.listener)["statPrefix"].(string) + ".ext_proc." + own
}

// clone deep-copies a JSON value.
func clone(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out))
	return out
}

// bootstrap is the translated config as a static bootstrap for a: the
// listener on a's port, its routes inline instead of RDS, and each
// cluster's translated endpoints (a Service's cluster IP) readdressed to
// the loopback address of the upstream or gopotency. Everything else is
// as translated.
func (c egConfig) bootstrap(t *testing.T, a envoyrun.Addrs) []byte {
	t.Helper()
	l := clone(t, c.listener)
	l["address"] = map[string]any{"socketAddress": map[string]any{"address": "127.0.0.1", "portValue": a.Listen}}
	hcm := hcmOf(l)
	name := hcm["rds"].(map[string]any)["routeConfigName"].(string)
	require.Contains(t, c.routes, name)
	delete(hcm, "rds")
	hcm["routeConfig"] = clone(t, c.routes[name])

	loopback := map[string]string{egOrdersIP: a.App, egLedgerIP: a.App, egGoPotencyIP: a.GoPotency}
	var clusters []any
	for _, cl := range c.clusters {
		cl = clone(t, cl)
		name := cl["name"].(string)
		require.Equal(t, "EDS", cl["type"], "cluster %s", name)
		eds := cl["edsClusterConfig"].(map[string]any)
		svc, _ := eds["serviceName"].(string)
		la, ok := c.endpoints[cmp.Or(svc, name)]
		require.True(t, ok, "cluster %s: no endpoints translated", name)
		la = clone(t, la)
		for _, loc := range la["endpoints"].([]any) {
			for _, lb := range loc.(map[string]any)["lbEndpoints"].([]any) {
				sa := lb.(map[string]any)["endpoint"].(map[string]any)["address"].(map[string]any)["socketAddress"].(map[string]any)
				to, ok := loopback[sa["address"].(string)]
				require.True(t, ok, "cluster %s reaches %v, no Service of this test", name, sa)
				host, port, err := net.SplitHostPort(to)
				require.NoError(t, err)
				p, err := strconv.Atoi(port)
				require.NoError(t, err)
				sa["address"], sa["portValue"] = host, p
			}
		}
		delete(cl, "edsClusterConfig")
		cl["type"], cl["loadAssignment"] = "STATIC", la
		clusters = append(clusters, cl)
	}
	out, err := json.Marshal(map[string]any{
		"admin":           map[string]any{"address": map[string]any{"socketAddress": map[string]any{"address": "127.0.0.1", "portValue": a.Admin}}},
		"staticResources": map[string]any{"listeners": []any{l}, "clusters": clusters},
	})
	require.NoError(t, err)
	return out
}

// egStack translates the overlay (with or without its
// ClientTrafficPolicy), checks what the translation says, and runs it
// with the overlay's gopotency.yaml on Redis.
func egStack(t *testing.T, withCTP bool) form {
	t.Helper()
	egctlBin(t) // skip before starting anything
	dump, objects := egTranslate(t, egInput(t, withCTP))
	accepted(t, objects)
	c := parseEG(t, dump)

	// What the translation must say for gopotency to be safe.
	cfgPath := filepath.Join(root(t), "deploy", "overlays", "envoy-gateway", "gopotency.yaml")
	cfg, err := config.Load([]string{"--config", cfgPath}, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	maxBody := cfg.Default.MaxRequestBody
	limit, _ := c.listener["perConnectionBufferLimitBytes"].(float64)
	if withCTP {
		assert.EqualValues(t, maxBody+envoyconfig.BufferMargin, limit, "the ClientTrafficPolicy's bufferLimit")
	} else {
		assert.EqualValues(t, 32768, limit, "Envoy Gateway's default")
	}
	name, ep, disabled := c.extProc(t)
	assert.True(t, disabled, "the filter is off on the listener, on per route")
	assert.Equal(t, "1s", ep["messageTimeout"], "the policy's messageTimeout")
	assert.NotEqual(t, true, ep["failureModeAllow"], "fail closed")
	assert.Equal(t, map[string]any{"code": "ServiceUnavailable"}, ep["statusOnError"])
	guarded, static := 0, 0
	for _, r := range c.routeList(t) {
		rn, _ := r["name"].(string)
		pf, _ := r["typedPerFilterConfig"].(map[string]any)
		_, on := pf[name]
		switch {
		case strings.HasPrefix(rn, "httproute/shop/orders/"):
			guarded++
			assert.True(t, on, "%s: the filter is on", rn)
			assert.Equal(t, "30s", r["route"].(map[string]any)["timeout"], "%s: the HTTPRoute's timeouts.request", rn)
		case strings.HasPrefix(rn, "httproute/shop/orders-static/"):
			static++
			assert.False(t, on, "%s: the filter stays off", rn)
		}
		assert.Nil(t, r["route"].(map[string]any)["retryPolicy"], "%s: a retry would run behind gopotency's back", rn)
	}
	assert.Equal(t, 1, guarded)
	assert.Equal(t, 1, static)

	up := newCounter()
	s := startStack(t, stackOptions{
		upstream:     up,
		store:        testenv.Redis(t),
		config:       cfgPath,
		bootstrap:    func(a envoyrun.Addrs) []byte { return c.bootstrap(t, a) },
		extProcStats: c.extProcStats(t),
	})
	return form{s: s, up: up, client: hostClient(egHost), guarded: s.URL + "/orders", unguarded: s.URL + "/static/x", maxBody: int(maxBody)}
}

// TestEnvoyGatewayOverlayThroughItsTranslator runs the rows every form
// keeps through the shipped overlay as Envoy Gateway translates it.
func TestEnvoyGatewayOverlayThroughItsTranslator(t *testing.T) {
	checkForm(t, egStack(t, true))
}

// TestEnvoyGatewayDefaultBufferCutsBodies: the same objects without the
// ClientTrafficPolicy leave Envoy Gateway's 32 KiB listener buffer, which
// hands gopotency a cut 100 KiB body; it must fail closed (413), never
// fingerprint the part.
func TestEnvoyGatewayDefaultBufferCutsBodies(t *testing.T) {
	checkCutBodyFailsClosed(t, egStack(t, false))
}
