package check

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/envoyconfig"
	"github.com/gopotency/gopotency/pkg/idempotency"
)

// generatedKinds are the kinds `gopotency envoy-config` writes, and how
// many of each an overlay ships.
var generatedKinds = map[string]map[string]int{
	"envoy":             {},
	"envoy-mtls":        {},
	"istio-sidecar":     {"EnvoyFilter": 1},
	"istio-sidecar-jwt": {"EnvoyFilter": 1},
	"istio-gateway":     {"EnvoyFilter": 1},
	"envoy-gateway":     {"EnvoyExtensionPolicy": 1},
}

// attachment reads back from a generated object the target and the
// Kubernetes names it was generated for.
func attachment(t *testing.T, o Object, objs Objects) (envoyconfig.Target, envoyconfig.Kube) {
	t.Helper()
	k := envoyconfig.Kube{Name: o.Name, Namespace: o.Namespace}
	switch o.GVK.Kind {
	case "EnvoyFilter":
		k.Selector = stringMap(at(o.Raw, "spec", "workloadSelector", "labels"))
		for _, p := range asList(at(o.Raw, "spec", "configPatches")) {
			if at(p, "applyTo") != "HTTP_FILTER" {
				continue
			}
			if n, ok := at(p, "match", "listener", "portNumber").(int64); ok {
				k.Port = int(n)
			}
			if at(p, "match", "context") == "GATEWAY" {
				k.VirtualServices = virtualServices(objs)
				return envoyconfig.TargetIstioGateway, k
			}
			return envoyconfig.TargetIstioSidecar, k
		}
		t.Fatalf("%s: no HTTP_FILTER patch", o)
	case "EnvoyExtensionPolicy":
		for _, r := range asList(at(o.Raw, "spec", "targetRefs")) {
			rule, _ := at(r, "sectionName").(string)
			k.HTTPRoutes = append(k.HTTPRoutes, envoyconfig.HTTPRouteRef{Name: at(r, "name").(string), Rule: rule})
		}
		return envoyconfig.TargetEnvoyGateway, k
	}
	t.Fatalf("%s is not generated", o)
	return "", k
}

// virtualServices are the overlay's VirtualServices, which an Istio
// gateway's route patches are generated from.
func virtualServices(objs Objects) []envoyconfig.VirtualService {
	var out []envoyconfig.VirtualService
	for _, o := range objs.OfKind("VirtualService") {
		vs := envoyconfig.VirtualService{Name: o.Name, Namespace: o.Namespace}
		for _, h := range asList(at(o.Raw, "spec", "http")) {
			name, _ := at(h, "name").(string)
			vh := envoyconfig.VirtualServiceHTTP{Name: name}
			for _, m := range asList(at(h, "match")) {
				mn, _ := at(m, "name").(string)
				vh.MatchNames = append(vh.MatchNames, mn)
			}
			vs.HTTP = append(vs.HTTP, vh)
		}
		out = append(out, vs)
	}
	return out
}

// checkGenerated reports every EnvoyFilter and EnvoyExtensionPolicy of
// objs that is not what `gopotency envoy-config` generates from cfg for
// the object's own names and attachment, and counts them by kind.
func checkGenerated(t *testing.T, objs Objects, cfg *config.Config) (map[string]int, []error) {
	t.Helper()
	var errs []error
	got := map[string]int{}
	for _, o := range objs {
		if o.GVK.Kind != "EnvoyFilter" && o.GVK.Kind != "EnvoyExtensionPolicy" {
			continue
		}
		got[o.GVK.Kind]++
		target, k := attachment(t, o, objs)
		out, err := envoyconfig.GenerateTarget(cfg, target, k, "deploy/check")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: the overlay's configuration does not generate: %w", o, err))
			continue
		}
		regenerated, derrs := Decode(t.Context(), out, schemas(t))
		if len(derrs) > 0 || len(regenerated) != 1 {
			errs = append(errs, fmt.Errorf("%s: the generated object does not decode: %v", o, derrs))
			continue
		}
		if !equalJSON(regenerated[0].Raw, o.Raw) {
			errs = append(errs, fmt.Errorf("%s is not what the overlay's gopotency configuration generates: regenerate it from that "+
				"configuration (make envoy-config; an overlay that changes the policies of an object it inherits needs one of its own). "+
				"Generated:\n%s", o, out))
		}
	}
	return got, errs
}

