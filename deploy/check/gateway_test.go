package check

import (
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestEnvoyGatewayPolicy checks the Envoy Gateway overlay beyond its CRD
// schemas: its filter settings say what envoy.yaml's filter says, as far
// as Envoy Gateway can; the backend is reachable (Service, port,
// ReferenceGrant); the backend cluster has the circuit breaker, gRPC
// health check and keepalive envoy.yaml's has; and gopotency is configured
// for what Envoy Gateway cannot send.
func TestEnvoyGatewayPolicy(t *testing.T) {
	objs := rendered(t, "envoy-gateway")
	pol, ok := objs.Find("EnvoyExtensionPolicy", "shop", "gopotency")
	if !ok {
		t.Fatal("no EnvoyExtensionPolicy shop/gopotency")
	}
	ep := at(pol.Raw, "spec", "extProc", 0).(map[string]any)

	// The delimited block is the policy's, and means envoy.yaml's filter.
	block := delimited(t, filepath.Join(repo, "deploy", "overlays", "envoy-gateway", "extensionpolicy.yaml"))
	for k, v := range block {
		if !equalJSON(ep[k], v) {
			t.Errorf("delimited %s differs from the rendered policy's", k)
		}
	}
	want := shippedFilter(t)
	mt, _ := time.ParseDuration(want["message_timeout"].(string))
	if got, _ := time.ParseDuration(ep["messageTimeout"].(string)); got != mt {
		t.Errorf("messageTimeout %v, envoy.yaml's message_timeout %v", got, mt)
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
	if at(ep, "processingMode", "request", "body") != nil {
		t.Error("no static request body mode: gopotency asks for the body per request")
	}
	if !equalJSON(at(ep, "processingMode", "response", "attributes"), want["response_attributes"]) {
		t.Errorf("response attributes %v, envoy.yaml's %v", at(ep, "processingMode", "response", "attributes"), want["response_attributes"])
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

	// gopotency asks for nothing Envoy Gateway cannot give.
	d, errs := CheckGoPotency(objs, "gopotency")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if d.Config.MaxMessageTimeout != 0 {
		t.Error("ext_proc.max_message_timeout must be 0: Envoy Gateway's filter has none")
	}
	if len(d.Config.Policies) != 0 {
		t.Error("named policies are unreachable under Envoy Gateway (no per-route metadata)")
	}
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
