// Package extproc is the Envoy external processing (ext_proc) service: a
// gRPC envoy.service.ext_proc.v3.ExternalProcessor that puts the
// idempotency engine in front of any upstream.
//
// One gRPC stream carries one HTTP request. Server.Process runs the stream
// loop; a processor (processor.go) holds the per-request state and has one
// method per phase. Every message gets exactly one answer of the matching
// type, in order (answers to body chunks may be held until the body is
// whole, then sent in order); Canceled and EOF end a stream normally.
//
// A request reaches the server in one of two shapes:
//
//   - headers first (request_header_mode SEND, allow_mode_override): the
//     processor asks, per request, for just what it needs: the request body
//     when the fingerprint or an automatic key needs it, and the response
//     phases only for requests that hold a lease;
//   - body first (request_header_mode SKIP, request_body_mode BUFFERED):
//     the request's facts arrive as CEL request_attributes on the body
//     message (see Contract), one message for a replay.
//
// Both shapes build the same idempotency.Request, so a retry that takes the
// other shape finds the same key and fingerprint.
package extproc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// DefaultPolicyHeader is the gRPC initial-metadata key that selects a
// named policy; set it per route with ExtProcPerRoute
// overrides.grpc_initial_metadata.
const DefaultPolicyHeader = "x-gopotency-policy"

// DefaultMaxBufferedBytes bounds the body bytes all streams hold at once.
const DefaultMaxBufferedBytes = 256 << 20

// Options configure a Server.
type Options struct {
	Engine *idempotency.Engine
	// Default applies to routes that name no policy.
	Default *idempotency.Policy
	// Policies are selected by name through PolicyHeader or RoutePolicies.
	Policies map[string]*idempotency.Policy
	// PolicyHeader is the gRPC metadata key naming the policy
	// (DefaultPolicyHeader when empty).
	PolicyHeader string
	// RoutePolicies maps Envoy route name prefixes (the xds.route_name
	// request attribute) to policy names, for proxies that cannot set
	// per-route gRPC metadata (Envoy Gateway names its routes
	// httproute/<namespace>/<name>/rule/<n>/…). The longest matching prefix
	// wins; metadata wins over both.
	RoutePolicies map[string]string
	// MaxMessageTimeout mirrors the filter's max_message_timeout. When
	// positive, a request that may wait for an in-flight duplicate first
	// extends Envoy's message timeout (override_message_timeout) so the
	// wait does not end in a 504. Zero never sends an override (Envoy
	// would reject it).
	MaxMessageTimeout time.Duration
	// MaxBufferedBytes bounds the request and response body bytes all
	// streams hold at once (DefaultMaxBufferedBytes when zero). Past it,
	// new guarded requests get 503 server-busy with Retry-After; requests
	// already admitted finish as usual.
	MaxBufferedBytes int64
	// AnswerWithin is the longest an answer to Envoy waits on such a call,
	// its first attempt included (a store that honours its deadline): the
	// store_timeout, which the configuration keeps below Envoy's
	// message_timeout. Past it the answer goes out and the retries go on in
	// the background (Wait waits for them). Zero waits for them.
	AnswerWithin time.Duration
	Logger       *slog.Logger
	// StreamsActive, when set, is told +1/-1 as streams open and close.
	StreamsActive func(delta int)
	// Buffered, when set, is told the change of buffered body bytes.
	Buffered func(delta int64)
	// ProtocolError, when set, is called once per stream that broke the
	// protocol (a guarded request reaching the upstream undecided, an
	// Envoy config that does not match the policies), with a short reason.
	ProtocolError func(reason string)
	// Decided, when set, is told what became of each request the filter
	// judged, with the stream's context (package tracing puts it on the
	// stream's span). It must not block.
	Decided func(ctx context.Context, d Decision)
}

// Decision is what Options.Decided is told. It never carries the key.
type Decision struct {
	// Policy is the policy's name; DefaultPolicyName for default_policy,
	// empty when none was chosen (a route naming an unknown policy).
	Policy string
	// Outcome is pass, proceed, replay or reject.
	Outcome string
	// Problem is a reject's problem type slug (key-reused, …).
	Problem string
}

// DefaultPolicyName names default_policy in a Decision.
const DefaultPolicyName = "default"

// Server implements extprocv3.ExternalProcessorServer.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	o        Options
	policies map[*idempotency.Policy]*policyInfo
	contract Contract
	buffered atomic.Int64
	// routes are RoutePolicies' prefixes, longest first, so the first
	// match is the longest without a map walk per request.
	routes []routePolicy

	warnNoDetails   sync.Once
	warnNoPrincipal sync.Once
	warnStaticResp  sync.Once
}