// TestGeneratedObjectsMatchTheirOverlay: every EnvoyFilter and
// EnvoyExtensionPolicy an overlay ships is what `gopotency envoy-config`
// generates from the configuration that overlay gives gopotency (its
// ConfigMap, as rendered), for the object's own names and attachment. An
// overlay whose policies changed without regenerating, or that inherits a
// filter generated for other policies, fails here.
func TestGeneratedObjectsMatchTheirOverlay(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			objs := rendered(t, overlay)
			d, errs := CheckGoPotency(objs, "gopotency")
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			want, ok := generatedKinds[overlay]
			if !ok {
				t.Fatalf("generatedKinds does not say what %s ships", overlay)
			}
			got, errs := checkGenerated(t, objs, d.Config)
			for _, err := range errs {
				t.Error(err)
			}
			for kind, n := range want {
				if got[kind] != n {
					t.Errorf("%d %s, want %d", got[kind], kind, n)
				}
			}
			for kind, n := range got {
				if want[kind] == 0 {
					t.Errorf("%d unexpected %s", n, kind)
				}
			}
		})
	}
}

// TestCheckGeneratedRejects: a policy change the object was not
// regenerated for, and a hand edit of the object, both fail.
func TestCheckGeneratedRejects(t *testing.T) {
	for _, c := range []struct {
		overlay string
		break_  func(Objects, *config.Config)
	}{
		{"istio-sidecar-jwt", func(_ Objects, c *config.Config) { c.Default.ScopePrincipal = true }},
		{"istio-gateway", func(_ Objects, c *config.Config) { c.Policies["payments"].KeyRequired = false }},
		{"istio-sidecar", func(os Objects, _ *config.Config) {
			ef := os.OfKind("EnvoyFilter")[0]
			p := at(ef.Raw, "spec", "configPatches", 0, "patch", "value", "typed_config", "extension_config", "typed_config").(map[string]any)
			p["message_timeout"] = "2s"
		}},
		{"envoy-gateway", func(_ Objects, c *config.Config) { c.RoutePolicies = map[string]string{"httproute/shop/orders/": "x"} }},
	} {
		t.Run(c.overlay, func(t *testing.T) {
			objs := rendered(t, c.overlay)
			d, _ := CheckGoPotency(objs, "gopotency")
			c.break_(objs, d.Config)
			if _, errs := checkGenerated(t, objs, d.Config); len(errs) == 0 {
				t.Fatal("no problem found")
			}
		})
	}
}

// skips evaluates the matcher of an ExtensionWithMatcher for a request
// with these headers (lower-case names, ":method" included): whether its
// SkipFilter action runs. It knows the constructs the generator writes and
// fails on any other, so it can be trusted to mean what Envoy does.
func skips(t *testing.T, matcher map[string]any, headers map[string]string) bool {
	t.Helper()
	var eval func(p any) bool
	eval = func(p any) bool {
		m, _ := p.(map[string]any)
		if len(m) != 1 {
			t.Fatalf("predicate %v: want exactly one of single_predicate, or_matcher, and_matcher, not_matcher", p)
		}
		for k, v := range m {
			switch k {
			case "not_matcher":
				return !eval(v)
			case "or_matcher", "and_matcher":
				ps := asList(at(v, "predicate"))
				if len(ps) < 2 {
					t.Fatalf("%s with %d predicates: Envoy wants at least 2", k, len(ps))
				}
				for _, q := range ps {
					if eval(q) == (k == "or_matcher") {
						return k == "or_matcher"
					}
				}
				return k == "and_matcher"
			case "single_predicate":
				if at(v, "input", "typed_config", "@type") != "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput" {
					t.Fatalf("input %v: not a request header", at(v, "input"))
				}
				re, ok := at(v, "value_match", "safe_regex", "regex").(string)
				if !ok || at(v, "value_match", "safe_regex", "google_re2") == nil {
					t.Fatalf("value_match %v: want safe_regex with google_re2", at(v, "value_match"))
				}
				val, present := headers[at(v, "input", "typed_config", "header_name").(string)]
				// An absent input matches nothing; RE2 matches fully.
				return present && regexp.MustCompile("^(?:"+re+")$").MatchString(val)
			}
			t.Fatalf("predicate %s: not one the generator writes", k)
		}
		return false
	}
	ms := asList(at(matcher, "matcher_list", "matchers"))
	if len(ms) != 1 || at(ms[0], "on_match", "action", "typed_config", "@type") != "type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter" || matcher["on_no_match"] != nil {
		t.Fatalf("matcher %v: want one matcher whose action is SkipFilter", matcher)
	}
	return eval(at(ms[0], "predicate"))
}

