package check

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
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

// delimited returns the YAML between the BEGIN/END ext_proc filter config
// markers of a file, dedented, decoded.
func delimited(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := bytes.Cut(b, []byte("# BEGIN ext_proc filter config"))
	block, _, ok2 := bytes.Cut(rest, []byte("# END ext_proc filter config"))
	if !ok || !ok2 {
		t.Fatalf("%s: no BEGIN/END ext_proc filter config markers", path)
	}
	var lines []string
	for _, l := range strings.Split(string(block), "\n")[1:] {
		if strings.TrimSpace(l) != "" && !strings.HasPrefix(strings.TrimSpace(l), "#") {
			lines = append(lines, l)
		}
	}
	indent := len(lines[0]) - len(strings.TrimLeft(lines[0], " "))
	for i, l := range lines {
		lines[i] = l[min(indent, len(l)-len(strings.TrimLeft(l, " "))):]
	}
	m, err := YAMLToJSONObject([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatalf("%s: the delimited block: %v", path, err)
	}
	return m
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
	overlay, file string
	namespace     string
}

var istioFilters = []istioFilter{
	{"istio-sidecar", "envoyfilter.yaml", "shop"},
	{"istio-gateway", "envoyfilter.yaml", "istio-system"},
}

// TestIstioFilterIsEnvoyYAMLs: the delimited filter config of each
// EnvoyFilter equals envoy.yaml's, grpc_service and request_attributes
// aside: the Istio overlays route every guarded request headers first (the
// body-first routes of envoy.yaml, and the attribute contract they carry,
// are not generated for Istio yet).
func TestIstioFilterIsEnvoyYAMLs(t *testing.T) {
	want := shippedFilter(t)
	delete(want, "grpc_service")
	delete(want, "request_attributes")
	for _, f := range istioFilters {
		got := delimited(t, filepath.Join(repo, "deploy", "overlays", f.overlay, f.file))
		delete(got, "request_attributes")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the filter config differs from envoy.yaml's:\n got %v\nwant %v", f.overlay, got, want)
		}
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
			var filter map[string]any
			var routes []any
			for _, p := range at(ef.Raw, "spec", "configPatches").([]any) {
				switch at(p, "applyTo") {
				case "HTTP_FILTER":
					filter = at(p, "patch", "value").(map[string]any)
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
			cluster := at(filter, "typed_config", "grpc_service", "envoy_grpc", "cluster_name").(string)
			bootstrap := map[string]any{
				"static_resources": map[string]any{
					"listeners": []any{map[string]any{
						"name":    "l",
						"address": map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": 1}},
						"filter_chains": []any{map[string]any{"filters": []any{map[string]any{
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
						}}}},
					}},
					"clusters": []any{cluster2(cluster, true), cluster2("app", false)},
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
			mmt, err := time.ParseDuration(at(filter, "typed_config", "max_message_timeout").(string))
			if err != nil || d.Config.MaxMessageTimeout != mmt {
				t.Errorf("ext_proc.max_message_timeout %s, the filter's %v", d.Config.MaxMessageTimeout, at(filter, "typed_config", "max_message_timeout"))
			}
			checkIstioRoutes(t, objs, routes, d)
		})
	}
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
