// Package extproc is the Envoy external processing (ext_proc) service: a
// gRPC envoy.service.ext_proc.v3.ExternalProcessor that puts the
// idempotency engine in front of any upstream.
//
// One gRPC stream carries one HTTP request. Server.Process runs the stream
// loop; a processor (processor.go) holds the per-request state and has one
// method per phase. Every message gets exactly one answer of the matching
// type, in order; Canceled and EOF end a stream normally.
//
// Envoy is configured to send request headers only, with
// allow_mode_override. The processor then asks, per request, for just what
// it needs: the buffered request body when the fingerprint or an automatic
// key needs it, and the response phases only for requests that hold a
// lease.
package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
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

// Options configure a Server.
type Options struct {
	Engine *idempotency.Engine
	// Default applies to routes that name no policy.
	Default *idempotency.Policy
	// Policies are selected by name through PolicyHeader.
	Policies map[string]*idempotency.Policy
	// PolicyHeader is the gRPC metadata key naming the policy
	// (DefaultPolicyHeader when empty).
	PolicyHeader string
	// MaxMessageTimeout mirrors the filter's max_message_timeout. When
	// positive, a request that may wait for an in-flight duplicate first
	// extends Envoy's message timeout (override_message_timeout) so the
	// wait does not end in a 504. Zero never sends an override (Envoy
	// would reject it).
	MaxMessageTimeout time.Duration
	// SettleTimeout bounds the store call that records or releases a key
	// after the stream ends (5s when zero).
	SettleTimeout time.Duration
	Logger        *slog.Logger
	// StreamsActive, when set, is told +1/-1 as streams open and close.
	StreamsActive func(delta int)
}

// Server implements extprocv3.ExternalProcessorServer.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	o               Options
	warnNoDetails   sync.Once
	warnNoPrincipal sync.Once
}

// New validates o and returns a server.
func New(o Options) (*Server, error) {
	if o.Engine == nil || o.Default == nil {
		return nil, errors.New("extproc: Engine and Default policy are required")
	}
	if o.PolicyHeader == "" {
		o.PolicyHeader = DefaultPolicyHeader
	}
	if o.SettleTimeout <= 0 {
		o.SettleTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{o: o}, nil
}

// Process handles one HTTP request's stream.
func (s *Server) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	if s.o.StreamsActive != nil {
		s.o.StreamsActive(1)
		defer s.o.StreamsActive(-1)
	}
	p := &processor{s: s, ctx: stream.Context(), send: stream.Send, log: s.o.Logger}
	defer p.finish()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
			return nil // Envoy half-closes or resets: both are a normal end
		}
		if err != nil {
			return fmt.Errorf("extproc: receive: %w", err)
		}
		resp, err := p.handle(req)
		if err != nil {
			p.log.ErrorContext(p.ctx, "ext_proc protocol error; ending stream", "error", err)
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if resp == nil {
			continue // observability mode: Envoy expects no answer
		}
		if err := p.reply(resp); err != nil {
			if status.Code(err) == codes.Canceled || errors.Is(err, io.EOF) || p.ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("extproc: send: %w", err)
		}
	}
}

// policyFor returns the policy the route asked for through gRPC metadata.
func (s *Server) policyFor(ctx context.Context) (*idempotency.Policy, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	names := md.Get(s.o.PolicyHeader)
	if len(names) == 0 || names[0] == "" {
		return s.o.Default, nil
	}
	if p, ok := s.o.Policies[names[0]]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("route names policy %q, which the configuration does not define", names[0])
}
