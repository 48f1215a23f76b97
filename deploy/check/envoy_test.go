package check

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/gopotency/gopotency/pkg/extproc"
)

// shippedFilter is envoy/envoy.yaml's ext_proc typed_config.
func shippedFilter(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "envoy", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := YAMLToJSONObject(b)
	if err != nil {
		t.Fatal(err)
	}
	hcm := at(cfg, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config").(map[string]any)
	for _, f := range hcm["http_filters"].([]any) {
		if f.(map[string]any)["name"] == "envoy.filters.http.ext_proc" {
			return f.(map[string]any)["typed_config"].(map[string]any)
		}
	}
	t.Fatal("envoy.yaml has no ext_proc filter")
	return nil
}

// at walks maps (string keys) and lists (int indexes).
func at(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func envoyBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the Envoy binary")
	}
	bin, err := findEnvoy()
	if err != nil {
		if os.Getenv("GOPOTENCY_REQUIRE_SERVICES") == "1" {
			t.Fatalf("GOPOTENCY_REQUIRE_SERVICES=1: %v", err)
		}
		t.Skip(err)
	}
	return bin
}

// istioFilter is one overlay's EnvoyFilter, as rendered.
type istioFilter struct {
	overlay, namespace string
}

var istioFilters = []istioFilter{
	{"istio-sidecar", "shop"},
	{"istio-sidecar-jwt", "shop"},
	{"istio-gateway", "istio-system"},
}

// extProcOf returns the ExternalProcessor of an EnvoyFilter's
// HTTP_FILTER patch, unwrapped from its ExtensionWithMatcher, and the
// matcher (nil when there is none).
func extProcOf(t *testing.T, ef Object) (filter, extProc, matcher map[string]any) {
	t.Helper()
	for _, p := range asList(at(ef.Raw, "spec", "configPatches")) {
		if at(p, "applyTo") == "HTTP_FILTER" {
			filter, _ = at(p, "patch", "value").(map[string]any)
		}
	}
	tc, _ := at(filter, "typed_config").(map[string]any)
	switch tc["@type"] {
	case "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher":
		inner, _ := at(tc, "extension_config", "typed_config").(map[string]any)
		if at(tc, "extension_config", "name") != at(filter, "name") {
			t.Errorf("%s: the wrapped filter is named %v, the wrapper %v: ExtProcPerRoute addresses the wrapper's name", ef, at(tc, "extension_config", "name"), at(filter, "name"))
		}
		m, _ := tc["xds_matcher"].(map[string]any)
		return filter, inner, m
	case "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor":
		return filter, tc, nil
	}
	t.Fatalf("%s: no ext_proc HTTP_FILTER patch", ef)
	return nil, nil, nil
}

// TestIstioFilterIsEnvoyYAMLs: the ext_proc config of each EnvoyFilter is
// envoy.yaml's but for what each takes from its own configuration: the
// cluster (Istio's, for the gopotency Service) and request_attributes
// (envoy.yaml's routes go body-first and carry the attribute contract;
// Istio's go headers first and carry only what a header map cannot, from
// the overlay's policies). Both are rendered from one template over one
// Plan; this catches an edit that makes one target differ.
func TestIstioFilterIsEnvoyYAMLs(t *testing.T) {
	want := shippedFilter(t)
	delete(want, "grpc_service")
	delete(want, "request_attributes")
	for _, f := range istioFilters {
		t.Run(f.overlay, func(t *testing.T) {
			objs := rendered(t, f.overlay)
			ef, ok := objs.Find("EnvoyFilter", f.namespace, "gopotency")
			if !ok {
				t.Fatal("no EnvoyFilter")
			}
			_, got, _ := extProcOf(t, ef)
			got = deepCopy(got)
			attrs := asStrings(got["request_attributes"])
			delete(got, "grpc_service")
			delete(got, "request_attributes")
			if !reflect.DeepEqual(got, want) {
				t.Errorf("the filter config differs from envoy.yaml's:\n got %v\nwant %v", got, want)
			}
			d, errs := CheckGoPotency(objs, "gopotency")
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			c := extproc.NewContract(&d.Config.Default, d.Config.Policies, len(d.Config.RoutePolicies) > 0)
			var headersFirst []string
			for _, a := range c.Attributes {
				if !strings.HasPrefix(a, "request.") && a != c.TokenAttribute {
					headersFirst = append(headersFirst, a)
				}
			}
			if !slices.Equal(attrs, headersFirst) {
				t.Errorf("request_attributes %q; the overlay's policies need %q on headers-first streams", attrs, headersFirst)
			}
		})
	}
}

