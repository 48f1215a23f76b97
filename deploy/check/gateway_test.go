package check

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/extproc"
)

// TestEnvoyGatewayPolicy checks the Envoy Gateway overlay beyond its CRD
// schemas and beyond TestGeneratedObjectsMatchTheirOverlay: its filter
// settings say what envoy.yaml's filter says, as far as Envoy Gateway can;
// its attributes are what the overlay's policies need on headers-first
// streams; the backend is reachable (Service, port, ReferenceGrant); the
// backend cluster has the circuit breaker, gRPC health check and keepalive
// envoy.yaml's has; and gopotency is configured for what Envoy Gateway
// cannot send.
func TestEnvoyGatewayPolicy(t *testing.T) {
	objs := rendered(t, "envoy-gateway")
	pol, ok := objs.Find("EnvoyExtensionPolicy", "shop", "gopotency")
	if !ok {
		t.Fatal("no EnvoyExtensionPolicy shop/gopotency")
	}
	ep := at(pol.Raw, "spec", "extProc", 0).(map[string]any)
	d, errs := CheckGoPotency(objs, "gopotency")
	if len(errs) > 0 {
		t.Fatal(errs)
	}

	want := shippedFilter(t)
	if got, _ := time.ParseDuration(ep["messageTimeout"].(string)); got != d.Config.Envoy.MessageTimeout || got <= d.Config.StoreTimeout {
		t.Errorf("messageTimeout %v: want envoy.message_timeout %v, above store_timeout %v", got, d.Config.Envoy.MessageTimeout, d.Config.StoreTimeout)
	}
	if ep["failOpen"] != want["failure_mode_allow"] {
		t.Errorf("failOpen %v, envoy.yaml's failure_mode_allow %v", ep["failOpen"], want["failure_mode_allow"])
	}
	if at(want, "status_on_error", "code") != "ServiceUnavailable" || ep["statusOnError"] != int64(503) {
		t.Errorf("statusOnError %v, envoy.yaml's status_on_error %v", ep["statusOnError"], want["status_on_error"])
	}
	if at(ep, "processingMode", "allowModeOverride") != want["allow_mode_override"] {
		t.Error("allowModeOverride differs from envoy.yaml's allow_mode_override")
	}
	if at(ep, "processingMode", "request") == nil || at(want, "processing_mode", "request_header_mode") != "SEND" {
		t.Error("request headers must be sent")
	}
	if at(ep, "processingMode", "request", "body") != nil || at(ep, "processingMode", "response", "body") != nil {
		t.Error("no static body mode: gopotency asks for the bodies per request")
	}
	if !equalJSON(at(ep, "processingMode", "response", "attributes"), want["response_attributes"]) {
		t.Errorf("response attributes %v, envoy.yaml's %v", at(ep, "processingMode", "response", "attributes"), want["response_attributes"])
	}
	c := extproc.NewContract(&d.Config.Default, d.Config.Policies, len(d.Config.RoutePolicies) > 0)
	var need []string
	for _, a := range c.Attributes {
		if !strings.HasPrefix(a, "request.") && a != c.TokenAttribute {
			need = append(need, a)
		}
	}
	if got := asStrings(at(ep, "processingMode", "request", "attributes")); !slices.Equal(got, need) {
		t.Errorf("request attributes %q; the policies need %q", got, need)
	}

	// The backend: the gopotency Service's gRPC port, across namespaces
	// only with a ReferenceGrant.
	for _, ref := range asList(ep["backendRefs"]) {
		ns, _ := at(ref, "namespace").(string)
		if ns == "" {
			ns = pol.Namespace
		}
		svc, ok := objs.Find("Service", ns, at(ref, "name").(string))
		if !ok {
			t.Fatalf("backendRef %v: no such Service", ref)
		}
		found := false
		for _, p := range svc.Typed.(*corev1.Service).Spec.Ports {
			found = found || (int64(p.Port) == at(ref, "port") && p.AppProtocol != nil && *p.AppProtocol == "grpc")
		}
		if !found {
			t.Errorf("backendRef %v: no gRPC port %v on the Service", ref, at(ref, "port"))
		}
		if ns != pol.Namespace && !granted(objs, pol.Namespace, ns, svc.Name) {
			t.Errorf("backendRef to %s/%s without a ReferenceGrant: Envoy Gateway answers 500 on the route", ns, svc.Name)
		}
	}
	bs := ep["backendSettings"]
	for _, k := range []string{"maxConnections", "maxPendingRequests", "maxParallelRequests"} {
		if n, _ := at(bs, "circuitBreaker", k).(int64); n < 100000 {
			t.Errorf("backendSettings.circuitBreaker.%s %d: every in-flight request holds a stream", k, n)
		}
	}
	if at(bs, "healthCheck", "active", "type") != "GRPC" {
		t.Error("backendSettings.healthCheck.active: want a gRPC health check")
	}
	if at(bs, "http2", "connectionKeepalive", "interval") == nil {
		t.Error("backendSettings.http2.connectionKeepalive: want HTTP/2 pings")
	}
	for _, ref := range asList(at(pol.Raw, "spec", "targetRefs")) {
		if _, ok := objs.Find(at(ref, "kind").(string), pol.Namespace, at(ref, "name").(string)); !ok {
			t.Errorf("targetRef %v: not shipped", ref)
		}
	}

	// gopotency asks for nothing Envoy Gateway cannot give, and every
	// policy is reachable by route name.
	if d.Config.MaxMessageTimeout != 0 {
		t.Error("ext_proc.max_message_timeout must be 0: Envoy Gateway's filter has none")
	}
	selected := map[string]bool{}
	for prefix, name := range d.Config.RoutePolicies {
		selected[name] = true
		if !routeRuleExists(objs, pol, prefix) {
			t.Errorf("ext_proc.route_policies %q names no rule of the HTTPRoutes the policy targets", prefix)
		}
	}
	for name := range d.Config.Policies {
		if !selected[name] {
			t.Errorf("policy %s is unreachable: Envoy Gateway sends no per-route metadata; select it with ext_proc.route_policies", name)
		}
	}
}

