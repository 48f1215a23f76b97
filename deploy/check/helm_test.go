package check

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The Helm chart (deploy/helm/gopotency) renders the server and each
// form's Envoy side from values; the kustomize overlays ship the same
// objects as files. Neither is generated from the other (the overlays stay
// plain, patchable kustomize; the chart takes any configuration), so these
// tests are what keeps them one design: every form the chart renders passes
// the overlays' checks, its generated objects are what pkg/envoyconfig
// generates from the chart's own ConfigMap, and with each overlay's values
// (ci/<overlay>-values.yaml) it renders exactly the overlay's objects.

var chart = filepath.Join(repo, "deploy", "helm", "gopotency")

// helmBin is the Helm CLI `make helm` builds (GOPOTENCY_HELM).
func helmBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("GOPOTENCY_HELM")
	if bin == "" {
		if os.Getenv("GOPOTENCY_REQUIRE_SERVICES") == "1" {
			t.Fatal("GOPOTENCY_REQUIRE_SERVICES=1: GOPOTENCY_HELM is not set (make helm builds it; make test-deploy sets it)")
		}
		t.Skip("needs the Helm CLI: make helm, then GOPOTENCY_HELM=.cache/bin/helm-<version> (make test-deploy does both)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("GOPOTENCY_HELM: %v (make helm builds it)", err)
	}
	return bin
}

// helm runs the Helm CLI and returns its standard output, or an error with
// its standard error.
func helm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), helmBin(t), args...)
	// No repositories, plugins or caches of the user's: the chart has no
	// dependencies, so nothing is fetched.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("helm %s: %w: %s%s", strings.Join(args, " "), err, stderr.String(), out)
	}
	return out, nil
}

