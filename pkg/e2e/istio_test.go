package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/internal/envoyrun"
	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/envoyconfig"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// The Istio tests run the shipped overlays through Istio's own config
// generator (controlplane/istio, `make istio-xds`): what istiod would push
// to the ingress gateway and to the orders sidecar, EnvoyFilter patches
// applied by Istio, not by us. That config then runs in a real Envoy on
// loopback: the listener, its buffer limit, the ext_proc filter and the
// route configurations exactly as Istio made them; only what needs a
// cluster (addresses, EDS, SDS and mTLS, Istio's own proxy extensions) is
// replaced or dropped.

// xdsOut is what istio-xds writes: the resources istiod would send.
type xdsOut struct {
	Listeners []map[string]any `json:"listeners"`
	Routes    []map[string]any `json:"routes"`
	Clusters  []map[string]any `json:"clusters"`
}

// istioXDS is the istio-xds binary: $GOPOTENCY_ISTIO_XDS (the Makefile
// sets it), else the newest one `make istio-xds` left in .cache/bin.
func istioXDS(t *testing.T) string {
	t.Helper()
	testenv.SkipShort(t, "Istio's config generator and Envoy")
	p := os.Getenv("GOPOTENCY_ISTIO_XDS")
	if p == "" {
		found, _ := filepath.Glob(filepath.Join(root(t), ".cache", "bin", "istio-xds-*"))
		slices.SortFunc(found, func(a, b string) int { return modTime(b) - modTime(a) })
		if len(found) > 0 && !strings.HasSuffix(found[0], ".tmp") {
			p = found[0]
		}
	}
	if fi, err := os.Stat(p); p == "" || err != nil || fi.Mode()&0o111 == 0 {
		testenv.Unavailable(t, "Istio's config generator is not built (%q): run `make istio-xds`, or set GOPOTENCY_ISTIO_XDS", p)
	}
	return p
}

func modTime(p string) int {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return int(fi.ModTime().Unix())
}

// runIstioXDS runs Istio's generator for one proxy over files (paths
// under the module root).
func runIstioXDS(t *testing.T, proxy string, files ...string) xdsOut {
	t.Helper()
	return runIstioXDSFor(t, proxy, nil, files...)
}

// runIstioXDSFor is runIstioXDS with extra flags (-labels, -ip: another
// workload's sidecar).
func runIstioXDSFor(t *testing.T, proxy string, flags []string, files ...string) xdsOut {
	t.Helper()
	bin := istioXDS(t)
	args := append([]string{"-proxy", proxy}, flags...)
	if proxy == "gateway" {
		// The setting under which a gateway gets only the clusters
		// something references: the EnvoyFilter's annotation must
		// bring the ext_proc cluster in.
		args = append(args, "-filter-gateway-clusters")
	}
	for _, f := range files {
		if !filepath.IsAbs(f) {
			f = filepath.Join(root(t), f)
		}
		args = append(args, "-f", f)
	}
	// To a file: Istio's packages may log to stdout.
	outPath := filepath.Join(t.TempDir(), "xds.json")
	args = append(args, "-o", outPath)
	log, err := exec.Command(bin, args...).CombinedOutput()
	require.NoError(t, err, "istio-xds %v:\n%s", args, log)
	out, err := os.ReadFile(outPath)
	require.NoError(t, err)
	var x xdsOut
	require.NoError(t, json.Unmarshal(out, &x))
	return x
}

const (
	hcmName   = "envoy.filters.network.http_connection_manager"
	extProcID = "envoy.filters.http.ext_proc"
)

// obj and list walk decoded JSON.
func obj(v any, path ...string) map[string]any {
	for _, p := range path {
		v = v.(map[string]any)[p]
	}
	out, _ := v.(map[string]any)
	return out
}

func list(v any) []any { out, _ := v.([]any); return out }

// chainHCM is a filter chain's HTTP connection manager config.
func chainHCM(chain map[string]any) map[string]any {
	for _, f := range list(chain["filters"]) {
		if obj(f)["name"] == hcmName {
			return obj(f, "typed_config")
		}
	}
	return nil
}

// upstreamEnvoyType reports whether a typed config is one upstream Envoy
// knows: Istio's proxy adds extensions of its own (istio.*, stats,
// metadata exchange) that a stock Envoy refuses.
func upstreamEnvoyType(tc map[string]any) bool {
	typ, _ := tc["@type"].(string)
	return strings.HasPrefix(typ, "type.googleapis.com/envoy.")
}