// reachable returns the policies an Istio filter can apply: the one its
// grpc_service names, else default_policy and those its route patches
// and route_policies name.
func reachable(t *testing.T, ef Object, extProc map[string]any, c *config.Config) map[string]*idempotency.Policy {
	t.Helper()
	out := map[string]*idempotency.Policy{}
	named := func(v any) {
		p, ok := c.Policies[fmt.Sprint(v)]
		if !ok {
			t.Fatalf("%s names policy %v, which gopotency does not have", ef, v)
		}
		out[fmt.Sprint(v)] = p
	}
	for _, md := range asList(at(extProc, "grpc_service", "initial_metadata")) {
		if at(md, "key") == c.PolicyHeader {
			named(at(md, "value"))
			return out
		}
	}
	out["default_policy"] = &c.Default
	for _, p := range asList(at(ef.Raw, "spec", "configPatches")) {
		for _, md := range asList(at(p, "patch", "value", "typed_per_filter_config", "envoy.filters.http.ext_proc", "overrides", "grpc_initial_metadata")) {
			if at(md, "key") == c.PolicyHeader {
				named(at(md, "value"))
			}
		}
	}
	for _, name := range c.RoutePolicies {
		named(name)
	}
	return out
}

// checkMatcher evaluates an EnvoyFilter's matcher against the policies
// it can apply: no request one of them guards is skipped (a keyed request
// of a guarded method; on a key-required or auto_key policy, a keyless
// one too, which must get its 400), and GET, HEAD and, where every
// policy's key is optional, keyless requests are (no ext_proc stream).
func checkMatcher(t *testing.T, matcher map[string]any, pols map[string]*idempotency.Policy) []error {
	t.Helper()
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if matcher == nil {
		return []error{fmt.Errorf("the filter has no matcher: every request opens a stream")}
	}
	allOptional := true
	for name, p := range pols {
		key := strings.ToLower(p.KeyHeader)
		needed := p.KeyRequired || p.AutoKey != nil
		allOptional = allOptional && !needed
		for _, m := range p.Methods {
			if skips(t, matcher, map[string]string{":method": m, key: `"k1"`}) {
				fail("%s: a keyed %s is skipped", name, m)
			}
			if needed && skips(t, matcher, map[string]string{":method": m}) {
				fail("%s: a keyless %s is skipped, but gets a 400 (or a derived key) from gopotency", name, m)
			}
		}
		for _, m := range []string{"GET", "HEAD"} {
			if !guardedBySome(pols, m) && !skips(t, matcher, map[string]string{":method": m, key: `"k1"`}) {
				fail("a keyed %s, which no policy guards, opens a stream", m)
			}
		}
	}
	if allOptional {
		for _, m := range []string{"POST", "PATCH"} {
			if !skips(t, matcher, map[string]string{":method": m}) {
				fail("every policy's key is optional, but a keyless %s opens a stream", m)
			}
		}
	}
	return errs
}

// TestIstioMatcherSkipsOnlyWhatNoPolicyNeeds runs checkMatcher on each
// shipped EnvoyFilter with the overlay's policies.
func TestIstioMatcherSkipsOnlyWhatNoPolicyNeeds(t *testing.T) {
	for _, f := range istioFilters {
		t.Run(f.overlay, func(t *testing.T) {
			objs := rendered(t, f.overlay)
			ef, _ := objs.Find("EnvoyFilter", f.namespace, "gopotency")
			_, extProc, matcher := extProcOf(t, ef)
			d, errs := CheckGoPotency(objs, "gopotency")
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			for _, err := range checkMatcher(t, matcher, reachable(t, ef, extProc, d.Config)) {
				t.Error(err)
			}
		})
	}
}

// TestCheckMatcherRejects: the istio-sidecar matcher (keyless requests
// skipped) is wrong for a policy that requires a key, or guards GET.
func TestCheckMatcherRejects(t *testing.T) {
	objs := rendered(t, "istio-sidecar")
	ef, _ := objs.Find("EnvoyFilter", "shop", "gopotency")
	_, _, matcher := extProcOf(t, ef)
	d, _ := CheckGoPotency(objs, "gopotency")
	required, get := d.Config.Default, d.Config.Default
	required.KeyRequired = true
	get.Methods = []string{"GET", "POST"}
	for name, p := range map[string]*idempotency.Policy{"key required": &required, "GET guarded": &get} {
		if errs := checkMatcher(t, matcher, map[string]*idempotency.Policy{"p": p}); len(errs) == 0 {
			t.Errorf("%s: no problem found", name)
		}
	}
	if errs := checkMatcher(t, matcher, map[string]*idempotency.Policy{"p": &d.Config.Default}); len(errs) > 0 {
		t.Errorf("the shipped policy: %v", errs)
	}
}

func guardedBySome(pols map[string]*idempotency.Policy, m string) bool {
	for _, p := range pols {
		if slices.Contains(p.Methods, m) {
			return true
		}
	}
	return false
}

