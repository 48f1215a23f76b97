// Package envoyconfig generates the Envoy side of a GoPotency deployment
// from the GoPotency configuration (its policies and its envoy section),
// so the attribute list, the matchers and the timeouts Envoy uses cannot
// drift from what the server expects.
//
// NewPlan turns the configuration into a Plan: an ordered list of request
// classes per route and what Envoy does with each (skip the filter, send
// the request headers first, or send the buffered body first), plus the
// filter settings. A Plan says nothing about syntax; each target renders it
// and refuses what it cannot express: a static Envoy bootstrap (envoy.go),
// an Istio EnvoyFilter for an inbound sidecar or a gateway (istio.go), an
// Envoy Gateway EnvoyExtensionPolicy (gateway.go). The ext_proc filter
// config itself is one template (extproc.tmpl) for every target that
// takes Envoy's own syntax.
package envoyconfig

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/extproc"
	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Action is what Envoy does with a class of requests.
type Action int

const (
	// Skip opens no ext_proc stream: nothing in the class can need
	// GoPotency.
	Skip Action = iota
	// HeadersFirst sends the request headers; the server asks for the
	// body and the response phases per request (mode overrides).
	HeadersFirst
	// BodyFirst skips the request headers and sends the buffered body
	// with the request's facts as CEL attributes; the response phases are
	// on from the start, since mode overrides are only honoured on
	// answers to headers messages.
	BodyFirst
	// GRPCCall sends a gRPC call's headers and its request message
	// (FULL_DUPLEX_STREAMED), the response phases on: the server answers
	// the headers once the message is here, with a StreamedImmediateResponse
	// for a replay or a refusal.
	GRPCCall
)

func (a Action) String() string {
	return [...]string{"skip", "headers-first", "body-first", "grpc"}[a]
}

// BufferMargin is how far Envoy's per-connection buffer limit is set
// above the largest max_request_body. A body buffered for GoPotency
// (BUFFERED, or BUFFERED_PARTIAL for chunked bodies) must be able to grow
// past the cap, so the server sees it is over the cap and answers its 413
// problem, instead of Envoy answering a bare 413 first.
const BufferMargin = 64 << 10

// Class is one class of requests on one route and what Envoy does with
// it. A request belongs to the first class of the Plan it matches.
type Class struct {
	// Name is unique in the Plan (Envoy's route name).
	Name string
	// Why says, in a few words, why the class is handled this way.
	Why     string
	Prefix  string
	Cluster string
	Timeout time.Duration // 0: Envoy's default
	// Methods, when set, restrict the class to these methods.
	Methods []string
	// KeyHeader, when set, restricts the class to requests carrying it
	// (lower case).
	KeyHeader string
	// MaxContentLength, when positive, restricts the class to requests
	// declaring a Content-Length from 1 to this.
	MaxContentLength int64
	// GRPC restricts the class to gRPC calls (content-type
	// application/grpc…).
	GRPC   bool
	Action Action
	// Policy names the route's policy ("" is the default policy).
	Policy string
}

// Endpoint is where Envoy reaches GoPotency: a host and port, or a unix
// socket path.
type Endpoint struct {
	Host string
	Port int
	Pipe string
}