// helmRender lints the chart and renders it with the given values files
// and extra values (YAML), as release gopotency in namespace gopotency,
// and decodes the objects like an overlay's: strictly, against the CRD
// schemas.
func helmRender(t *testing.T, valueFiles []string, extra string) Objects {
	t.Helper()
	args := []string{"--namespace", "gopotency"}
	for _, f := range valueFiles {
		args = append(args, "-f", filepath.Join(chart, f))
	}
	if extra != "" {
		p := filepath.Join(t.TempDir(), "extra-values.yaml")
		if err := os.WriteFile(p, []byte(extra), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-f", p)
	}
	if out, err := helm(t, append([]string{"lint", "--strict", chart}, args...)...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err := helm(t, append([]string{"template", "gopotency", chart}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	objs, errs := Decode(t.Context(), out, schemas(t))
	for _, err := range errs {
		t.Error(err)
	}
	if len(objs) == 0 {
		t.Fatal("no objects rendered")
	}
	return objs
}

// helmForms maps each overlay to the chart values that stand for it.
var helmForms = map[string]string{
	"envoy":         "ci/envoy-values.yaml",
	"envoy-mtls":    "ci/envoy-mtls-values.yaml",
	"istio-sidecar": "ci/istio-sidecar-values.yaml",
	"istio-gateway": "ci/istio-gateway-values.yaml",
	"envoy-gateway": "ci/envoy-gateway-values.yaml",
}

// overlayOnly are the objects an overlay ships that the chart does not
// render: the namespace (helm install --create-namespace; label it for
// Istio injection yourself) and the example application's own routing,
// which the generated objects attach to.
var overlayOnly = map[string]bool{"Namespace": true, "VirtualService": true, "Gateway": true, "HTTPRoute": true}

// TestHelmChartRendersTheOverlays: for each overlay, the chart with the
// overlay's values renders, passes the overlays' checks (strict decoding,
// CRD schemas, the Deployment and what refers to it, the generated
// objects), and its objects equal the overlay's, normalised.
func TestHelmChartRendersTheOverlays(t *testing.T) {
	for _, overlay := range slices.Sorted(maps.Keys(helmForms)) {
		t.Run(overlay, func(t *testing.T) {
			objs := helmRender(t, []string{helmForms[overlay]}, "")
			kustomized := rendered(t, overlay)
			checkChartObjects(t, objs, kustomized)

			hashed := generatedNames(kustomized)
			want := map[string]any{}
			for _, o := range kustomized {
				if !overlayOnly[o.GVK.Kind] {
					o.Name = cmp.Or(hashed[o.Name], o.Name)
					want[o.String()] = o.Raw
				}
			}
			got := map[string]any{}
			for _, o := range objs {
				got[o.String()] = o.Raw
			}
			for _, k := range slices.Sorted(maps.Keys(want)) {
				if _, ok := got[k]; !ok {
					t.Errorf("%s: the overlay ships it, the chart does not render it", k)
				}
			}
			for _, k := range slices.Sorted(maps.Keys(got)) {
				w, ok := want[k]
				if !ok {
					t.Errorf("%s: the chart renders it, the overlay does not ship it", k)
					continue
				}
				g, w := normalise(got[k], nil), normalise(w, hashed)
				if !equalJSON(g, w) {
					t.Errorf("%s differs between the chart and the overlay:\n%s", k, jsonDiff(w, g))
				}
			}
		})
	}
}

// checkChartObjects runs the overlays' checks on a chart rendering;
// kustomized lends the example application's VirtualServices, which an
// Istio gateway's route patches are generated against.
func checkChartObjects(t *testing.T, objs, kustomized Objects) {
	t.Helper()
	d, errs := CheckGoPotency(objs, "gopotency")
	for _, err := range errs {
		t.Error(err)
	}
	if d == nil || d.Config == nil {
		t.FailNow()
	}
	withApp := append(slices.Clone(objs), kustomized.OfKind("VirtualService")...)
	got, errs := checkGenerated(t, withApp, d.Config)
	for _, err := range errs {
		t.Error(err)
	}
	if d.Config.Envoy != nil && got["EnvoyFilter"]+got["EnvoyExtensionPolicy"] != 1 {
		t.Errorf("the configuration has an envoy section but the chart rendered %v generated objects", got)
	}
}

// generatedNames maps kustomize's hashed ConfigMap and Secret names
// (gopotency-config-<hash>) to the names the chart gives them.
func generatedNames(objs Objects) map[string]string {
	hashed := map[string]string{}
	for _, o := range objs {
		if o.GVK.Kind != "ConfigMap" && o.GVK.Kind != "Secret" {
			continue
		}
		if i := strings.LastIndex(o.Name, "-"); i > 0 && len(o.Name)-i-1 == 10 {
			hashed[o.Name] = o.Name[:i]
		}
	}
	return hashed
}

// dropped are what the two tools add of their own: Helm's release labels
// (the instance label also in selectors, so that two releases never
// select each other's pods), and the config checksum that rolls the pods
// (kustomize renames the ConfigMap instead).
var dropped = map[string]bool{"app.kubernetes.io/instance": true, "checksum/config": true}

// normalise returns obj as the comparison sees it: object labels left out
// (nothing selects by them but the ServiceMonitor, checked on its own),
// the tools' own labels and annotations dropped everywhere, kustomize's
// hashed names replaced, and gopotency.yaml parsed, so comments, order and
// quoting do not count.
func normalise(obj any, hashed map[string]string) any {
	var walk func(v any) any
	walk = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			out := map[string]any{}
			for k, x := range v {
				if dropped[k] {
					continue
				}
				if w := walk(x); w != nil || x == nil {
					out[k] = w
				}
			}
			if len(out) == 0 && len(v) > 0 {
				return nil // held only what is dropped
			}
			return out
		case []any:
			out := make([]any, len(v))
			for i, x := range v {
				out[i] = walk(x)
			}
			return out
		case string:
			if n, ok := hashed[v]; ok {
				return n
			}
		}
		return v
	}
	m := walk(obj).(map[string]any)
	if meta, ok := m["metadata"].(map[string]any); ok {
		delete(meta, "labels")
	}
	if data, ok := m["data"].(map[string]any); ok && m["kind"] == "ConfigMap" {
		if s, ok := data["gopotency.yaml"].(string); ok {
			var parsed any
			if err := yaml.Unmarshal([]byte(s), &parsed); err == nil {
				data["gopotency.yaml"] = parsed
			}
		}
	}
	return m
}

// jsonDiff lists the paths where two decoded objects differ.
func jsonDiff(want, got any) string {
	var out []string
	var walk func(path string, w, g any)
	walk = func(path string, w, g any) {
		wm, wok := w.(map[string]any)
		gm, gok := g.(map[string]any)
		if wok && gok {
			for _, k := range slices.Sorted(maps.Keys(wm)) {
				walk(path+"."+k, wm[k], gm[k])
			}
			for _, k := range slices.Sorted(maps.Keys(gm)) {
				if _, ok := wm[k]; !ok {
					walk(path+"."+k, nil, gm[k])
				}
			}
			return
		}
		wl, wok := w.([]any)
		gl, gok := g.([]any)
		if wok && gok && len(wl) == len(gl) {
			for i := range wl {
				walk(fmt.Sprintf("%s[%d]", path, i), wl[i], gl[i])
			}
			return
		}
		if !equalJSON(w, g) {
			wj, _ := json.Marshal(w)
			gj, _ := json.Marshal(g)
			out = append(out, fmt.Sprintf("  %s: overlay %s, chart %s", path, wj, gj))
		}
	}
	walk("", want, got)
	return strings.Join(out, "\n")
}

// TestHelmChartGeneratesWhatTheGeneratorDoes: the chart's Envoy side for
// configurations other than the overlays' (policies with other methods,
// key headers, body caps, scoping; named routes with named matches;
// route_policies) is, object for object, what `gopotency envoy-config`
// generates from the ConfigMap the chart renders beside it.
func TestHelmChartGeneratesWhatTheGeneratorDoes(t *testing.T) {
	const vs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.example.com]
  gateways: [istio-system/gateway]
  http:
  - name: refunds
    match: [{name: v1, uri: {prefix: /v1/refunds}}, {uri: {prefix: /refunds}}]
    route: [{destination: {host: api.shop.svc.cluster.local}}]
    retries: {attempts: 0}
  - name: health
    match: [{uri: {prefix: /healthz}}]
    route: [{destination: {host: api.shop.svc.cluster.local}}]
  - name: rest
    route: [{destination: {host: api.shop.svc.cluster.local}}]
    retries: {attempts: 0}
`
	for _, c := range []struct {
		name, file, values string
		vs                 string
		want               map[string]int
	}{
		{"sidecar with a named policy and a larger body cap", "ci/istio-sidecar-values.yaml", `
istioSidecar: {policy: payments, port: 0}
messageTimeout: 1500ms
config:
  policies:
    payments: {max_request_body: 4194304, methods: [POST, PUT]}
`, "", map[string]int{"EnvoyFilter": 1}},
		{"sidecar: keyed policies without bodies scoped on the mTLS peer", "ci/istio-sidecar-values.yaml", `
config:
  ext_proc: {max_message_timeout: 1m30s}
  default_policy: {fingerprint: headers-only, key_header: X-Request-Key, scope_principal: true}
  policies: null
`, "", map[string]int{"EnvoyFilter": 1}},
		{"gateway with named matches and several key headers and route_policies", "ci/istio-gateway-values.yaml", `
config:
  ext_proc: {route_policies: {"outbound|": refunds}}
  default_policy: {methods: [POST]}
  policies:
    payments: null
    refunds: {methods: [PUT, DELETE], key_header: Refund-Key, max_request_body: 2097152}
istioGateway:
  routes:
  - {name: refunds, policy: refunds, matchNames: [v1, ""]}
  - {name: health, disabled: true}
`, vs, map[string]int{"EnvoyFilter": 1}},
		{"envoy gateway with route_policies and a rule and an auto_key from the address", "ci/envoy-gateway-values.yaml", `
messageTimeout: 1m1s
config:
  ext_proc: {route_policies: {"httproute/shop/orders/rule/0/": big}}
  policies:
    big: {max_request_body: 8388608, auto_key: {source_address: true, headers: [X-Order]}}
envoyGateway:
  httpRoutes: [{name: orders}, {name: orders-v2, rule: write}]
`, "", map[string]int{"EnvoyExtensionPolicy": 1, "ClientTrafficPolicy": 1}},
		{"envoy gateway without a Gateway: bodies not read", "ci/envoy-gateway-values.yaml", `
config:
  default_policy: {fingerprint: none}
envoyGateway: {gateway: ""}
`, "", map[string]int{"EnvoyExtensionPolicy": 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := helmRender(t, []string{c.file}, c.values)
			d, errs := CheckGoPotency(objs, "gopotency")
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if c.vs != "" {
				app, errs := Decode(t.Context(), []byte(c.vs), schemas(t))
				if len(errs) > 0 {
					t.Fatal(errs)
				}
				objs = append(objs, app...)
			}
			got, errs := checkGenerated(t, objs, d.Config)
			for _, err := range errs {
				t.Error(err)
			}
			for _, k := range []string{"EnvoyFilter", "EnvoyExtensionPolicy", "ClientTrafficPolicy"} {
				if got[k] != c.want[k] {
					t.Errorf("%d %s, want %d", got[k], k, c.want[k])
				}
			}
		})
	}
}

// TestHelmChartRefusesBadValues: values the chart cannot serve fail with
// the value to fix in the message: the schema (values.schema.json) fails
// helm lint and helm template alike; what only the templates can tell
// (they see the whole configuration) fails helm template and install.
func TestHelmChartRefusesBadValues(t *testing.T) {
	for _, c := range []struct {
		name, values, want string
		schema             bool
	}{
		{"unknown form", "form: linkerd\n", "form", true},
		{"misspelt value", "replicas: 3\n", "replicas", true},
		{"no store", "store: {url: \"\"}\n", "store", true},
		{"memory store", "store: {url: \"memory://\"}\n", "store", true},
		{"both store sources", "store: {existingSecret: mine}\n", "store", true},
		{"envoy section by hand", "config: {envoy: {ext_proc_address: x:1}}\n", "envoy", true},
		{"sidecar without a selector", "form: istio-sidecar\nistioSidecar: {namespace: shop, serviceAccount: orders}\n", "selector", true},
		{"envoy gateway without routes", "form: envoy-gateway\nenvoyGateway: {httpRoutes: []}\n", "httpRoutes", true},
		{"envoy gateway with max_message_timeout", "form: envoy-gateway\nconfig: {ext_proc: {max_message_timeout: 30s}}\nenvoyGateway: {namespace: shop, httpRoutes: [{name: orders}], gateway: shop}\n", "max_message_timeout", true},
		{"gateway route without policy or disabled", "form: istio-gateway\nistioGateway: {routes: [{name: payments}]}\n", "routes", true},
		{"duration Envoy cannot take", "messageTimeout: 1.5s\n", "messageTimeout", true},
		{"body cap past Envoy's 32-bit buffer", "config: {default_policy: {max_request_body: 4294967295}}\n", "max_request_body", true},
		{"root", "podSecurityContext: {runAsNonRoot: false}\n", "runAsNonRoot", true},
		{"undefined policy", "form: istio-sidecar\nistioSidecar: {namespace: shop, selector: {app: orders}, serviceAccount: orders, policy: nope}\n", "istioSidecar.policy", false},
		{"route_policies naming an undefined policy", "form: istio-gateway\nconfig: {ext_proc: {route_policies: {x: nope}}}\n", "route_policies", false},
		{"envoy gateway route_policies naming no target", "form: envoy-gateway\nconfig: {ext_proc: {route_policies: {\"httproute/shop/other/\": payments}}}\nenvoyGateway: {namespace: shop, httpRoutes: [{name: orders}], gateway: shop}\n", "route_policies", false},
		{"envoy gateway reading bodies without a Gateway", "form: envoy-gateway\nenvoyGateway: {gateway: \"\"}\n", "envoyGateway.gateway", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(p, []byte(c.values), 0o600); err != nil {
				t.Fatal(err)
			}
			cmds := [][]string{{"template", "gopotency"}}
			if c.schema {
				cmds = append(cmds, []string{"lint", "--strict"})
			}
			for _, cmd := range cmds {
				base := "ci/envoy-values.yaml"
				if strings.Contains(c.values, "form: envoy-gateway") {
					base = "ci/envoy-gateway-values.yaml"
				}
				args := append(cmd, chart, "--namespace", "gopotency", "-f", filepath.Join(chart, base), "-f", p)
				_, err := helm(t, args...)
				if err == nil {
					t.Fatalf("helm %s accepted %q", cmd[0], c.values)
				}
				if !strings.Contains(err.Error(), c.want) {
					t.Errorf("helm %s: the error does not name %s:\n%v", cmd[0], c.want, err)
				}
			}
		})
	}
}

// TestHelmChartMetadata: the chart is one `helm package` can publish as an
// OCI artifact: versions set, and the packaged chart renders like the
// directory.
func TestHelmChartMetadata(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chart, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		APIVersion string `json:"apiVersion"`
		Name       string `json:"name"`
		Version    string `json:"version"`
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	semver := regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)
	if c.APIVersion != "v2" || c.Name != "gopotency" || !semver.MatchString(c.Version) || !semver.MatchString(c.AppVersion) {
		t.Fatalf("Chart.yaml: apiVersion %q name %q version %q appVersion %q", c.APIVersion, c.Name, c.Version, c.AppVersion)
	}
	dir := t.TempDir()
	if _, err := helm(t, "package", chart, "--destination", dir); err != nil {
		t.Fatal(err)
	}
	tgz := filepath.Join(dir, "gopotency-"+c.Version+".tgz")
	packaged, err := helm(t, "template", "gopotency", tgz, "--namespace", "gopotency", "-f", filepath.Join(chart, "ci/envoy-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	direct, err := helm(t, "template", "gopotency", chart, "--namespace", "gopotency", "-f", filepath.Join(chart, "ci/envoy-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(packaged, direct) {
		t.Error("the packaged chart renders differently from the directory (a file left out by .helmignore?)")
	}
}

// TestHelmChartExistingSecret: with store.existingSecret the chart creates
// no Secret and the pods read the URL from the one named, under its key.
func TestHelmChartExistingSecret(t *testing.T) {
	objs := helmRender(t, []string{"ci/envoy-values.yaml"}, "store: {url: \"\", existingSecret: shop-redis, existingSecretKey: redis-url}\n")
	if n := len(objs.OfKind("Secret")); n != 0 {
		t.Errorf("%d Secrets rendered, want none", n)
	}
	o, ok := objs.Find("Deployment", "gopotency", "gopotency")
	if !ok {
		t.Fatal("no Deployment")
	}
	var ref *corev1.SecretKeySelector
	for _, e := range o.Typed.(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Env {
		if e.Name == "GOPOTENCY_STORE" && e.ValueFrom != nil {
			ref = e.ValueFrom.SecretKeyRef
		}
	}
	if ref == nil || ref.Name != "shop-redis" || ref.Key != "redis-url" {
		t.Errorf("GOPOTENCY_STORE from %+v, want Secret shop-redis key redis-url", ref)
	}
}