// TestEnvoyGatewayBufferLimit: a ClientTrafficPolicy raises the
// listener buffer of the Gateway the guarded HTTPRoutes attach to above
// the largest max_request_body gopotency can apply there; under Envoy
// Gateway's default (32 KiB) longer bodies reach gopotency cut.
func TestEnvoyGatewayBufferLimit(t *testing.T) {
	objs := rendered(t, "envoy-gateway")
	d, errs := CheckGoPotency(objs, "gopotency")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, err := range checkBufferLimit(objs, d.Config) {
		t.Error(err)
	}
	// Not a rubber stamp: a larger cap, and no policy at all, fail.
	c := *d.Config
	c.Default.MaxRequestBody = 4 << 20
	if len(checkBufferLimit(objs, &c)) == 0 {
		t.Error("a 4 MiB max_request_body passed a ~1 MiB buffer")
	}
	var without Objects
	for _, o := range objs {
		if o.GVK.Kind != "ClientTrafficPolicy" {
			without = append(without, o)
		}
	}
	if len(checkBufferLimit(without, d.Config)) == 0 {
		t.Error("no ClientTrafficPolicy passed")
	}
}

// checkBufferLimit reports every Gateway a guarded HTTPRoute attaches to
// without a ClientTrafficPolicy whose bufferLimit exceeds the largest
// max_request_body of c's default policy and route_policies.
func checkBufferLimit(objs Objects, c *config.Config) []error {
	largest := c.Default.MaxRequestBody
	for _, name := range c.RoutePolicies {
		largest = max(largest, c.Policies[name].MaxRequestBody)
	}
	var errs []error
	for _, pol := range objs.OfKind("EnvoyExtensionPolicy") {
		for _, ref := range asList(at(pol.Raw, "spec", "targetRefs")) {
			r, ok := objs.Find("HTTPRoute", pol.Namespace, fmt.Sprint(at(ref, "name")))
			if !ok {
				continue
			}
			for _, parent := range asList(at(r.Raw, "spec", "parentRefs")) {
				ns, _ := at(parent, "namespace").(string)
				if ns == "" {
					ns = r.Namespace
				}
				gw := fmt.Sprint(at(parent, "name"))
				if _, ok := objs.Find("Gateway", ns, gw); !ok {
					errs = append(errs, fmt.Errorf("%s: parent Gateway %s/%s not shipped", r, ns, gw))
					continue
				}
				limit := int64(-1)
				for _, ctp := range objs.OfKind("ClientTrafficPolicy") {
					tr := at(ctp.Raw, "spec", "targetRefs", 0)
					if ctp.Namespace != ns || at(tr, "kind") != "Gateway" || at(tr, "name") != gw || len(asList(at(ctp.Raw, "spec", "targetRefs"))) != 1 {
						continue
					}
					q, err := resource.ParseQuantity(fmt.Sprint(at(ctp.Raw, "spec", "connection", "bufferLimit")))
					if err != nil {
						errs = append(errs, fmt.Errorf("%s: bufferLimit: %w", ctp, err))
						continue
					}
					limit = q.Value()
				}
				if limit <= largest {
					errs = append(errs, fmt.Errorf("Gateway %s/%s: listener buffer %d (-1: Envoy Gateway's 32 KiB default), not above max_request_body %d: "+
						"bodies reach gopotency cut; generate the ClientTrafficPolicy with envoy-config --gateway", ns, gw, limit, largest))
				}
			}
		}
	}
	return errs
}