// Plan is what Envoy must do, whatever syntax a target needs.
type Plan struct {
	Listen, Admin Endpoint
	ExtProc       Endpoint
	Clusters      []Cluster
	// Routes are the envoy section's routes; Classes split them into what
	// plain Envoy's routes tell apart.
	Routes  []Route
	Classes []Class
	// MessageTimeout and MaxMessageTimeout are the filter's (0 max: the
	// server never extends it).
	MessageTimeout, MaxMessageTimeout time.Duration
	// BufferLimit is the listener's per_connection_buffer_limit_bytes
	// (Envoy Gateway: the ClientTrafficPolicy's bufferLimit).
	BufferLimit int64
	// RequestAttributes and ResponseAttributes are the CEL expressions
	// the filter sends (they cannot vary per route).
	RequestAttributes, ResponseAttributes []string
	// PolicyMetadataKey is the gRPC initial-metadata key naming a route's
	// policy.
	PolicyMetadataKey string
	// Contract is what body-first streams carry (zero without them).
	Contract extproc.Contract
	// BodyFirst is whether some class is BodyFirst.
	BodyFirst bool
	// RoutePolicies are ext_proc.route_policies (Envoy route name prefix
	// to policy, read from xds.route_name).
	RoutePolicies map[string]string

	defaultPolicy *idempotency.Policy
	policies      map[string]*idempotency.Policy
	// bodyFirstAsked is envoy.body_first, which the targets that cannot
	// route body-first refuse even where no route would use it.
	bodyFirstAsked bool
}

// Route is one route of the envoy section.
type Route struct {
	config.EnvoyRoute
	// Name is the route's name (config.EnvoyRoute.RouteName).
	Name string
	// policy guards the route (nil when Disabled).
	policy *idempotency.Policy
}

// FilterSkip is what the whole filter may skip, whatever the route: the
// requests that none of the policies it can apply could need.
type FilterSkip struct {
	// Methods are the methods some of the policies guard; a request with
	// any other skips.
	Methods []string
	// KeyHeaders, when set, are those policies' key headers (lower case),
	// none of which requires a key or derives one: a request carrying
	// none of them skips.
	KeyHeaders []string
	// GRPCCalls: gRPC calls skip too (a filter of their own takes them).
	GRPCCalls bool
}

// byRouteName returns the policies ext_proc.route_policies can select.
func (p *Plan) byRouteName() []*idempotency.Policy {
	var out []*idempotency.Policy
	for _, prefix := range slices.Sorted(maps.Keys(p.RoutePolicies)) {
		out = append(out, p.policies[p.RoutePolicies[prefix]])
	}
	return out
}

// filterSkip is the FilterSkip of a filter that can apply pols.
func filterSkip(pols []*idempotency.Policy) FilterSkip {
	var s FilterSkip
	keyed := true
	for _, p := range pols {
		s.Methods = append(s.Methods, p.Methods...)
		s.KeyHeaders = append(s.KeyHeaders, strings.ToLower(p.KeyHeader))
		keyed = keyed && !p.KeyRequired && p.AutoKey == nil
	}
	slices.Sort(s.Methods)
	s.Methods = slices.Compact(s.Methods)
	if !keyed {
		return FilterSkip{Methods: s.Methods}
	}
	slices.Sort(s.KeyHeaders)
	s.KeyHeaders = slices.Compact(s.KeyHeaders)
	return s
}

// Cluster is an upstream.
type Cluster struct {
	Name string
	Endpoint
	// GRPC: Envoy speaks HTTP/2 to it (config.EnvoyCluster.GRPC).
	GRPC bool
}

