package envoyconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

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
	if len(k.HTTPRoutes) > 0 || len(k.GRPCRoutes) > 0 || k.Gateway != "" {
		errs = append(errs, errors.New("HTTPRoutes and a Gateway are Envoy Gateway's; Istio attaches by workload selector"))
	}
	if !gateway && len(k.VirtualServices) > 0 {
		errs = append(errs, errors.New("VirtualServices name the routes of a gateway; an inbound sidecar has one route"))
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
	if k.GRPC {
		view.Skip.GRPCCalls = true
		view.GRPCFilter = view.Filter
		view.GRPCFilter.GRPC = true
	}
	// Istio leaves Envoy's 1 MiB per-connection buffer limit, which is
	// also the default cap: a body at the cap would sit exactly on it.
	var largest int64
	for _, pol := range pols {
		if readsBodies(pol) {
			largest = max(largest, pol.MaxRequestBody)
		}
	}
	if largest > 0 {
		view.ListenerBufferLimit, err = bufferLimit(largest)
		errs = append(errs, err)
	}
	if gateway {
		var perr error
		view.Patches, perr = routePatches(p.patchedRoutes(), k.VirtualServices)
		errs = append(errs, perr)
	}
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
	// GRPCFilter is the gRPC calls' filter (Kube.GRPC).
	GRPCFilter filterView
	// ListenerBufferLimit, when set, is the per_connection_buffer_limit_bytes
	// of a LISTENER patch.
	ListenerBufferLimit int64
	// Patches are the gateway's HTTP_ROUTE patches.
	Patches []routePatch
}

// routePatch is one envoy.routes entry and the Envoy route names Istio
// builds from the VirtualService http route of that name.
type routePatch struct {
	Route
	EnvoyNames []string
}

// GRPCFilterName is the gRPC calls' filter name, for the template.
func (v istioView) GRPCFilterName() string { return GRPCFilterName }

// FilterNames are the filters a route patch configures.
func (v istioView) FilterNames() []string {
	if v.GRPCFilter.GRPC {
		return []string{extProcFilterName, GRPCFilterName}
	}
	return []string{extProcFilterName}
}

// extProcFilterName is the ext_proc filter's own name.
const extProcFilterName = "envoy.filters.http.ext_proc"

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

// patchedRoutes are the gateway routes an HTTP_ROUTE patch changes.
func (p *Plan) patchedRoutes() []Route {
	var out []Route
	for _, r := range p.Routes {
		if r.Disabled || r.Policy != "" {
			out = append(out, r)
		}
	}
	return out
}

// routePatches finds each route's VirtualService http route and derives
// the Envoy route names Istio gives it: the http route's name, or
// "<name>.<match name>" for each match that has a name of its own. An
// HTTP_ROUTE patch matches names exactly, so a patch written for a name
// Istio does not build misses silently and the route falls back to
// default_policy: every name is taken from the VirtualServices, and a
// route none of them has is refused.
func routePatches(routes []Route, vss []VirtualService) ([]routePatch, error) {
	if len(routes) > 0 && len(vss) == 0 {
		return nil, errors.New("envoy.routes names VirtualService http routes: give the VirtualServices (--virtual-service FILE), " +
			"so the patches match the Envoy route names Istio builds from them (<route>.<match> when a match has a name)")
	}
	var out []routePatch
	var errs []error
	for _, r := range routes {
		var found []string
		rp := routePatch{Route: r}
		for _, vs := range vss {
			for _, h := range vs.HTTP {
				if h.Name != r.Name {
					continue
				}
				found = append(found, vs.Namespace+"/"+vs.Name)
				rp.EnvoyNames = append(rp.EnvoyNames, h.envoyNames()...)
			}
		}
		switch {
		case len(found) == 0:
			errs = append(errs, fmt.Errorf("envoy.routes: no http route named %q in the VirtualServices given: its patch would match nothing and the route would get default_policy", r.Name))
		case len(found) > 1:
			errs = append(errs, fmt.Errorf("envoy.routes: http route %q is in %s: keep the names patched unique on the gateway", r.Name, strings.Join(found, ", ")))
		}
		slices.Sort(rp.EnvoyNames)
		rp.EnvoyNames = slices.Compact(rp.EnvoyNames)
		out = append(out, rp)
	}
	return out, errors.Join(errs...)
}