// New validates o and returns a server.
func New(o Options) (*Server, error) {
	if o.Engine == nil || o.Default == nil {
		return nil, errors.New("extproc: Engine and Default policy are required")
	}
	if o.PolicyHeader == "" {
		o.PolicyHeader = DefaultPolicyHeader
	}
	o.PolicyHeader = strings.ToLower(o.PolicyHeader) // gRPC metadata keys are lower case
	if o.MaxBufferedBytes <= 0 {
		o.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{o: o, policies: map[*idempotency.Policy]*policyInfo{}}
	for prefix, name := range o.RoutePolicies {
		if o.Policies[name] == nil {
			return nil, fmt.Errorf("extproc: route %q names policy %q, which is not defined", prefix, name)
		}
		if prefix == "" {
			return nil, errors.New("extproc: an empty route name prefix would match every route; set Default instead")
		}
		s.routes = append(s.routes, routePolicy{prefix: prefix, policy: o.Policies[name]})
	}
	slices.SortFunc(s.routes, func(a, b routePolicy) int { return cmp.Compare(len(b.prefix), len(a.prefix)) })
	s.policies[o.Default] = newPolicyInfo(o.Default)
	s.policies[o.Default].name = DefaultPolicyName
	for name, p := range o.Policies {
		s.policies[p] = newPolicyInfo(p)
		s.policies[p].name = name
	}
	s.contract = NewContract(o.Default, o.Policies, len(o.RoutePolicies) > 0)
	return s, nil
}

// Contract returns what a body-first Envoy configuration must send.
func (s *Server) Contract() Contract { return s.contract }

// Buffered returns the body bytes the streams hold now.
func (s *Server) Buffered() int64 { return s.buffered.Load() }

// Process handles one HTTP request's stream.
func (s *Server) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	if s.o.StreamsActive != nil {
		s.o.StreamsActive(1)
		defer s.o.StreamsActive(-1)
	}
	p := &processor{s: s, ctx: stream.Context(), send: stream.Send, log: s.o.Logger}
	defer func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.finish()
	}()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
			return nil // Envoy half-closes or resets: both are a normal end
		}
		if err != nil {
			return fmt.Errorf("extproc: receive: %w", err)
		}
		if end, err := p.step(req); end {
			return err
		}
	}
}

// step handles one message and sends its answers, under the stream's
// lock; end says the stream is over (err nil when Envoy went away).
func (p *processor) step(req *extprocv3.ProcessingRequest) (end bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	answers, err := p.handle(req)
	if err != nil {
		p.log.ErrorContext(p.ctx, "ext_proc protocol error; ending stream", "error", err)
		return true, status.Error(codes.InvalidArgument, err.Error())
	}
	for _, resp := range answers {
		if err := p.send(resp); err != nil {
			if status.Code(err) == codes.Canceled || errors.Is(err, io.EOF) || p.ctx.Err() != nil {
				return true, nil
			}
			return true, fmt.Errorf("extproc: send: %w", err)
		}
	}
	return false, nil
}

// policyFor returns the policy the route asked for: by gRPC metadata
// (ExtProcPerRoute grpc_initial_metadata), else by route name
// (RoutePolicies), else the default.
func (s *Server) policyFor(ctx context.Context, routeName string) (*idempotency.Policy, error) {
	if names := metadata.ValueFromIncomingContext(ctx, s.o.PolicyHeader); len(names) > 0 && names[0] != "" {
		if p, ok := s.o.Policies[names[0]]; ok {
			return p, nil
		}
		return nil, fmt.Errorf("%w: the route names policy %q, which the configuration does not define", idempotency.ErrMisconfigured, names[0])
	}
	if len(s.routes) > 0 && routeName == "" {
		// Falling back to default_policy would silently drop what a
		// route's own policy requires (key_required, its fingerprint).
		return nil, fmt.Errorf("%w: %w: add it to the ext_proc filter's request_attributes (gopotency envoy-config does)", idempotency.ErrMisconfigured, errNoRouteName)
	}
	for _, r := range s.routes {
		if strings.HasPrefix(routeName, r.prefix) {
			return r.policy, nil
		}
	}
	return s.o.Default, nil
}

// routePolicy is one entry of Options.RoutePolicies.
type routePolicy struct {
	prefix string
	policy *idempotency.Policy
}

// errNoRouteName: route_policies need Envoy's route name, and Envoy sent
// none. Every request through the filter is refused until it does.
var errNoRouteName = errors.New("route_policies are set but Envoy sends no xds.route_name")

// Wait returns once every outcome still being saved in the background has
// been (each is bounded: idempotency.Engine.Wait): call it after the gRPC
// server stopped, with grpc.WaitForHandlers(true) so that first attempts
// on the streams have returned, and before the store is closed.
func (s *Server) Wait() { s.o.Engine.Wait() }

// protocolError reports a stream that broke the protocol.
func (s *Server) protocolError(reason string) {
	if s.o.ProtocolError != nil {
		s.o.ProtocolError(reason)
	}
}

// hold adds n buffered bytes (negative to release).
func (s *Server) hold(n int64) {
	if n == 0 {
		return
	}
	s.buffered.Add(n)
	if s.o.Buffered != nil {
		s.o.Buffered(n)
	}
}

// busy reports whether new guarded requests must be turned away.
func (s *Server) busy() bool { return s.buffered.Load() >= s.o.MaxBufferedBytes }