// NewPlan derives the plan from a loaded configuration. It fails when the
// configuration has no envoy section or asks for what Envoy cannot do.
func NewPlan(c *config.Config) (*Plan, error) {
	e, err := c.RequireEnvoy()
	if err != nil {
		return nil, err
	}
	var errs []error
	p := &Plan{MessageTimeout: e.MessageTimeout, MaxMessageTimeout: c.MaxMessageTimeout,
		ResponseAttributes: slices.Clone(extproc.ResponseAttributes), PolicyMetadataKey: c.PolicyHeader}
	for _, l := range []struct {
		name, addr string
		ep         *Endpoint
	}{{"listen", e.Listen, &p.Listen}, {"admin", e.Admin, &p.Admin}} {
		ep, err := endpoint(l.addr)
		switch {
		case err != nil:
			errs = append(errs, err)
		case ep.NeedsDNS():
			errs = append(errs, fmt.Errorf("envoy.%s: %q: Envoy binds IP addresses only", l.name, ep.Host))
		}
		*l.ep = ep
	}
	if e.ExtProcAddress == "" {
		errs = append(errs, errors.New("envoy.ext_proc_address: required (the host:port Envoy dials, or unix:///path) unless grpc_addr is a unix socket"))
	} else {
		p.ExtProc, err = endpoint(e.ExtProcAddress)
		errs = append(errs, err)
	}
	for _, cl := range e.Clusters {
		ep, err := endpoint(cl.Address)
		errs = append(errs, err)
		p.Clusters = append(p.Clusters, Cluster{Name: cl.Name, Endpoint: ep, GRPC: cl.GRPC})
	}
	p.RoutePolicies, p.defaultPolicy, p.policies, p.bodyFirstAsked = c.RoutePolicies, &c.Default, c.Policies, e.BodyFirst
	grpcClusters := map[string]bool{}
	for _, cl := range e.Clusters {
		grpcClusters[cl.Name] = cl.GRPC
	}
	var largest int64
	for _, r := range e.Routes {
		pol := &c.Default
		if r.Policy != "" {
			pol = c.Policies[r.Policy]
		}
		route := Route{EnvoyRoute: r, Name: r.RouteName()}
		if !r.Disabled && r.Policy == "" {
			// The route's classes are cut for the policy below; one that
			// route_policies picks at run time could guard methods or keys
			// those classes let through with the filter off.
			for _, k := range slices.Sorted(maps.Keys(c.RoutePolicies)) {
				if strings.HasPrefix(route.Name+":", k) || strings.HasPrefix(k, route.Name+":") {
					errs = append(errs, fmt.Errorf("envoy.routes %s names no policy, but ext_proc.route_policies %q can choose %q for it at run time, which its generated route classes would not guard as that policy asks: set policy: %s on the route", route.Name, k, c.RoutePolicies[k], c.RoutePolicies[k]))
				}
			}
		}
		if !r.Disabled {
			largest = max(largest, pol.MaxRequestBody)
			route.policy = pol
		}
		p.Routes = append(p.Routes, route)
		p.Classes = append(p.Classes, classes(r, pol, e.BodyFirst, grpcClusters[r.Cluster])...)
	}
	for _, name := range c.RoutePolicies {
		// Chosen per request by route name: any of them may guard a route.
		if pol := c.Policies[name]; pol != nil { // config.Load refuses unknown names
			largest = max(largest, pol.MaxRequestBody)
		}
	}
	if len(e.Routes) == 0 {
		// No routes of its own (Istio, Envoy Gateway): the default policy
		// guards whatever the object attaches to.
		largest = max(largest, c.Default.MaxRequestBody)
	}
	p.BufferLimit, err = bufferLimit(largest)
	errs = append(errs, err)
	// A header-skipping stream learns the request's facts only from these
	// attributes: take them from the contract the server checks, never
	// from a list of our own.
	contract := extproc.NewContract(&c.Default, c.Policies, len(c.RoutePolicies) > 0)
	p.BodyFirst = slices.ContainsFunc(p.Classes, func(k Class) bool { return k.Action == BodyFirst })
	if p.BodyFirst {
		p.Contract = contract
		p.RequestAttributes = slices.Clone(contract.Attributes)
	} else {
		// Headers-first streams carry the headers themselves; only what
		// a header map cannot say (the mTLS peer, the client address) is
		// asked for, so CEL runs for nothing on no stream.
		for _, a := range contract.Attributes {
			if !strings.HasPrefix(a, "request.") && a != contract.TokenAttribute {
				p.RequestAttributes = append(p.RequestAttributes, a)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// classes splits one route into the classes Envoy tells apart, most
// specific first.
func classes(r config.EnvoyRoute, pol *idempotency.Policy, bodyFirst, grpc bool) []Class {
	base := Class{Prefix: r.Prefix, Cluster: r.Cluster, Timeout: r.Timeout, Policy: r.Policy}
	name := r.RouteName()
	at := func(kind string, k Class) Class {
		k.Name = name + ":" + kind
		return k
	}
	skip := base
	skip.Action, skip.Policy, skip.Why = Skip, "", "GoPotency is disabled on this route"
	if r.Disabled {
		return []Class{at("skip", skip)}
	}
	key := strings.ToLower(pol.KeyHeader)
	var out []Class
	if grpc && slices.Contains(pol.Methods, "POST") {
		// gRPC calls (always POST) on a full-duplex stream: the only one
		// on which GoPotency can answer a call (docs/envoy-verify.md).
		k := base
		k.Action, k.GRPC, k.Methods = GRPCCall, true, []string{"POST"}
		k.Why = "gRPC calls: the request message is seen before the decision, replays and refusals are gRPC answers"
		if !pol.KeyRequired && pol.AutoKey == nil {
			k.KeyHeader = key
			k.Why = "keyed " + k.Why
		}
		out = append(out, at("grpc", k))
	}
	if bodyFirst && pol.Fingerprint == idempotency.FingerprintBody {
		k := base
		k.Action, k.Methods, k.KeyHeader, k.MaxContentLength = BodyFirst, pol.Methods, key, pol.MaxRequestBody
		k.Why = "keyed, with a body of known length within max_request_body: the body and the attributes in one message"
		out = append(out, at("body-first", k))
	}
	k := base
	k.Action, k.Methods = HeadersFirst, pol.Methods
	switch {
	case pol.KeyRequired:
		k.Why = "a guarded method: a missing key is answered 400 by GoPotency"
		out = append(out, at("guarded", k))
	case pol.AutoKey != nil:
		k.Why = "a guarded method: without a key GoPotency derives one (auto_key)"
		out = append(out, at("guarded", k))
	default:
		k.KeyHeader = key
		k.Why = "keyed"
		if bodyFirst && pol.Fingerprint == idempotency.FingerprintBody {
			k.Why = "keyed, without a body, chunked, or over max_request_body (answered 413 at the headers)"
		}
		out = append(out, at("keyed", k))
	}
	skip.Why = "methods the policy does not guard"
	if !pol.KeyRequired && pol.AutoKey == nil {
		skip.Why += ", and requests without " + pol.KeyHeader
	}
	return append(out, at("skip", skip))
}

// bufferLimit is Envoy's per-connection buffer limit for a filter whose
// policies cap bodies at largest (0: no guarded route).
func bufferLimit(largest int64) (int64, error) {
	if largest == 0 {
		largest = idempotency.DefaultPolicy().MaxRequestBody // no guarded route; Envoy's own default
	}
	if largest+BufferMargin > math.MaxUint32 {
		return 0, fmt.Errorf("max_request_body %d: Envoy's buffer limit is a 32-bit count; keep it under %d", largest, math.MaxUint32-BufferMargin)
	}
	return largest + BufferMargin, nil
}

// endpoint parses host:port or unix:///path.
func endpoint(addr string) (Endpoint, error) {
	if p := config.UnixSocketPath(addr); p != "" {
		return Endpoint{Pipe: p}, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Endpoint{}, fmt.Errorf("address %q: %w", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return Endpoint{}, fmt.Errorf("address %q: port must be 1 to 65535 (Envoy cannot pick a free one)", addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return Endpoint{Host: host, Port: n}, nil
}

// NeedsDNS reports whether the endpoint is a host name (not an IP
// address or a socket).
func (e Endpoint) NeedsDNS() bool {
	if e.Pipe != "" {
		return false
	}
	_, err := netip.ParseAddr(e.Host)
	return err != nil
}

// readsBodies reports whether some request under pol needs its body read:
// one without a key needs the most (a fingerprint, or a key derived from
// the body).
func readsBodies(pol *idempotency.Policy) bool { return pol.NeedsBody(&idempotency.Request{}) }
