package envoyconfig

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// errIstioBodyFirst says why Istio stays headers first.
var errIstioBodyFirst = errors.New("envoy.body_first: not under Istio. Body-first needs each route split into three Envoy routes " +
	"(keyed with a Content-Length within the cap, keyed, the rest), and under Istio only the VirtualService makes routes: " +
	"an EnvoyFilter that added them would have to copy the route actions istiod generates (clusters, timeouts, retries), " +
	"which drift with every VirtualService edit and Istio release. Set body_first: false; guarded requests go headers first")

// Istio renders the plan as an Istio EnvoyFilter: the ext_proc filter
// before the router of an inbound sidecar (gateway false) or of a
// gateway, behind a matcher that skips what no policy can need; on a
// gateway, one HTTP_ROUTE patch per named route that picks a policy or
// turns the filter off. command is written at the top.
func (p *Plan) Istio(gateway bool, k Kube, command string) ([]byte, error) {
	errs := checkKube(k)
	if len(k.Selector) == 0 {
		errs = append(errs, errors.New("a workload selector is required: without one the EnvoyFilter applies to every proxy of its namespace (of the whole mesh in the root namespace)"))
	}
	for _, l := range labelPairs(k.Selector) {
		if !labelKey.MatchString(l[0]) || !labelValue.MatchString(l[1]) {
			errs = append(errs, fmt.Errorf("selector %s=%s: not a Kubernetes label", l[0], l[1]))
		}
	}
	if k.Port < 0 || k.Port > 65535 || (gateway && k.Port != 0) {
		errs = append(errs, fmt.Errorf("port %d: only an Istio sidecar's inbound port (1 to 65535) can be given", k.Port))
	}
	if len(k.HTTPRoutes) > 0 || k.Gateway != "" {
		errs = append(errs, errors.New("HTTPRoutes and a Gateway are Envoy Gateway's; Istio attaches by workload selector"))
	}
	if p.bodyFirstAsked {
		errs = append(errs, errIstioBodyFirst)
	}
	svc, err := p.service()
	if err == nil && strings.Count(svc.Host, ".") < 3 {
		err = fmt.Errorf("envoy.ext_proc_address: %q: Istio names the cluster by the Service's full DNS name; add the cluster domain (%s.cluster.local)", svc.Host, svc.Host)
	}
	errs = append(errs, err)
	if len(p.Clusters) > 0 {
		errs = append(errs, errors.New("envoy.clusters: Istio routes to the VirtualService's destinations; leave clusters out"))
	}
	view := istioView{Plan: p, Kube: k, Gateway: gateway, Labels: labelPairs(k.Selector), Service: svc,
		Filter: filterData(p, fmt.Sprintf("outbound|%d||%s", svc.Port, svc.Host))}
	pols := []*idempotency.Policy{p.defaultPolicy}
	for i, r := range p.Routes {
		at := fmt.Sprintf("envoy.routes[%d] (%s)", i, r.Name)
		switch {
		case r.Cluster != "" || r.Timeout != 0:
			errs = append(errs, fmt.Errorf("%s: cluster and timeout are the VirtualService's under Istio; leave them out", at))
		case !gateway && (len(p.Routes) > 1 || r.Disabled || r.EnvoyRoute.Name != "" || r.Prefix != "/"):
			errs = append(errs, fmt.Errorf("%s: an inbound sidecar has one route, so envoy.routes holds at most one, {prefix: /, policy: …}, whose policy every request gets", at))
		case gateway && (r.EnvoyRoute.Name == "" || r.Prefix != ""):
			errs = append(errs, fmt.Errorf("%s: under an Istio gateway a route is the VirtualService http route of that name: set name, and leave the prefix to the VirtualService", at))
		}
		if r.policy == nil {
			continue
		}
		if gateway {
			pols = append(pols, r.policy)
		} else {
			pols = []*idempotency.Policy{r.policy}
			if r.Policy != "" {
				view.Filter.Metadata = &metadataEntry{Key: p.PolicyMetadataKey, Value: r.Policy}
			}
		}
	}
	if view.Filter.Metadata == nil {
		// Without metadata the server picks by route name first: the
		// matcher must let through what those policies need too.
		pols = append(pols, p.byRouteName()...)
	}
	view.Skip = filterSkip(pols)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	view.Command = command
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, "istio.yaml.tmpl", view); err != nil {
		return nil, fmt.Errorf("istio: %w", err)
	}
	return b.Bytes(), nil
}

type istioView struct {
	*Plan
	Kube
	Command string
	Gateway bool
	Labels  [][2]string
	Service kubeService
	Filter  filterView
	Skip    FilterSkip
}

// SelectorText is the workload selector as label=value, ….
func (v istioView) SelectorText() string {
	var s []string
	for _, l := range v.Labels {
		s = append(s, l[0]+"="+l[1])
	}
	return strings.Join(s, ", ")
}

// Context is the EnvoyFilter patch context.
func (v istioView) Context() string {
	if v.Gateway {
		return "GATEWAY"
	}
	return "SIDECAR_INBOUND"
}

// PatchedRoutes are the routes an HTTP_ROUTE patch changes.
func (v istioView) PatchedRoutes() []Route {
	var out []Route
	for _, r := range v.Routes {
		if v.Gateway && (r.Disabled || r.Policy != "") {
			out = append(out, r)
		}
	}
	return out
}

// MethodRegex is an RE2 expression matching exactly the methods.
func (s FilterSkip) MethodRegex() string {
	q := make([]string, len(s.Methods))
	for i, m := range s.Methods {
		q[i] = regexp.QuoteMeta(m)
	}
	return strings.Join(q, "|")
}

var (
	labelKey   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelValue = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
)

// Predicate is the matcher predicate that holds for the requests to
// skip, as YAML at column 0.
func (s FilterSkip) Predicate() string {
	method := headerPredicate("request-method", ":method", s.MethodRegex())
	if len(s.KeyHeaders) == 0 {
		return method
	}
	var absent []string
	for _, h := range s.KeyHeaders {
		absent = append(absent, headerPredicate("key-"+h, h, ".*"))
	}
	keyless := absent[0]
	if len(absent) > 1 {
		keyless = "and_matcher:\n  predicate:\n" + listOf(absent, 2)
	}
	return "or_matcher:\n  predicate:\n" + listOf([]string{method, keyless}, 2)
}

// headerPredicate holds when header is absent or does not fully match
// regex (RE2).
func headerPredicate(name, header, regex string) string {
	return fmt.Sprintf(`not_matcher:
  single_predicate:
    input:
      name: %s
      typed_config: {"@type": type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput, header_name: %s}
    value_match: {safe_regex: {google_re2: {}, regex: %s}}`, scalar(name), quote(header), quote(regex))
}

// listOf writes YAML blocks as the items of a sequence at column n.
func listOf(items []string, n int) string {
	var b strings.Builder
	for i, it := range items {
		if i > 0 {
			b.WriteString("\n")
		}
		lines := strings.Split(it, "\n")
		b.WriteString(strings.Repeat(" ", n) + "- " + lines[0])
		for _, l := range lines[1:] {
			b.WriteString("\n" + strings.Repeat(" ", n+2) + l)
		}
	}
	return b.String()
}