// keepUpstream drops the filters upstream Envoy cannot load (Istio's own
// extensions, and those that come by ECDS from istiod), recording their
// names.
func keepUpstream(filters []any, dropped *[]string) []any {
	var out []any
	for _, f := range filters {
		fm := obj(f)
		if fm["config_discovery"] != nil || !upstreamEnvoyType(obj(fm, "typed_config")) {
			*dropped = append(*dropped, fmt.Sprint(fm["name"]))
			continue
		}
		out = append(out, f)
	}
	return out
}

// stripForeignPerFilter removes per-route configs of dropped extensions
// anywhere in a route configuration.
func stripForeignPerFilter(v any) {
	switch x := v.(type) {
	case map[string]any:
		if pf := obj(x, "typed_per_filter_config"); pf != nil {
			for k, c := range pf {
				if !upstreamEnvoyType(obj(c)) {
					delete(pf, k)
				}
			}
		}
		for _, c := range x {
			stripForeignPerFilter(c)
		}
	case []any:
		for _, c := range x {
			stripForeignPerFilter(c)
		}
	}
}

// collectClusters adds every cluster name a route or a gRPC service in v
// refers to.
func collectClusters(v any, into map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok && (k == "cluster" || k == "cluster_name") {
				into[s] = true
			}
			collectClusters(c, into)
		}
	case []any:
		for _, c := range x {
			collectClusters(c, into)
		}
	}
}

// istioRun is Istio's config for one proxy, reduced to one listener.
type istioRun struct {
	listener map[string]any // Istio's, with the one chain kept
	chain    map[string]any
	hcm      map[string]any
	routes   map[string]any // the inlined route configuration
	clusters map[string]map[string]any
	dropped  []string
}

// reduce keeps the listener and filter chain pick chooses, inlines its
// route configuration (RDS from istiod) and finds the clusters it needs.
func reduce(t *testing.T, x xdsOut, pick func(lis map[string]any) map[string]any) *istioRun {
	t.Helper()
	r := &istioRun{clusters: map[string]map[string]any{}}
	for _, lis := range x.Listeners {
		if c := pick(lis); c != nil {
			r.listener, r.chain = lis, c
			break
		}
	}
	require.NotNil(t, r.chain, "Istio generated no listener for the proxy")
	r.hcm = chainHCM(r.chain)
	if rds := obj(r.hcm, "rds"); rds != nil {
		name := rds["route_config_name"]
		for _, rc := range x.Routes {
			if rc["name"] == name {
				r.routes = rc
			}
		}
		require.NotNil(t, r.routes, "no route configuration %v", name)
	} else {
		r.routes = obj(r.hcm, "route_config")
	}
	require.NotNil(t, r.routes, "the listener has no routes")
	refs := map[string]bool{}
	collectClusters(r.routes, refs)
	collectClusters(r.hcm["http_filters"], refs)
	for _, c := range x.Clusters {
		if refs[c["name"].(string)] {
			r.clusters[c["name"].(string)] = c
		}
	}
	for name := range refs {
		require.Contains(t, r.clusters, name, "Istio sent no cluster %s, which the proxy's config names", name)
	}
	return r
}

// extProc is the ext_proc filter Istio placed (the EnvoyFilter's
// HTTP_FILTER patch), and the names of the HTTP filters in order.
func (r *istioRun) extProc(t *testing.T) (filter map[string]any, order []string) {
	t.Helper()
	for _, f := range list(r.hcm["http_filters"]) {
		order = append(order, fmt.Sprint(obj(f)["name"]))
		if obj(f)["name"] == extProcID {
			filter = obj(f)
		}
	}
	require.NotNil(t, filter, "no ext_proc filter in %v: the EnvoyFilter's HTTP_FILTER patch did not land", order)
	return filter, order
}

// route is the Envoy route of that name in the route configuration.
func (r *istioRun) route(t *testing.T, name string) map[string]any {
	t.Helper()
	var names []string
	for _, vh := range list(r.routes["virtual_hosts"]) {
		for _, rt := range list(obj(vh)["routes"]) {
			if obj(rt)["name"] == name {
				return obj(rt)
			}
			names = append(names, fmt.Sprint(obj(rt)["name"]))
		}
	}
	t.Fatalf("no route %q; Istio built %v", name, names)
	return nil
}