// TestIstioFiltersValidateInEnvoy wraps each EnvoyFilter's patches in a
// minimal bootstrap (the filter before the router; one route per
// HTTP_ROUTE patch; the cluster grpc_service names) and runs
// `envoy --mode validate`, then checks what the filter points at.
func TestIstioFiltersValidateInEnvoy(t *testing.T) {
	bin := envoyBin(t)
	for _, f := range istioFilters {
		t.Run(f.overlay, func(t *testing.T) {
			objs := rendered(t, f.overlay)
			ef, ok := objs.Find("EnvoyFilter", f.namespace, "gopotency")
			if !ok {
				t.Fatal("no EnvoyFilter")
			}
			extProc, routes := validateIstioFilter(t, bin, ef)
			cluster := at(extProc, "grpc_service", "envoy_grpc", "cluster_name").(string)

			// The cluster is Istio's for the gopotency Service's gRPC port.
			svc, _ := objs.Find("Service", "gopotency", "gopotency")
			var port int32
			for _, p := range svc.Typed.(*corev1.Service).Spec.Ports {
				if strings.HasPrefix(p.Name, "grpc") {
					port = p.Port
				}
			}
			if want := fmt.Sprintf("outbound|%d||gopotency.gopotency.svc.cluster.local", port); cluster != want {
				t.Errorf("grpc_service cluster %q, want %q", cluster, want)
			}
			// gopotency may extend the message timeout exactly as far as
			// the filter allows.
			d, _ := CheckGoPotency(objs, "gopotency")
			mmt, err := time.ParseDuration(at(extProc, "max_message_timeout").(string))
			if err != nil || d.Config.MaxMessageTimeout != mmt {
				t.Errorf("ext_proc.max_message_timeout %s, the filter's %v", d.Config.MaxMessageTimeout, at(extProc, "max_message_timeout"))
			}
			for _, md := range asList(at(extProc, "grpc_service", "initial_metadata")) {
				if _, ok := d.Config.Policies[fmt.Sprint(at(md, "value"))]; at(md, "key") == d.Config.PolicyHeader && !ok {
					t.Errorf("the filter selects policy %v, which gopotency does not have", at(md, "value"))
				}
			}
			checkIstioRoutes(t, objs, routes, d)
		})
	}
}

