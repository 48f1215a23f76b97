package envoyconfig

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

const istioPolicies = `
store_timeout: 500ms
default_policy: {methods: [POST, PATCH]}
policies:
  pay: {key_required: true}
  orders: {methods: [POST], key_header: X-Order-Key}
`

var gatewayKube = Kube{Name: "gopotency", Namespace: "istio-system", Selector: map[string]string{"istio": "ingressgateway"},
	VirtualServices: []VirtualService{{Name: "shop", Namespace: "shop", HTTP: []VirtualServiceHTTP{{Name: "pay"}, {Name: "orders"}, {Name: "static"}, {Name: "default"}}}}}

const istioEnvoy = `envoy:
  ext_proc_address: gopotency.gopotency.svc.cluster.local:9002
`

func generate(t *testing.T, yaml string, target Target, k Kube) ([]byte, error) {
	t.Helper()
	c, err := load(t, yaml)
	require.NoError(t, err)
	return GenerateTarget(c, target, k, "test")
}

// istioBootstrap is what istiod would make of an EnvoyFilter, reduced to
// what the filter sees: its HTTP_FILTER patch before the router, one
// route per HTTP_ROUTE patch (prefix /<name>, the patch merged in), a
// catch-all route "default", the ext_proc cluster the filter names at
// extProc, and app.
func istioBootstrap(t *testing.T, ef []byte, listen, admin int, extProc, app string) []byte {
	t.Helper()
	var obj map[string]any
	require.NoError(t, yaml.Unmarshal(ef, &obj))
	var filter map[string]any
	var routes []any
	for _, p := range obj["spec"].(map[string]any)["configPatches"].([]any) {
		p := p.(map[string]any)
		value := p["patch"].(map[string]any)["value"].(map[string]any)
		switch p["applyTo"] {
		case "HTTP_FILTER":
			filter = value
		case "HTTP_ROUTE":
			name := p["match"].(map[string]any)["routeConfiguration"].(map[string]any)["vhost"].(map[string]any)["route"].(map[string]any)["name"].(string)
			route := map[string]any{"name": name, "match": map[string]any{"prefix": "/" + name}, "route": map[string]any{"cluster": "app"}}
			for k, v := range value {
				route[k] = v
			}
			routes = append(routes, route)
		}
	}
	routes = append(routes, map[string]any{"name": "default", "match": map[string]any{"prefix": "/"}, "route": map[string]any{"cluster": "app"}})
	wrapped := filter["typed_config"].(map[string]any)["extension_config"].(map[string]any)["typed_config"].(map[string]any)
	cluster := wrapped["grpc_service"].(map[string]any)["envoy_grpc"].(map[string]any)["cluster_name"].(string)
	endpoint := func(addr string) map[string]any {
		host, port, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		n, err := strconv.Atoi(port)
		require.NoError(t, err)
		return map[string]any{"lb_endpoints": []any{map[string]any{"endpoint": map[string]any{"address": map[string]any{
			"socket_address": map[string]any{"address": host, "port_value": n}}}}}}
	}
	boot := map[string]any{
		"admin": map[string]any{"address": map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": admin}}},
		"static_resources": map[string]any{
			"listeners": []any{map[string]any{
				"name":    "http",
				"address": map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": listen}},
				"filter_chains": []any{map[string]any{"filters": []any{map[string]any{
					"name": "envoy.filters.network.http_connection_manager",
					"typed_config": map[string]any{
						"@type":        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
						"stat_prefix":  "ingress",
						"route_config": map[string]any{"virtual_hosts": []any{map[string]any{"name": "app", "domains": []any{"*"}, "routes": routes}}},
						"http_filters": []any{filter, map[string]any{"name": "envoy.filters.http.router",
							"typed_config": map[string]any{"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}},
					},
				}}}},
			}},
			"clusters": []any{
				map[string]any{"name": cluster, "type": "STATIC", "connect_timeout": "1s",
					"typed_extension_protocol_options": map[string]any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
						"@type":                "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
						"explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}}}},
					"load_assignment": map[string]any{"cluster_name": cluster, "endpoints": []any{endpoint(extProc)}}},
				map[string]any{"name": "app", "type": "STATIC", "connect_timeout": "1s",
					"load_assignment": map[string]any{"cluster_name": "app", "endpoints": []any{endpoint(app)}}},
			},
		},
	}
	b, err := yaml.Marshal(boot)
	require.NoError(t, err)
	return b
}

func startIstio(t *testing.T, yaml string, target Target, k Kube) *layoutStack {
	t.Helper()
	ef, err := generate(t, yaml, target, k)
	require.NoError(t, err)
	return startStack(t, false, func(listen, admin int, extProc, app string) ([]byte, string) {
		return istioBootstrap(t, ef, listen, admin, extProc, app), ""
	})
}

// TestIstioGatewayLayout runs the generated gateway EnvoyFilter in a real
// Envoy: the matcher skips unguarded methods before any stream, disabled
// routes open none, patched routes name their policy, and keyless
// requests still reach GoPotency since one policy requires a key.
func TestIstioGatewayLayout(t *testing.T) {
	s := startIstio(t, istioPolicies+istioEnvoy+`  routes: [{name: pay, policy: pay}, {name: orders, policy: orders}, {name: static, disabled: true}]
`, TargetIstioGateway, gatewayKube)
	for _, tc := range []layoutCase{
		{call{"GET", "/x", "k1", "", false}, nil, ""},
		{call{"PUT", "/pay", "k1", small, false}, nil, ""},
		{call{"POST", "/static/x", "k1", small, false}, nil, ""},
		{call{"POST", "/x", "k1", small, false}, []string{"request_headers"}, ""},
		{call{"PATCH", "/x", "", small, false}, []string{"request_headers"}, ""},
		{call{"POST", "/pay", "", small, false}, []string{"request_headers"}, "pay"},
		{call{"POST", "/orders/1", "k1", small, false}, []string{"request_headers"}, "orders"},
	} {
		s.expect(t, tc)
	}
}

// TestIstioSidecarLayout: where every policy's key is optional, keyless
// requests open no stream either; a named policy rides on grpc_service.
func TestIstioSidecarLayout(t *testing.T) {
	k := Kube{Name: "gopotency", Namespace: "shop", Selector: map[string]string{"app": "orders"}, Port: 8080}
	t.Run("default policy", func(t *testing.T) {
		s := startIstio(t, istioPolicies+istioEnvoy, TargetIstioSidecar, k)
		for _, tc := range []layoutCase{
			{call{"GET", "/x", "k1", "", false}, nil, ""},
			{call{"POST", "/x", "", small, false}, nil, ""},
			{call{"POST", "/x", "k1", small, false}, []string{"request_headers"}, ""},
			{call{"PATCH", "/x", "k1", "", false}, []string{"request_headers"}, ""},
		} {
			s.expect(t, tc)
		}
	})
	t.Run("named policy", func(t *testing.T) {
		s := startIstio(t, istioPolicies+istioEnvoy+"  routes: [{prefix: /, policy: pay}]\n", TargetIstioSidecar, k)
		for _, tc := range []layoutCase{
			{call{"GET", "/x", "k1", "", false}, nil, ""},
			{call{"PATCH", "/x", "k1", small, false}, []string{"request_headers"}, "pay"},
			// pay requires a key: a keyless request gets its 400.
			{call{"POST", "/x", "", small, false}, []string{"request_headers"}, "pay"},
		} {
			s.expect(t, tc)
		}
	})
}

func TestFilterSkip(t *testing.T) {
	p := plan(t, istioPolicies+istioEnvoy+"  routes: [{name: orders, policy: orders}]\n")
	assert.Equal(t, FilterSkip{Methods: []string{"PATCH", "POST"}, KeyHeaders: []string{"idempotency-key", "x-order-key"}},
		filterSkip([]*idempotency.Policy{p.defaultPolicy, p.Routes[0].policy}))
	assert.Equal(t, FilterSkip{Methods: []string{"PATCH", "POST"}}, filterSkip([]*idempotency.Policy{p.defaultPolicy, plan(t, istioPolicies+istioEnvoy+"  routes: [{name: pay, policy: pay}]\n").Routes[0].policy}),
		"a key-required policy needs keyless requests")
}

func TestKubeRefusals(t *testing.T) {
	sidecar := Kube{Name: "gopotency", Namespace: "shop", Selector: map[string]string{"app": "orders"}}
	eg := Kube{Name: "gopotency", Namespace: "shop", HTTPRoutes: []HTTPRouteRef{{Name: "orders"}}, Gateway: "shop"}
	egEnvoy := "envoy: {ext_proc_address: gopotency.gopotency.svc:9002}\n"
	for name, tc := range map[string]struct {
		yaml   string
		target Target
		k      Kube
		want   string
	}{
		"istio body-first":       {istioPolicies + istioEnvoy + "  body_first: true\n", TargetIstioSidecar, sidecar, "body_first: not under Istio"},
		"istio no selector":      {istioPolicies + istioEnvoy, TargetIstioGateway, Kube{Name: "gopotency", Namespace: "x"}, "a workload selector is required"},
		"istio bad namespace":    {istioPolicies + istioEnvoy, TargetIstioSidecar, Kube{Name: "gopotency", Namespace: "Shop", Selector: sidecar.Selector}, `namespace "Shop"`},
		"istio socket":           {istioPolicies + "envoy: {ext_proc_address: unix:///run/gp.sock}\n", TargetIstioSidecar, sidecar, "a unix socket cannot be reached"},
		"istio ip":               {istioPolicies + "envoy: {ext_proc_address: 10.0.0.1:9002}\n", TargetIstioSidecar, sidecar, "is an IP address"},
		"istio short name":       {istioPolicies + egEnvoy, TargetIstioSidecar, sidecar, "add the cluster domain"},
		"istio clusters":         {istioPolicies + istioEnvoy + "  clusters: [{name: app, address: a:1}]\n", TargetIstioGateway, gatewayKube, "leave clusters out"},
		"istio route timeout":    {istioPolicies + istioEnvoy + "  routes: [{name: pay, policy: pay, timeout: 3s}]\n", TargetIstioGateway, gatewayKube, "cluster and timeout are the VirtualService's"},
		"gateway route prefix":   {istioPolicies + istioEnvoy + "  routes: [{prefix: /pay, policy: pay}]\n", TargetIstioGateway, gatewayKube, "set name, and leave the prefix"},
		"sidecar two routes":     {istioPolicies + istioEnvoy + "  routes: [{prefix: /pay, policy: pay}, {prefix: /}]\n", TargetIstioSidecar, sidecar, "an inbound sidecar has one route"},
		"sidecar port on gw":     {istioPolicies + istioEnvoy, TargetIstioGateway, Kube{Name: "gopotency", Namespace: "x", Selector: sidecar.Selector, Port: 80}, "only an Istio sidecar's inbound port"},
		"eg body-first":          {"envoy: {ext_proc_address: gopotency.gopotency.svc:9002, body_first: true, routes: [{prefix: /}]}\n", TargetEnvoyGateway, eg, "body_first: not under Envoy Gateway"},
		"eg max message timeout": {"ext_proc: {max_message_timeout: 5s}\n" + egEnvoy, TargetEnvoyGateway, eg, "Envoy Gateway cannot set the filter's max_message_timeout"},
		"eg routes":              {"policies: {pay: {}}\nenvoy: {ext_proc_address: gopotency.gopotency.svc:9002, routes: [{prefix: /, policy: pay}]}\n", TargetEnvoyGateway, eg, "Envoy Gateway's routes are HTTPRoutes"},
		"eg no route":            {egEnvoy, TargetEnvoyGateway, Kube{Name: "gopotency", Namespace: "shop"}, "at least one HTTPRoute"},
		"eg foreign route name":  {"policies: {pay: {}}\next_proc: {route_policies: {httproute/other/orders/: pay}}\n" + egEnvoy, TargetEnvoyGateway, eg, `"httproute/other/orders/" names no route`},
		"eg selector":            {egEnvoy, TargetEnvoyGateway, Kube{Name: "gopotency", Namespace: "shop", HTTPRoutes: eg.HTTPRoutes, Selector: sidecar.Selector}, "Envoy Gateway attaches to HTTPRoutes"},
		"eg not a service":       {"envoy: {ext_proc_address: gopotency:9002}\n", TargetEnvoyGateway, eg, "is not a Service's DNS name"},
		"eg no gateway":          {egEnvoy, TargetEnvoyGateway, Kube{Name: "gopotency", Namespace: "shop", HTTPRoutes: eg.HTTPRoutes}, "name the Gateway the HTTPRoutes attach to (--gateway"},
		"eg bad gateway":         {egEnvoy, TargetEnvoyGateway, Kube{Name: "gopotency", Namespace: "shop", HTTPRoutes: eg.HTTPRoutes, Gateway: "Shop"}, `gateway "Shop"`},
		"istio gateway name":     {istioPolicies + istioEnvoy, TargetIstioGateway, Kube{Name: "gopotency", Namespace: "x", Selector: gatewayKube.Selector, Gateway: "shop"}, "a Gateway are Envoy Gateway's"},
		"eg grpc":                {egEnvoy, TargetEnvoyGateway, Kube{Name: "gopotency", Namespace: "shop", HTTPRoutes: eg.HTTPRoutes, Gateway: "shop", GRPC: true}, "under Envoy Gateway name the GRPCRoutes (--grpc-route)"},
		"eg odd timeout":         {"envoy: {ext_proc_address: gopotency.gopotency.svc:9002, message_timeout: 1500100us}\n", TargetEnvoyGateway, eg, "whole milliseconds"},
		"envoy without clusters": {istioPolicies + istioEnvoy + "  routes: [{prefix: /}]\n", TargetEnvoy, Kube{}, "at least one upstream cluster"},
		"envoy without routes":   {envoySection, TargetEnvoy, Kube{}, "at least one route is required"},
		"envoy named route only": {envoySection + "  routes: [{name: pay}]\n", TargetEnvoy, Kube{}, "plain Envoy routes by path: set prefix"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := generate(t, tc.yaml, tc.target, tc.k)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestIstioGRPC: with Kube.GRPC a second filter takes the gRPC calls on a
// full-duplex stream, the first skips them, and a gateway's route patches
// configure both (pkg/e2e TestIstioSidecarGRPC runs a sidecar's through
// Istio and Envoy).
func TestIstioGRPC(t *testing.T) {
	k := gatewayKube
	k.GRPC = true
	out, err := generate(t, istioPolicies+istioEnvoy+"  routes: [{name: pay, policy: pay}, {name: static, disabled: true}]\n", TargetIstioGateway, k)
	require.NoError(t, err)
	var ef map[string]any
	require.NoError(t, yaml.Unmarshal(out, &ef))
	var filters []string
	for _, p := range ef["spec"].(map[string]any)["configPatches"].([]any) {
		p := p.(map[string]any)
		value := p["patch"].(map[string]any)["value"].(map[string]any)
		switch p["applyTo"] {
		case "HTTP_FILTER":
			filters = append(filters, value["name"].(string))
			mode := value["typed_config"].(map[string]any)["extension_config"].(map[string]any)["typed_config"].(map[string]any)["processing_mode"].(map[string]any)
			assert.Equal(t, value["name"] == GRPCFilterName, mode["request_body_mode"] == "FULL_DUPLEX_STREAMED", value["name"])
		case "HTTP_ROUTE":
			per := value["typed_per_filter_config"].(map[string]any)
			assert.Len(t, per, 2)
			assert.Equal(t, per[extProcFilterName], per[GRPCFilterName], "the same policy or the same disabling for both")
		}
	}
	assert.Equal(t, []string{extProcFilterName, GRPCFilterName}, filters)
	plain, err := generate(t, istioPolicies+istioEnvoy+"  routes: [{name: pay, policy: pay}, {name: static, disabled: true}]\n", TargetIstioGateway, gatewayKube)
	require.NoError(t, err)
	assert.NotContains(t, string(plain), GRPCFilterName)
	assert.NotContains(t, string(plain), "application/grpc")
}

func TestGatewayDuration(t *testing.T) {
	for in, want := range map[string]string{"1s": "1s", "1.5s": "1s500ms", "90s": "1m30s", "250ms": "250ms", "2h0m1s": "2h1s"} {
		d, err := time.ParseDuration(in)
		require.NoError(t, err)
		got, err := gatewayDuration(d)
		require.NoError(t, err)
		assert.Equal(t, want, got, in)
	}
}

func TestEnvoyGatewayAttributes(t *testing.T) {
	out, err := generate(t, `
default_policy: {scope_principal: true}
policies: {pay: {key_required: true}}
ext_proc: {route_policies: {"httproute/shop/orders/rule/1/": pay}}
`+"envoy: {ext_proc_address: gopotency.gopotency.svc:9002}\n", TargetEnvoyGateway, Kube{Name: "gp", Namespace: "shop", HTTPRoutes: []HTTPRouteRef{{Name: "orders", Rule: "pay"}}, Gateway: "shop"})
	require.NoError(t, err)
	s := string(out)
	assert.Contains(t, s, `attributes: ["connection.mtls", "connection.uri_san_peer_certificate", "connection.subject_peer_certificate", "xds.route_name"]`)
	assert.Contains(t, s, "name: orders, sectionName: pay}")
	assert.Contains(t, s, "- {group: \"\", kind: Service, name: gopotency, namespace: gopotency, port: 9002}")
	assert.NotContains(t, s, "request.headers", fmt.Sprintf("no header attribute:\n%s", s))
	assert.False(t, strings.Contains(s, "gopotency-contract"), "no contract token")
}

// TestEnvoyGatewayBufferLimit: the ClientTrafficPolicy's bufferLimit is
// the plan's, above the largest max_request_body of the default policy and
// of those route_policies choose; without a Gateway it is refused unless
// no policy reads request bodies, and then none is written.
func TestEnvoyGatewayBufferLimit(t *testing.T) {
	k := Kube{Name: "gp", Namespace: "shop", HTTPRoutes: []HTTPRouteRef{{Name: "orders"}}, Gateway: "web"}
	egEnvoy := "envoy: {ext_proc_address: gopotency.gopotency.svc:9002}\n"
	for cfg, want := range map[string]int{
		egEnvoy: 1<<20 + BufferMargin,
		"default_policy: {max_request_body: 4000000}\n" + egEnvoy:                                                           4000000 + BufferMargin,
		"policies: {up: {max_request_body: 8000000}}\next_proc: {route_policies: {httproute/shop/orders/: up}}\n" + egEnvoy: 8000000 + BufferMargin,
	} {
		out, err := generate(t, cfg, TargetEnvoyGateway, k)
		require.NoError(t, err)
		var docs []map[string]any
		for d := range strings.SplitSeq(string(out), "\n---\n") {
			var m map[string]any
			require.NoError(t, yaml.Unmarshal([]byte(d), &m))
			docs = append(docs, m)
		}
		require.Len(t, docs, 2, cfg)
		ctp := docs[1]
		assert.Equal(t, "ClientTrafficPolicy", ctp["kind"])
		assert.Equal(t, map[string]any{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "web"}, ctp["spec"].(map[string]any)["targetRefs"].([]any)[0])
		assert.Equal(t, want, ctp["spec"].(map[string]any)["connection"].(map[string]any)["bufferLimit"], cfg)
	}
	k.Gateway = ""
	out, err := generate(t, "default_policy: {fingerprint: headers-only}\n"+egEnvoy, TargetEnvoyGateway, k)
	require.NoError(t, err, "no policy reads bodies: the listener's default buffer is enough")
	assert.NotContains(t, string(out), "ClientTrafficPolicy")
	_, err = generate(t, "default_policy: {fingerprint: headers-only}\npolicies: {a: {auto_key: {body: true}}}\next_proc: {route_policies: {httproute/shop/orders/: a}}\n"+egEnvoy, TargetEnvoyGateway, k)
	require.ErrorContains(t, err, "--gateway", "a body-derived key reads the body")
}

// TestMatcherCountsRoutePolicies: a policy chosen by route name
// (ext_proc.route_policies) is one the filter applies, so its methods and
// its keyless requests must not be skipped either.
func TestMatcherCountsRoutePolicies(t *testing.T) {
	base := istioPolicies + istioEnvoy
	out, err := generate(t, base, TargetIstioGateway, gatewayKube)
	require.NoError(t, err)
	assert.Contains(t, string(out), `header_name: "idempotency-key"`, "every policy here has an optional key")
	out, err = generate(t, strings.Replace(base, "store_timeout: 500ms\n", "store_timeout: 500ms\next_proc: {route_policies: {refunds: pay}}\n", 1)+
		"", TargetIstioGateway, gatewayKube)
	require.NoError(t, err)
	assert.NotContains(t, string(out), `header_name: "idempotency-key"`, "pay requires a key: keyless requests must reach GoPotency")
}

// TestIstioGatewayMatchNames: Istio names the Envoy route of a match that
// has a name "<route>.<match>", and an HTTP_ROUTE patch matches names
// exactly, so the patches take every name Istio builds, and a route the
// VirtualServices do not have is refused rather than left to miss.
func TestIstioGatewayMatchNames(t *testing.T) {
	vs, err := ParseVirtualServices([]byte(`
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders, namespace: shop}
spec:
  http:
  - name: pay
    match: [{name: card, uri: {prefix: /pay/card}}, {name: iban, uri: {prefix: /pay/iban}}, {uri: {prefix: /pay}}]
  - name: static
`))
	require.NoError(t, err)
	require.Equal(t, []VirtualService{{Name: "orders", Namespace: "shop", HTTP: []VirtualServiceHTTP{
		{Name: "pay", MatchNames: []string{"card", "iban", ""}}, {Name: "static"}}}}, vs)
	k := gatewayKube
	k.VirtualServices = vs
	out, err := generate(t, istioPolicies+istioEnvoy+"  routes: [{name: pay, policy: pay}, {name: static, disabled: true}]\n", TargetIstioGateway, k)
	require.NoError(t, err)
	var names []string
	var ef map[string]any
	require.NoError(t, yaml.Unmarshal(out, &ef))
	for _, p := range ef["spec"].(map[string]any)["configPatches"].([]any) {
		if p := p.(map[string]any); p["applyTo"] == "HTTP_ROUTE" {
			names = append(names, p["match"].(map[string]any)["routeConfiguration"].(map[string]any)["vhost"].(map[string]any)["route"].(map[string]any)["name"].(string))
		}
	}
	assert.Equal(t, []string{"pay", "pay.card", "pay.iban", "static"}, names)

	for name, tc := range map[string]struct {
		routes string
		vs     []VirtualService
		want   string
	}{
		"unknown route":   {"[{name: refunds, policy: pay}]", vs, `no http route named "refunds"`},
		"envoy name":      {"[{name: pay.card, policy: pay}]", vs, `no http route named "pay.card"`},
		"no vs":           {"[{name: pay, policy: pay}]", nil, "give the VirtualServices"},
		"duplicate route": {"[{name: pay, policy: pay}]", append(slices.Clone(vs), VirtualService{Name: "b", Namespace: "shop", HTTP: []VirtualServiceHTTP{{Name: "pay"}}}), "is in shop/orders, shop/b"},
	} {
		t.Run(name, func(t *testing.T) {
			k.VirtualServices = tc.vs
			_, err := generate(t, istioPolicies+istioEnvoy+"  routes: "+tc.routes+"\n", TargetIstioGateway, k)
			require.ErrorContains(t, err, tc.want)
		})
	}
	k.VirtualServices = vs
	_, err = generate(t, istioPolicies+istioEnvoy, TargetIstioSidecar, Kube{Name: "gopotency", Namespace: "shop", Selector: map[string]string{"app": "orders"}, VirtualServices: vs})
	require.ErrorContains(t, err, "an inbound sidecar has one route")
}

// TestIstioListenerBufferLimit: Istio leaves Envoy's 1 MiB buffer limit,
// so the EnvoyFilter raises it above the largest max_request_body of the
// policies that need bodies, the same limit plain Envoy gets.
func TestIstioListenerBufferLimit(t *testing.T) {
	limit := func(t *testing.T, cfg string, target Target, k Kube) any {
		t.Helper()
		out, err := generate(t, cfg, target, k)
		require.NoError(t, err)
		var ef map[string]any
		require.NoError(t, yaml.Unmarshal(out, &ef))
		var got any
		for _, p := range ef["spec"].(map[string]any)["configPatches"].([]any) {
			if p := p.(map[string]any); p["applyTo"] == "LISTENER" {
				require.Nil(t, got, "one LISTENER patch")
				got = p["patch"].(map[string]any)["value"].(map[string]any)["per_connection_buffer_limit_bytes"]
				if target == TargetIstioSidecar {
					assert.Equal(t, map[string]any{"name": "virtualInbound"}, p["match"].(map[string]any)["listener"])
				}
			}
		}
		return got
	}
	sidecar := Kube{Name: "gopotency", Namespace: "shop", Selector: map[string]string{"app": "orders"}}
	assert.Equal(t, 1<<20+BufferMargin, limit(t, istioPolicies+istioEnvoy, TargetIstioSidecar, sidecar), "the default cap")
	big := "default_policy: {max_request_body: 3000000}\npolicies: {pay: {max_request_body: 5000000}, none: {fingerprint: none, max_request_body: 9000000}}\n"
	assert.Equal(t, 5000000+BufferMargin, limit(t, big+istioEnvoy+"  routes: [{name: pay, policy: pay}, {name: orders, policy: none}]\n", TargetIstioGateway, gatewayKube),
		"the largest cap of a policy that needs the body")
	assert.Equal(t, 3000000+BufferMargin, limit(t, big+istioEnvoy, TargetIstioGateway, gatewayKube), "default_policy guards every other gateway route")
	assert.Nil(t, limit(t, "default_policy: {fingerprint: none}\n"+istioEnvoy, TargetIstioSidecar, sidecar), "no body needed: Envoy's default stands")
}