// routeRuleExists reports whether prefix is a prefix of the Envoy route
// name (httproute/<ns>/<name>/rule/<index>/…) of some rule of an HTTPRoute
// the policy targets, or of the HTTPRoute itself.
func routeRuleExists(objs Objects, pol Object, prefix string) bool {
	for _, ref := range asList(at(pol.Raw, "spec", "targetRefs")) {
		r, ok := objs.Find("HTTPRoute", pol.Namespace, fmt.Sprint(at(ref, "name")))
		if !ok {
			continue
		}
		for i := range asList(at(r.Raw, "spec", "rules")) {
			name := fmt.Sprintf("httproute/%s/%s/rule/%d/", r.Namespace, r.Name, i)
			if strings.HasPrefix(name, prefix) || strings.HasPrefix(prefix, name) {
				return true
			}
		}
	}
	return false
}

// granted reports whether a ReferenceGrant in toNS lets
// EnvoyExtensionPolicies of fromNS use Service name.
func granted(objs Objects, fromNS, toNS, name string) bool {
	for _, g := range objs.OfKind("ReferenceGrant") {
		if g.Namespace != toNS {
			continue
		}
		from, to := false, false
		for _, f := range asList(at(g.Raw, "spec", "from")) {
			from = from || (at(f, "group") == "gateway.envoyproxy.io" && at(f, "kind") == "EnvoyExtensionPolicy" && at(f, "namespace") == fromNS)
		}
		for _, x := range asList(at(g.Raw, "spec", "to")) {
			n, _ := at(x, "name").(string)
			to = to || (at(x, "group") == "" && at(x, "kind") == "Service" && (n == "" || n == name))
		}
		if from && to {
			return true
		}
	}
	return false
}

func TestReferenceGrantIsNeeded(t *testing.T) {
	objs := rendered(t, "envoy-gateway")
	if !granted(objs, "shop", "gopotency", "gopotency") {
		t.Fatal("the shipped grant does not cover the policy")
	}
	var without Objects
	for _, o := range objs {
		if o.GVK.Kind != "ReferenceGrant" {
			without = append(without, o)
		}
	}
	if granted(without, "shop", "gopotency", "gopotency") || granted(objs, "other", "gopotency", "gopotency") {
		t.Fatal("granted() admits what no grant covers")
	}
}