// validateIstioFilter wraps an EnvoyFilter's patches in a minimal
// bootstrap (the filter before the router; one route per HTTP_ROUTE
// patch, and a catch-all; the cluster grpc_service names) and runs
// `envoy --mode validate` on it. It returns the ExternalProcessor and the
// routes.
func validateIstioFilter(t *testing.T, bin string, ef Object) (extProc map[string]any, routes []any) {
	t.Helper()
	filter, extProc, _ := extProcOf(t, ef)
	listener := map[string]any{
		"name":    "l",
		"address": map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": 1}},
	}
	for _, p := range at(ef.Raw, "spec", "configPatches").([]any) {
		switch at(p, "applyTo") {
		case "LISTENER":
			// Merged into Istio's listener: its fields are a listener's.
			for k, v := range at(p, "patch", "value").(map[string]any) {
				listener[k] = v
			}
		case "HTTP_ROUTE":
			name := at(p, "match", "routeConfiguration", "vhost", "route", "name").(string)
			route := map[string]any{"name": name, "match": map[string]any{"path": "/" + name}, "route": map[string]any{"cluster": "app"}}
			for k, v := range at(p, "patch", "value").(map[string]any) {
				route[k] = v
			}
			routes = append(routes, route)
		}
	}
	routes = append(routes, map[string]any{"match": map[string]any{"prefix": "/"}, "route": map[string]any{"cluster": "app"}})
	cluster := at(extProc, "grpc_service", "envoy_grpc", "cluster_name").(string)
	listener["filter_chains"] = []any{map[string]any{"filters": []any{map[string]any{
		"name": "envoy.filters.network.http_connection_manager",
		"typed_config": map[string]any{
			"@type":       "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
			"stat_prefix": "l",
			"route_config": map[string]any{"virtual_hosts": []any{map[string]any{
				"name": "v", "domains": []any{"*"}, "routes": routes,
			}}},
			"http_filters": []any{filter, map[string]any{
				"name":         "envoy.filters.http.router",
				"typed_config": map[string]any{"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
			}},
		},
	}}}}
	bootstrap := map[string]any{
		"static_resources": map[string]any{
			"listeners": []any{listener},
			"clusters":  []any{cluster2(cluster, true), cluster2("app", false)},
		},
	}
	b, err := yaml.Marshal(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--mode", "validate", "-c", path).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("OK")) {
		t.Fatalf("envoy --mode validate: %v\n%s\nbootstrap:\n%s", err, out, b)
	}
	return extProc, routes
}

func cluster2(name string, grpc bool) map[string]any {
	c := map[string]any{
		"name": name, "type": "STATIC", "connect_timeout": "1s",
		"load_assignment": map[string]any{"cluster_name": name, "endpoints": []any{map[string]any{"lb_endpoints": []any{map[string]any{
			"endpoint": map[string]any{"address": map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": 9002}}},
		}}}}},
	}
	if grpc {
		c["typed_extension_protocol_options"] = map[string]any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
			"@type":                "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
			"explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}},
		}}
	}
	return c
}

// checkIstioRoutes: every route patch names a VirtualService route, every
// policy it selects exists in gopotency's configuration, and guarded
// routes do not retry.
func checkIstioRoutes(t *testing.T, objs Objects, routes []any, d *Deployment) {
	t.Helper()
	vsRoutes := map[string]map[string]any{}
	for _, vs := range objs.OfKind("VirtualService") {
		for _, r := range at(vs.Raw, "spec", "http").([]any) {
			name, _ := at(r, "name").(string)
			vsRoutes[name] = r.(map[string]any)
		}
	}
	disabled := map[string]bool{}
	for _, r := range routes[:len(routes)-1] {
		name := at(r, "name").(string)
		if _, ok := vsRoutes[name]; !ok {
			t.Errorf("route patch %q matches no VirtualService route", name)
		}
		pf := at(r, "typed_per_filter_config", "envoy.filters.http.ext_proc")
		if at(pf, "disabled") == true {
			disabled[name] = true
		}
		for _, md := range asList(at(pf, "overrides", "grpc_initial_metadata")) {
			if at(md, "key") == d.Config.PolicyHeader {
				if _, ok := d.Config.Policies[at(md, "value").(string)]; !ok {
					t.Errorf("route %q selects policy %v, which gopotency does not have", name, at(md, "value"))
				}
			}
		}
	}
	for name, r := range vsRoutes {
		if disabled[name] {
			continue
		}
		if a, _ := at(r, "retries", "attempts").(int64); at(r, "retries") == nil || a != 0 {
			t.Errorf("VirtualService route %q goes through the filter but may retry (set retries.attempts: 0)", name)
		}
	}
}

func asList(v any) []any { l, _ := v.([]any); return l }

// findEnvoy returns $ENVOY_BIN, envoy on PATH, or the one `make envoy`
// installs into the repository's .venv (the main module's
// internal/envoyrun.Find, which another module cannot import).
func findEnvoy() (string, error) {
	if p := os.Getenv("ENVOY_BIN"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("envoy"); err == nil {
		return p, nil
	}
	p := filepath.Join(repo, ".venv", "bin", "envoy")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("envoy not found: set ENVOY_BIN, put envoy on PATH, or run `make envoy`")
	}
	return p, nil
}
