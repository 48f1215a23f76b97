package envoyconfig

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
)

// egAttribute is the pattern Envoy Gateway's EnvoyExtensionPolicy CRD
// (v1.9) holds every attribute to: no request header, no CEL literal.
var egAttribute = regexp.MustCompile(`^(connection\.|source\.|destination\.|request\.|response\.|upstream\.|xds\.route_)[a-z_1-9]*$`)

// EnvoyGateway renders the plan as an Envoy Gateway EnvoyExtensionPolicy
// on k.HTTPRoutes: the filter settings Envoy Gateway can express, and a
// refusal for what it cannot. With k.Gateway it adds a
// ClientTrafficPolicy raising that Gateway's listener buffer to the
// plan's BufferLimit; without it, it refuses policies that read request
// bodies. command is written at the top.
func (p *Plan) EnvoyGateway(k Kube, command string) ([]byte, error) {
	errs := checkKube(k)
	if len(k.HTTPRoutes) == 0 && len(k.GRPCRoutes) == 0 {
		errs = append(errs, errors.New("at least one HTTPRoute (or GRPCRoute) to attach to is required"))
	}
	if len(k.Selector) > 0 || k.Port != 0 {
		errs = append(errs, errors.New("a workload selector and a port are Istio's; Envoy Gateway attaches to HTTPRoutes"))
	}
	if k.GRPC {
		errs = append(errs, errors.New("--grpc is Istio's; under Envoy Gateway name the GRPCRoutes (--grpc-route), which get a policy of their own"))
	}
	for kind, routes := range map[string][]HTTPRouteRef{"HTTPRoute": k.HTTPRoutes, "GRPCRoute": k.GRPCRoutes} {
		for _, r := range routes {
			if !dnsSubdomain.MatchString(r.Name) || r.Rule != "" && !dnsSubdomain.MatchString(r.Rule) {
				errs = append(errs, fmt.Errorf("%s %q (rule %q): not a Kubernetes name", kind, r.Name, r.Rule))
			}
		}
	}
	if p.bodyFirstAsked {
		errs = append(errs, errors.New("envoy.body_first: not under Envoy Gateway. It sends the request headers whenever it sends anything "+
			"of the request (processingMode.request) and its attributes cannot name a request header nor carry the contract's token "+
			"(the CRD's pattern), so a body-first stream could not say what it is; set body_first: false"))
	}
	if p.MaxMessageTimeout > 0 {
		errs = append(errs, fmt.Errorf("ext_proc.max_message_timeout: %s, but Envoy Gateway cannot set the filter's max_message_timeout, "+
			"so a wait for an in-flight duplicate would end in Envoy's 504; set it to 0 and keep wait_in_flight 0", p.MaxMessageTimeout))
	}
	if len(p.Routes) > 0 {
		errs = append(errs, errors.New("envoy.routes: Envoy Gateway's routes are HTTPRoutes. Leave out of the policy's targets "+
			"what must not reach GoPotency, and pick a policy per route with ext_proc.route_policies "+
			"(httproute/<namespace>/<name>/rule/<index>/ → policy); leave envoy.routes out"))
	}
	if len(p.Clusters) > 0 {
		errs = append(errs, errors.New("envoy.clusters: Envoy Gateway routes to the HTTPRoutes' backends; leave clusters out"))
	}
	for _, prefix := range slices.Sorted(maps.Keys(p.RoutePolicies)) {
		if !slices.ContainsFunc(k.HTTPRoutes, func(r HTTPRouteRef) bool {
			own := "httproute/" + k.Namespace + "/" + r.Name + "/"
			return strings.HasPrefix(own, prefix) || strings.HasPrefix(prefix, own)
		}) && !slices.ContainsFunc(k.GRPCRoutes, func(r HTTPRouteRef) bool {
			own := "grpcroute/" + k.Namespace + "/" + r.Name + "/"
			return strings.HasPrefix(own, prefix) || strings.HasPrefix(prefix, own)
		}) {
			errs = append(errs, fmt.Errorf("ext_proc.route_policies: %q names no route of the policy's HTTPRoutes (Envoy Gateway names them httproute/%s/<name>/rule/<index>/match/<index>/…)", prefix, k.Namespace))
		}
	}
	if k.Gateway != "" && !dnsSubdomain.MatchString(k.Gateway) {
		errs = append(errs, fmt.Errorf("gateway %q: not a Kubernetes name", k.Gateway))
	}
	if k.Gateway == "" && slices.ContainsFunc(append(p.byRouteName(), p.defaultPolicy), readsBodies) {
		// Envoy Gateway's listeners buffer 32 KiB per connection by
		// default: a longer body reaches GoPotency cut, and is refused.
		errs = append(errs, fmt.Errorf("a policy reads request bodies (fingerprint: body, or auto_key from the body), and Envoy Gateway's "+
			"listeners buffer only 32 KiB of a request by default: name the Gateway the HTTPRoutes attach to (--gateway, in the "+
			"namespace %s) so a ClientTrafficPolicy raises its buffer to %d bytes (max_request_body plus a margin)", k.Namespace, p.BufferLimit))
	}
	for _, a := range p.RequestAttributes {
		if !egAttribute.MatchString(a) {
			errs = append(errs, fmt.Errorf("attribute %q: Envoy Gateway's CRD refuses it", a))
		}
	}
	svc, err := p.service()
	errs = append(errs, err)
	timeout, err := gatewayDuration(p.MessageTimeout)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var policies []egPolicy
	if len(k.HTTPRoutes) > 0 {
		policies = append(policies, egPolicy{Name: k.Name, Kind: "HTTPRoute", Targets: k.HTTPRoutes})
	}
	if len(k.GRPCRoutes) > 0 {
		name := k.Name
		if len(policies) > 0 {
			name += "-grpc"
		}
		policies = append(policies, egPolicy{Name: name, Kind: "GRPCRoute", Targets: k.GRPCRoutes, GRPC: true})
	}
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, "gateway.yaml.tmpl", struct {
		*Plan
		Kube
		Command        string
		Service        kubeService
		MessageTimeout string
		Policies       []egPolicy
	}{p, k, command, svc, timeout, policies}); err != nil {
		return nil, fmt.Errorf("envoy gateway: %w", err)
	}
	return b.Bytes(), nil
}

// egPolicy is one EnvoyExtensionPolicy: the HTTPRoutes', or the
// GRPCRoutes' (gRPC calls: full-duplex streams).
type egPolicy struct {
	Name, Kind string
	Targets    []HTTPRouteRef
	GRPC       bool
}

var dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// gatewayDuration writes d as a Gateway API Duration (up to four of
// <1–5 digits><h|m|s|ms>, e.g. "1s", "1500ms", "1m30s").
func gatewayDuration(d time.Duration) (string, error) {
	if d <= 0 || d%time.Millisecond != 0 {
		return "", fmt.Errorf("envoy.message_timeout %s: Envoy Gateway takes whole milliseconds above 0", d)
	}
	var s string
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if n := d / u.d; n > 0 {
			if n > 99999 {
				return "", fmt.Errorf("envoy.message_timeout %s: too long for Envoy Gateway", d)
			}
			s += fmt.Sprintf("%d%s", n, u.name)
			d -= n * u.d
		}
	}
	return s, nil
}