// TestSkipsRejects: the evaluator is no rubber stamp.
func TestSkipsRejects(t *testing.T) {
	m := map[string]any{"matcher_list": map[string]any{"matchers": []any{map[string]any{
		"predicate": map[string]any{"not_matcher": map[string]any{"single_predicate": map[string]any{
			"input":       map[string]any{"typed_config": map[string]any{"@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput", "header_name": "idempotency-key"}},
			"value_match": map[string]any{"safe_regex": map[string]any{"google_re2": map[string]any{}, "regex": ".*"}},
		}}},
		"on_match": map[string]any{"action": map[string]any{"typed_config": map[string]any{"@type": "type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter"}}},
	}}}}
	if !skips(t, m, map[string]string{":method": "POST"}) || skips(t, m, map[string]string{"idempotency-key": ""}) {
		t.Fatal("a missing header must skip and a present one, even empty, must not")
	}
}

// variant is a configuration the shipped overlays do not cover.
type variant struct {
	name, yaml string
	target     envoyconfig.Target
	kube       envoyconfig.Kube
}

const variantServer = `
store_timeout: 500ms
default_policy: {methods: [POST, PATCH], scope_principal: true, auto_key: {body: true, source_address: true}}
policies:
  payments: {key_required: true, key_header: X-Pay-Key, scope_headers: [X-Tenant]}
  refunds: {methods: [POST]}
`

var variants = []variant{
	{"envoy gateway, route_policies and peer attributes", variantServer + `
ext_proc: {route_policies: {"httproute/shop/orders/rule/1/": payments, "httproute/shop/refunds/": refunds}}
envoy: {ext_proc_address: "gopotency.gopotency.svc:9002", message_timeout: 1500ms}
`, envoyconfig.TargetEnvoyGateway, envoyconfig.Kube{Name: "gp", Namespace: "shop", HTTPRoutes: []envoyconfig.HTTPRouteRef{{Name: "orders"}, {Name: "refunds", Rule: "create"}}}},
	{"istio gateway, two key headers and route_policies", `
store_timeout: 500ms
ext_proc: {max_message_timeout: 10s, route_policies: {refunds: refunds}}
default_policy: {methods: [POST, PATCH], scope_principal: true}
policies:
  payments: {key_header: X-Pay-Key, methods: [POST, PUT]}
  # Reached by route name only: the filter-wide matcher must let its
  # keyless DELETEs through.
  refunds: {methods: [DELETE], key_required: true}
envoy:
  ext_proc_address: gopotency.gopotency.svc.cluster.local:9002
  routes: [{name: payments, policy: payments}, {name: static, disabled: true}]
`, envoyconfig.TargetIstioGateway, envoyconfig.Kube{Name: "gopotency", Namespace: "istio-system", Selector: map[string]string{"istio": "ingressgateway", "app.kubernetes.io/name": "gw"},
		VirtualServices: []envoyconfig.VirtualService{{Name: "shop", Namespace: "shop", HTTP: []envoyconfig.VirtualServiceHTTP{{Name: "payments", MatchNames: []string{"card", ""}}, {Name: "static"}}}}}},
	{"istio sidecar, a named policy", variantServer + `
envoy:
  ext_proc_address: gopotency.gopotency.svc.cluster.local:9002
  routes: [{prefix: /, policy: payments}]
`, envoyconfig.TargetIstioSidecar, envoyconfig.Kube{Name: "gopotency", Namespace: "shop", Selector: map[string]string{"app": "orders"}}},
}

// TestGeneratedVariants generates what the shipped overlays do not
// cover (request attributes under Envoy Gateway, a matcher over two key
// headers, a sidecar with a named policy, route_policies) and checks
// each object against the CRD schemas; the EnvoyFilters also go through
// `envoy --mode validate` and their matcher through the evaluator.
func TestGeneratedVariants(t *testing.T) {
	bin := envoyBin(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "gopotency.yaml")
			if err := os.WriteFile(p, []byte(v.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := config.Load([]string{"--config", p}, func(string) string { return "" }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			out, err := envoyconfig.GenerateTarget(c, v.target, v.kube, "variant")
			if err != nil {
				t.Fatal(err)
			}
			objs, errs := Decode(t.Context(), out, schemas(t))
			for _, err := range errs {
				t.Errorf("%v\n%s", err, out)
			}
			if len(objs) != 1 {
				t.Fatalf("%d objects", len(objs))
			}
			o := objs[0]
			if v.target == envoyconfig.TargetEnvoyGateway {
				attrs := asStrings(at(o.Raw, "spec", "extProc", 0, "processingMode", "request", "attributes"))
				for _, want := range []string{"connection.uri_san_peer_certificate", "source.address", "xds.route_name"} {
					if !slices.Contains(attrs, want) {
						t.Errorf("request attributes %v lack %s", attrs, want)
					}
				}
				return
			}
			_, extProc, matcher := extProcOf(t, o)
			validateIstioFilter(t, bin, o)
			for _, err := range checkMatcher(t, matcher, reachable(t, o, extProc, c)) {
				t.Error(err)
			}
		})
	}
}