// bootstrap is a static Envoy config running r on loopback: the
// listener at a.Listen, every cluster STATIC at gopotency (the ext_proc
// cluster extProcCluster) or at the upstream, plaintext.
func (r *istioRun) bootstrap(t *testing.T, a envoyrun.Addrs, extProcCluster string) []byte {
	t.Helper()
	hcm := clone(t, r.hcm)
	routes := clone(t, r.routes)
	stripForeignPerFilter(routes)
	delete(hcm, "rds")
	hcm["route_config"] = routes
	hcm["http_filters"] = keepUpstream(list(hcm["http_filters"]), &r.dropped)
	chain := clone(t, r.chain)
	// The chain's match (destination port, TLS or plaintext, ALPN) is for
	// istiod's iptables redirect and mTLS; the mesh's TLS needs SDS.
	delete(chain, "filter_chain_match")
	delete(chain, "transport_socket")
	var filters []any
	for _, f := range keepUpstream(list(chain["filters"]), &r.dropped) {
		if obj(f)["name"] == hcmName {
			f = map[string]any{"name": hcmName, "typed_config": hcm}
		}
		filters = append(filters, f)
	}
	chain["filters"] = filters
	lis := clone(t, r.listener)
	lis["address"] = map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": a.Listen}}
	lis["filter_chains"] = []any{chain}
	// Redirected traffic's original destination and TLS sniffing: not on
	// loopback, where the one chain is the one for the port under test.
	for _, k := range []string{"listener_filters", "use_original_dst", "transparent", "default_filter_chain", "filter_chain_matcher", "listener_filters_timeout", "continue_on_listener_filters_timeout"} {
		delete(lis, k)
	}
	var clusters []any
	for name, c := range r.clusters {
		c := clone(t, c)
		addr := a.App
		if name == extProcCluster {
			addr = a.GoPotency
		}
		host, port, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		n, err := strconv.Atoi(port)
		require.NoError(t, err)
		for _, k := range []string{"eds_cluster_config", "transport_socket", "transport_socket_matches", "filters", "original_dst_lb_config", "cluster_type", "dns_lookup_family", "dns_refresh_rate", "respect_dns_ttl"} {
			delete(c, k)
		}
		if c["lb_policy"] == "CLUSTER_PROVIDED" {
			delete(c, "lb_policy")
		}
		c["type"] = "STATIC"
		c["load_assignment"] = map[string]any{"cluster_name": name, "endpoints": []any{map[string]any{"lb_endpoints": []any{map[string]any{
			"endpoint": map[string]any{"address": map[string]any{"socket_address": map[string]any{"address": host, "port_value": n}}}}}}}}
		clusters = append(clusters, c)
	}
	boot := map[string]any{
		"admin": map[string]any{"address": map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": a.Admin}}},
		"static_resources": map[string]any{
			"listeners": []any{lis},
			"clusters":  clusters,
		},
	}
	b, err := json.MarshalIndent(boot, "", "  ")
	require.NoError(t, err)
	return b
}

// statPrefix is the ext_proc filter's stat prefix under the HCM.
func (r *istioRun) statPrefix() string {
	return "http." + fmt.Sprint(r.hcm["stat_prefix"]) + ".ext_proc."
}

// gatewayChain picks the gateway's HTTP listener chain.
func gatewayChain(lis map[string]any) map[string]any {
	for _, c := range list(lis["filter_chains"]) {
		if h := chainHCM(obj(c)); h != nil && h["rds"] != nil {
			return obj(c)
		}
	}
	return nil
}

// sidecarChain picks the inbound sidecar's plaintext HTTP chain for port
// 8080 (PERMISSIVE mTLS keeps one beside the TLS ones).
func sidecarChain(lis map[string]any) map[string]any { return sidecarChainOn("8080")(lis) }

// sidecarChainOn picks the inbound sidecar's plaintext HTTP chain for port.
func sidecarChainOn(port string) func(lis map[string]any) map[string]any {
	return func(lis map[string]any) map[string]any {
		if lis["name"] != "virtualInbound" {
			return nil
		}
		for _, c := range list(lis["filter_chains"]) {
			fcm := obj(c, "filter_chain_match")
			if fmt.Sprint(fcm["destination_port"]) == port && fcm["transport_protocol"] == "raw_buffer" && chainHCM(obj(c)) != nil {
				return obj(c)
			}
		}
		return nil
	}
}

const extProcClusterName = "outbound|9002||gopotency.gopotency.svc.cluster.local"

// istioCommon checks what both proxies must get from Istio: the ext_proc
// filter just before the router, pointing at the gopotency cluster, and
// the listener's buffer limit from the EnvoyFilter's LISTENER patch.
func istioCommon(t *testing.T, r *istioRun) {
	t.Helper()
	filter, order := r.extProc(t)
	require.Equal(t, "envoy.filters.http.router", order[len(order)-1])
	assert.Equal(t, extProcID, order[len(order)-2], "ext_proc right before the router: %v", order)
	assert.Equal(t, extProcClusterName, obj(filter, "typed_config", "extension_config", "typed_config", "grpc_service", "envoy_grpc")["cluster_name"])
	assert.EqualValues(t, idempotency.DefaultPolicy().MaxRequestBody+envoyconfig.BufferMargin, r.listener["per_connection_buffer_limit_bytes"],
		"the LISTENER patch: Envoy's buffer above the 1 MiB cap")
}

// runIstioForm starts gopotency with the overlay's configuration and an
// Envoy on r's config, and returns the form for checkForm.
func runIstioForm(t *testing.T, r *istioRun, overlay, host, guarded, unguarded, unguardedMethod string) form {
	t.Helper()
	up := newCounter()
	s := startStack(t, stackOptions{
		upstream:     up,
		config:       filepath.Join(root(t), "deploy", "overlays", overlay, "gopotency.yaml"),
		extProcStats: r.statPrefix(),
		bootstrap: func(a envoyrun.Addrs) []byte {
			return r.bootstrap(t, a, extProcClusterName)
		},
	})
	t.Logf("dropped Istio-proxy-only filters for stock Envoy: %v", r.dropped)
	require.NotContains(t, r.dropped, extProcID)
	return form{s: s, up: up, client: hostClient(host), guarded: s.URL + guarded, unguarded: s.URL + unguarded,
		unguardedMethod: unguardedMethod, maxBody: int(idempotency.DefaultPolicy().MaxRequestBody)}
}

// checkAtCap: a body of exactly max_request_body, in both framings, runs
// once and replays. With Istio's listener limit left at Envoy's 1 MiB
// default (the default cap), a chunked body at the cap fills the buffer
// before its end arrives and reaches gopotency cut: the LISTENER patch
// is what lets it through whole.
func checkAtCap(t *testing.T, f form) {
	t.Helper()
	id := itoa(int(time.Now().UnixNano()))
	for _, chunked := range []bool{false, true} {
		key := "istio-at-cap-" + framings[chunked] + "-" + id
		body := strings.Repeat("x", f.maxBody)
		brief := f
		brief.guarded += "?brief"
		first := brief.post(t, key, body, chunked)
		require.Equal(t, 201, first.Status, "%s: %.300s", key, first.Body)
		again := brief.post(t, key, body, chunked)
		assert.Equal(t, 201, again.Status, "%s: %.300s", key, again.Body)
		assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"), key)
		assert.Equal(t, 1, f.up.count(key), key)
	}
}

var istioShared = []string{
	"deploy/components/istio/destinationrule.yaml",
	"deploy/components/istio/authorizationpolicy.yaml",
	"pkg/e2e/testdata/istio/cluster.yaml",
}

// TestIstioGateway: the istio-gateway overlay through Istio's generator
// (with PILOT_FILTER_GATEWAY_CLUSTER_CONFIG=true) into a real Envoy.
func TestIstioGateway(t *testing.T) {
	x := runIstioXDS(t, "gateway", append([]string{"deploy/overlays/istio-gateway/envoyfilter.yaml", "deploy/overlays/istio-gateway/gateway.yaml"}, istioShared...)...)
	r := reduce(t, x, gatewayChain)
	istioCommon(t, r)
	// The route patches landed where Istio named the routes.
	assert.Equal(t, []any{map[string]any{"key": "x-gopotency-policy", "value": "payments"}},
		obj(r.route(t, "payments"), "typed_per_filter_config", extProcID, "overrides")["grpc_initial_metadata"])
	assert.Equal(t, true, obj(r.route(t, "static"), "typed_per_filter_config", extProcID)["disabled"])
	// Istio retries twice unless told not to; the guarded routes are.
	assert.Nil(t, obj(r.route(t, "payments"), "route")["retry_policy"], "retries: {attempts: 0}")
	assert.Nil(t, obj(r.route(t, "default"), "route")["retry_policy"], "retries: {attempts: 0}")
	assert.EqualValues(t, 2, obj(r.route(t, "static"), "route", "retry_policy")["num_retries"], "Istio's default, where gateway.yaml sets none")

	// Without the EnvoyFilter's referenced-services annotation, Istio
	// (filtering gateway clusters) builds no ext_proc cluster at all.
	ef, err := os.ReadFile(filepath.Join(root(t), "deploy", "overlays", "istio-gateway", "envoyfilter.yaml"))
	require.NoError(t, err)
	bare := regexp.MustCompile(`(?m)^    envoyfilter\.istio\.io/referenced-services: .*\n`).ReplaceAll(ef, nil)
	require.NotEqual(t, ef, bare)
	barePath := filepath.Join(t.TempDir(), "envoyfilter.yaml")
	require.NoError(t, os.WriteFile(barePath, bare, 0o600))
	for _, c := range runIstioXDS(t, "gateway", append([]string{barePath, "deploy/overlays/istio-gateway/gateway.yaml"}, istioShared...)...).Clusters {
		assert.NotEqual(t, extProcClusterName, c["name"], "the annotation is what brings the cluster in")
	}

	f := runIstioForm(t, r, "istio-gateway", "shop.example.com", "/orders", "/static/x", "")
	id := itoa(int(time.Now().UnixNano()))
	// payments requires a key (its route patch); default_policy does not.
	missing := doWith(t, f.client, "POST", f.s.URL+"/payments", "", `{}`)
	assert.Equal(t, 400, missing.Status, "body: %s", missing.Body)
	assert.Equal(t, 201, doWith(t, f.client, "POST", f.s.URL+"/payments", "pay-"+id, `{}`).Status)
	assert.Equal(t, 201, doWith(t, f.client, "POST", f.s.URL+"/orders", "", `{}`).Status)
	checkAtCap(t, f)
	checkForm(t, f)
}

// TestIstioSidecar: the istio-sidecar overlay's inbound listener for the
// orders Pod through Istio's generator into a real Envoy.
func TestIstioSidecar(t *testing.T) {
	x := runIstioXDS(t, "sidecar", append([]string{"deploy/overlays/istio-sidecar/envoyfilter.yaml"}, istioShared...)...)
	r := reduce(t, x, sidecarChain)
	istioCommon(t, r)
	// An inbound sidecar has one route; PUT is no method the policy
	// guards, so it stands for the unguarded request.
	f := runIstioForm(t, r, "istio-sidecar", "orders.shop.svc.cluster.local", "/orders", "/orders", "PUT")
	checkAtCap(t, f)
	checkForm(t, f)
}

// TestIstioGatewayMatchNames: a VirtualService match with a name of its
// own makes Istio call the Envoy route "<route>.<match>". The generator
// takes the names from the VirtualService, so the payments policy still
// lands; the EnvoyFilter generated before (by http route name only) would
// have missed it silently, leaving the route to default_policy.
func TestIstioGatewayMatchNames(t *testing.T) {
	dir := t.TempDir()
	vs, err := os.ReadFile(filepath.Join(root(t), "deploy", "overlays", "istio-gateway", "gateway.yaml"))
	require.NoError(t, err)
	named := strings.Replace(string(vs), "match: [{uri: {prefix: /payments}}]", "match: [{name: card, uri: {prefix: /payments}}]", 1)
	require.NotEqual(t, string(vs), named, "gateway.yaml's payments match moved")
	vsPath := filepath.Join(dir, "gateway.yaml")
	require.NoError(t, os.WriteFile(vsPath, []byte(named), 0o600))

	cfg, err := config.Load([]string{"--config", filepath.Join(root(t), "deploy", "overlays", "istio-gateway", "gopotency.yaml")}, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	vss, err := envoyconfig.ParseVirtualServices([]byte(named))
	require.NoError(t, err)
	k := envoyconfig.Kube{Name: "gopotency", Namespace: "istio-system", Selector: map[string]string{"istio": "ingressgateway"}, VirtualServices: vss}
	ef, err := envoyconfig.GenerateTarget(cfg, envoyconfig.TargetIstioGateway, k, "test")
	require.NoError(t, err)
	efPath := filepath.Join(dir, "envoyfilter.yaml")
	require.NoError(t, os.WriteFile(efPath, ef, 0o600))

	// What a patch by http route name alone did: Istio's route
	// payments.card has no policy, and nothing said so.
	old := reduce(t, runIstioXDS(t, "gateway", append([]string{"deploy/overlays/istio-gateway/envoyfilter.yaml", vsPath}, istioShared...)...), gatewayChain)
	assert.Nil(t, obj(old.route(t, "payments.card"), "typed_per_filter_config")[extProcID], "the shipped filter's patch names payments, which Istio no longer builds")

	r := reduce(t, runIstioXDS(t, "gateway", append([]string{efPath, vsPath}, istioShared...)...), gatewayChain)
	istioCommon(t, r)
	assert.Equal(t, []any{map[string]any{"key": "x-gopotency-policy", "value": "payments"}},
		obj(r.route(t, "payments.card"), "typed_per_filter_config", extProcID, "overrides")["grpc_initial_metadata"])
	f := runIstioForm(t, r, "istio-gateway", "shop.example.com", "/orders", "/static/x", "")
	id := itoa(int(time.Now().UnixNano()))
	missing := doWith(t, f.client, "POST", f.s.URL+"/payments", "", `{}`)
	assert.Equal(t, 400, missing.Status, "payments requires a key on payments.card: %s", missing.Body)
	key := "card-" + id
	assert.Equal(t, 201, doWith(t, f.client, "POST", f.s.URL+"/payments", key, `{"amount":5}`).Status)
	again := doWith(t, f.client, "POST", f.s.URL+"/payments", key, `{"amount":5}`)
	assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
	assert.Equal(t, 1, f.up.count(key))
}

// TestIstioJWTDenyIsScopedToHTTP: istio-sidecar-jwt's DENY policy for
// requests without a token. On a TCP port Istio cannot see a token and
// drops that condition, so an unscoped rule denies every connection of
// every other port of the workload; scoped to the HTTP port, the rule
// Istio writes into the TCP chains can match no connection there.
func TestIstioJWTDenyIsScopedToHTTP(t *testing.T) {
	x := runIstioXDS(t, "sidecar", append([]string{"deploy/overlays/istio-sidecar/envoyfilter.yaml",
		"deploy/overlays/istio-sidecar-jwt/requestauthentication.yaml", "deploy/overlays/istio-sidecar-jwt/authorizationpolicy.yaml"}, istioShared...)...)
	tcpDenies, httpDenies := 0, 0
	for _, lis := range x.Listeners {
		if lis["name"] != "virtualInbound" {
			continue
		}
		for _, c := range list(lis["filter_chains"]) {
			port := fmt.Sprint(obj(c, "filter_chain_match")["destination_port"])
			for _, f := range list(obj(c)["filters"]) {
				switch {
				case obj(f)["name"] == "envoy.filters.network.rbac" && port == "9090" && obj(f, "typed_config", "rules")["action"] == "DENY":
					tcpDenies++
					b, err := json.Marshal(obj(f, "typed_config", "rules", "policies"))
					require.NoError(t, err)
					// The one permission: destination port 8080, which
					// no connection to 9090 has.
					assert.Equal(t, `{"ns[shop]-policy[orders-require-jwt]-rule[0]":{"permissions":[{"and_rules":{"rules":[{"or_rules":{"rules":[{"destination_port":8080}]}}]}}],"principals":[{"and_ids":{"ids":[{"any":true}]}}]}}`, string(b))
				case obj(f)["name"] == hcmName && port == "8080":
					for _, hf := range list(obj(f, "typed_config")["http_filters"]) {
						if obj(hf)["name"] == "envoy.filters.http.rbac" && obj(hf, "typed_config", "rules")["action"] == "DENY" {
							httpDenies++
							b, err := json.Marshal(obj(hf, "typed_config", "rules"))
							require.NoError(t, err)
							// Denied: no verified token (no iss and sub from jwt_authn).
							assert.Contains(t, string(b), `"principals":[{"and_ids":{"ids":[{"not_id":{"and_ids":{"ids":[{"metadata":{"filter":"envoy.filters.http.jwt_authn"`,
								"the HTTP port still denies requests without a token")
						}
					}
				}
			}
		}
	}
	assert.Positive(t, tcpDenies, "Istio wrote the DENY rule into the TCP chains of port 9090")
	assert.Positive(t, httpDenies, "and into the HTTP chains of port 8080")
}
