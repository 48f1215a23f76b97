package check

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/idempotency"
)

// CheckClaimScope checks an overlay that scopes gopotency's callers on JWT
// claims Istio copies into headers (RequestAuthentication
// outputClaimToHeaders): every policy scopes on exactly those headers (a
// header nobody sets would put every caller in one anonymous scope), the
// RequestAuthentication runs on the workload whose sidecar runs the
// gopotency filter (there jwt_authn replaces whatever the client sent;
// elsewhere the headers could come from anyone), and a DENY policy turns
// away requests without a verified token.
func CheckClaimScope(objs Objects, cfg *config.Config) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	filters := objs.OfKind("EnvoyFilter")
	if len(filters) != 1 {
		return []error{fmt.Errorf("want one EnvoyFilter (the gopotency filter), have %d", len(filters))}
	}
	workload := stringMap(at(filters[0].Raw, "spec", "workloadSelector", "labels"))
	ns := filters[0].Namespace

	claims := map[string]bool{}
	ras := 0
	for _, ra := range objs.OfKind("RequestAuthentication") {
		if ra.Namespace != ns || !maps.Equal(stringMap(at(ra.Raw, "spec", "selector", "matchLabels")), workload) {
			fail("%s does not select the gopotency filter's workload %v in %s: claim headers set by another proxy can be forged past it", ra, workload, ns)
			continue
		}
		ras++
		for _, rule := range asList(at(ra.Raw, "spec", "jwtRules")) {
			for _, h := range asList(at(rule, "outputClaimToHeaders")) {
				claims[strings.ToLower(at(h, "header").(string))] = true
			}
		}
	}
	if ras == 0 || len(claims) == 0 {
		fail("no RequestAuthentication with outputClaimToHeaders on the gopotency filter's workload")
	}

	policies := map[string]*idempotency.Policy{"default_policy": &cfg.Default}
	for name, p := range cfg.Policies {
		policies["policies."+name] = p
	}
	want := slices.Sorted(maps.Keys(claims))
	for name, p := range policies {
		var got []string
		for _, h := range p.ScopeHeaders {
			got = append(got, strings.ToLower(h))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			fail("%s: scope_headers %v, want exactly the claim headers %v", name, p.ScopeHeaders, want)
		}
	}

	denied := false
	for _, ap := range objs.OfKind("AuthorizationPolicy") {
		if ap.Namespace != ns || at(ap.Raw, "spec", "action") != "DENY" || !maps.Equal(stringMap(at(ap.Raw, "spec", "selector", "matchLabels")), workload) {
			continue
		}
		for _, r := range asList(at(ap.Raw, "spec", "rules")) {
			for _, f := range asList(at(r, "from")) {
				if slices.Equal(asStrings(at(f, "source", "notRequestPrincipals")), []string{"*"}) && portsOnly(asList(at(r, "to"))) && len(asList(at(r, "when"))) == 0 {
					denied = true
				}
			}
		}
	}
	if !denied {
		fail("no DENY AuthorizationPolicy for requests without a token (notRequestPrincipals: [\"*\"]) on %v: they would share one anonymous scope", workload)
	}
	return errs
}

// portsOnly reports whether a rule's to narrows it by port at most: a
// DENY for requests without a token must cover every request to the
// ports it names (a path or method condition would let others through).
func portsOnly(to []any) bool {
	for _, t := range to {
		op, _ := at(t, "operation").(map[string]any)
		if len(op) != 1 || len(asList(op["ports"])) == 0 {
			return false
		}
	}
	return true
}

func stringMap(v any) map[string]string {
	m, _ := v.(map[string]any)
	out := make(map[string]string, len(m))
	for k, x := range m {
		out[k] = fmt.Sprint(x)
	}
	return out
}

func asStrings(v any) []string {
	var out []string
	for _, x := range asList(v) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// TestClaimScopeOverlay: overlays/istio-sidecar-jwt passes CheckClaimScope,
// and its gopotency configuration is istio-sidecar's with only the scope
// changed.
func TestClaimScopeOverlay(t *testing.T) {
	objs := rendered(t, "istio-sidecar-jwt")
	d, errs := CheckGoPotency(objs, "gopotency")
	if len(errs) > 0 || d == nil {
		t.Fatal(errs)
	}
	for _, err := range CheckClaimScope(objs, d.Config) {
		t.Error(err)
	}
	plain, _ := CheckGoPotency(rendered(t, "istio-sidecar"), "gopotency")
	want := *plain.Config
	want.Default.ScopeHeaders = d.Config.Default.ScopeHeaders
	want.Policies = map[string]*idempotency.Policy{}
	for name, p := range plain.Config.Policies {
		q := *p
		q.ScopeHeaders = d.Config.Default.ScopeHeaders
		want.Policies[name] = &q
	}
	if !reflect.DeepEqual(&want, d.Config) {
		t.Errorf("the configuration differs from istio-sidecar's by more than scope_headers:\n got %+v\nwant %+v", d.Config, &want)
	}
}

// TestCheckClaimScopeRejects: each mistake CheckClaimScope exists for.
func TestCheckClaimScopeRejects(t *testing.T) {
	objs := rendered(t, "istio-sidecar-jwt")
	d, _ := CheckGoPotency(objs, "gopotency")
	edit := func(kind string, change func(raw map[string]any)) Objects {
		out := make(Objects, len(objs))
		for i, o := range objs {
			if o.GVK.Kind == kind {
				o.Raw = deepCopy(o.Raw)
				change(o.Raw)
			}
			out[i] = o
		}
		return out
	}
	for _, c := range []struct {
		name string
		objs Objects
		cfg  func(*config.Config)
		want string
	}{
		{"a renamed claim header", edit("RequestAuthentication", func(raw map[string]any) {
			at(raw, "spec", "jwtRules", 0, "outputClaimToHeaders", 0).(map[string]any)["header"] = "x-user"
		}), nil, "want exactly the claim headers"},
		{"Authorization still in the scope", objs, func(c *config.Config) { c.Default.ScopeHeaders = append(c.Default.ScopeHeaders, "Authorization") }, "default_policy: scope_headers"},
		{"verified on another workload", edit("RequestAuthentication", func(raw map[string]any) {
			at(raw, "spec", "selector").(map[string]any)["matchLabels"] = map[string]any{"istio": "ingressgateway"}
		}), nil, "does not select the gopotency filter's workload"},
		{"no DENY for missing tokens", edit("AuthorizationPolicy", func(raw map[string]any) {
			if at(raw, "spec", "action") == "DENY" {
				at(raw, "spec").(map[string]any)["action"] = "AUDIT"
			}
		}), nil, "no DENY AuthorizationPolicy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := *d.Config
			def := cfg.Default
			cfg.Default = def
			cfg.Default.ScopeHeaders = slices.Clone(def.ScopeHeaders)
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			var got []string
			for _, err := range CheckClaimScope(c.objs, &cfg) {
				got = append(got, err.Error())
			}
			if !strings.Contains(strings.Join(got, "\n"), c.want) {
				t.Fatalf("want an error containing %q, got %q", c.want, got)
			}
		})
	}
}