// VirtualService is what the gateway generator reads of an Istio
// VirtualService: the names of its http routes and of their matches.
type VirtualService struct {
	Name, Namespace string
	HTTP            []VirtualServiceHTTP
}

// VirtualServiceHTTP is one http route of a VirtualService.
type VirtualServiceHTTP struct {
	Name string
	// MatchNames are the names of its matches ("" for an unnamed one).
	MatchNames []string
}

// envoyNames are the Envoy route names Istio builds for h (as
// pilot's route translation does: one route per match).
func (h VirtualServiceHTTP) envoyNames() []string {
	if len(h.MatchNames) == 0 {
		return []string{h.Name}
	}
	out := make([]string, len(h.MatchNames))
	for i, m := range h.MatchNames {
		out[i] = h.Name
		if m != "" {
			out[i] += "." + m
		}
	}
	return out
}

// ParseVirtualServices reads the VirtualServices of a multi-document
// YAML file; other objects are ignored.
func ParseVirtualServices(b []byte) ([]VirtualService, error) {
	var out []VirtualService
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var doc struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Metadata   struct {
				Name      string `yaml:"name"`
				Namespace string `yaml:"namespace"`
			} `yaml:"metadata"`
			Spec struct {
				HTTP []struct {
					Name  string `yaml:"name"`
					Match []struct {
						Name string `yaml:"name"`
					} `yaml:"match"`
				} `yaml:"http"`
			} `yaml:"spec"`
		}
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("virtual services: %w", err)
		}
		if doc.Kind != "VirtualService" || !strings.HasPrefix(doc.APIVersion, "networking.istio.io/") {
			continue
		}
		vs := VirtualService{Name: doc.Metadata.Name, Namespace: doc.Metadata.Namespace}
		for _, h := range doc.Spec.HTTP {
			vh := VirtualServiceHTTP{Name: h.Name}
			for _, m := range h.Match {
				vh.MatchNames = append(vh.MatchNames, m.Name)
			}
			vs.HTTP = append(vs.HTTP, vh)
		}
		out = append(out, vs)
	}
}

// GRPCFilterName names the filter for gRPC calls, which ExtProcPerRoute
// configs address.
const GRPCFilterName = "envoy.filters.http.ext_proc.grpc"

// grpcContentType matches a gRPC call's content-type (RE2, whole value).
const grpcContentType = "application/grpc.*"

// GRPCPredicate is the matcher predicate of the gRPC calls' filter: it
// holds for what is not a gRPC call one of the policies guards (POST,
// with the key header where no policy requires or derives one).
func (s FilterSkip) GRPCPredicate() string {
	preds := []string{headerPredicate("request-method", ":method", "POST"), headerPredicate("content-type", "content-type", grpcContentType)}
	if k := s.keyless(); k != "" {
		preds = append(preds, k)
	}
	return "or_matcher:\n  predicate:\n" + listOf(preds, 2)
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
	preds := []string{headerPredicate("request-method", ":method", s.MethodRegex())}
	if k := s.keyless(); k != "" {
		preds = append(preds, k)
	}
	if s.GRPCCalls {
		// They are the gRPC filter's.
		preds = append(preds, headerMatch("content-type", "content-type", grpcContentType))
	}
	if len(preds) == 1 {
		return preds[0]
	}
	return "or_matcher:\n  predicate:\n" + listOf(preds, 2)
}

// keyless holds when a request carries none of the key headers ("" when
// a key is not needed to be guarded).
func (s FilterSkip) keyless() string {
	if len(s.KeyHeaders) == 0 {
		return ""
	}
	var absent []string
	for _, h := range s.KeyHeaders {
		absent = append(absent, headerPredicate("key-"+h, h, ".*"))
	}
	if len(absent) > 1 {
		return "and_matcher:\n  predicate:\n" + listOf(absent, 2)
	}
	return absent[0]
}

// headerPredicate holds when header is absent or does not fully match
// regex (RE2).
func headerPredicate(name, header, regex string) string {
	return "not_matcher:\n" + indent(2, headerMatch(name, header, regex))
}

// headerMatch holds when header fully matches regex (RE2).
func headerMatch(name, header, regex string) string {
	return fmt.Sprintf(`single_predicate:
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
