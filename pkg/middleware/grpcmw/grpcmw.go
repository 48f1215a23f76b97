// Package grpcmw makes unary gRPC methods idempotent: a call carrying an
// idempotency-key metadata entry runs once; retries get the stored reply
// (decoded into the method's response type) or the stored error status,
// with idempotent-replayed: true in the header metadata, and never reach
// the handler. UnaryClientInterceptor attaches a key to each call and
// retries it safely.
//
// It runs the engine of package idempotency, so the store, lease renewal,
// in-flight (Aborted, or a bounded wait) and mismatch (AlreadyExists)
// rules are those of the HTTP middleware and the Envoy ext_proc server;
// refusals are gRPC statuses mapped from the same problem table (CodeOf),
// carrying a google.rpc.ErrorInfo with the problem type and, when a retry
// may succeed, a google.rpc.RetryInfo.
package grpcmw

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Metadata keys. gRPC metadata keys are lower case, so these are the HTTP
// header names of package idempotency in that form.
const (
	// KeyMetadata carries the idempotency key: the default policy's
	// KeyHeader, which the server reads and UnaryClientInterceptor sets.
	KeyMetadata = "idempotency-key"
	// ReplayedKey is the header metadata key set to "true" on replays.
	ReplayedKey = "idempotent-replayed"
)

// Option configures the server interceptor.
type Option func(*server)

// WithPolicy applies p to every unary method (nil:
// idempotency.DefaultPolicy; its Methods do not apply to gRPC). The key is
// read from the metadata named by p.KeyHeader (KeyMetadata by default);
// the caller scope from the metadata named by p.ScopeHeaders
// (authorization by default). UnaryServerInterceptor copies p and reports
// a policy that does not validate.
func WithPolicy(p *idempotency.Policy) Option {
	return func(s *server) { s.static, s.policy = p, nil }
}

// WithPolicyFunc chooses the policy per method (fullMethod is
// "/package.Service/Method"); nil lets the call through untouched. Return
// policies built and validated once.
func WithPolicyFunc(f func(ctx context.Context, fullMethod string) *idempotency.Policy) Option {
	return func(s *server) { s.static, s.policy = nil, f }
}

// WithScopeFunc names the caller, for example the authenticated peer or
// the user your auth interceptor put in the context. It is hashed into the
// storage key together with the scope metadata.
func WithScopeFunc(f func(ctx context.Context) string) Option {
	return func(s *server) { s.scope = f }
}

// WithTypes resolves stored reply message names to types (default
// protoregistry.GlobalTypes, where generated code registers itself).
func WithTypes(r protoregistry.MessageTypeResolver) Option {
	return func(s *server) { s.types = r }
}

// WithEngineOptions passes options to the engine (hooks for metrics,
// logger, clock, store timeout).
func WithEngineOptions(opts ...idempotency.Option) Option {
	return func(s *server) { s.engOpts = append(s.engOpts, opts...) }
}

type server struct {
	eng     *idempotency.Engine
	static  *idempotency.Policy
	policy  func(context.Context, string) *idempotency.Policy
	scope   func(context.Context) string
	types   protoregistry.MessageTypeResolver
	engOpts []idempotency.Option
}

// UnaryServerInterceptor returns the interceptor over store. It returns
// an error only for a bad configuration.
//
// What is stored: the reply (proto, deterministic encoding) with the
// header and trailer metadata the handler set; an error status whose code
// maps (CodeToHTTP) to a status the policy stores (InvalidArgument,
// NotFound, AlreadyExists, FailedPrecondition, PermissionDenied, …) with
// its details. Internal, Unknown, Unavailable, ResourceExhausted and the
// other codes mapping to DoNotStore release the key. Canceled and
// DeadlineExceeded mean the handler gave up and may have had its effect:
// the outcome is recorded as unknown, never run again. A panic before the
// header was sent releases the key; after, the outcome is unknown.
func UnaryServerInterceptor(store idempotency.Store, opts ...Option) (grpc.UnaryServerInterceptor, error) {
	s := &server{types: protoregistry.GlobalTypes}
	for _, o := range opts {
		o(s)
	}
	var errs []error
	if store == nil {
		errs = append(errs, errors.New("store is nil"))
	}
	if s.policy == nil {
		p := idempotency.DefaultPolicy()
		if s.static != nil {
			p = *s.static
		}
		if err := p.Validate(); err != nil {
			errs = append(errs, err)
		}
		s.policy = func(context.Context, string) *idempotency.Policy { return &p }
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("grpcmw: %w", err)
	}
	s.eng = idempotency.New(store, s.engOpts...)
	return s.intercept, nil
}

func (s *server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	p := s.policy(ctx, info.FullMethod)
	if p == nil {
		return handler(ctx, req)
	}
	op, problem := s.operation(ctx, p, info.FullMethod, req)
	if problem != nil {
		return nil, StatusOf(problem).Err()
	}
	d := s.eng.BeginOperation(ctx, p, op)
	switch d.Kind {
	case idempotency.Proceed:
		return s.proceed(ctx, d.Lease, req, handler)
	case idempotency.Replay:
		return s.replay(ctx, d.Record)
	case idempotency.Reject:
		return nil, StatusOf(d.Problem).Err()
	}
	return handler(ctx, req)
}

// operation reads the key, scope and fingerprint of a call. A problem
// refuses the call before the store is asked.
func (s *server) operation(ctx context.Context, p *idempotency.Policy, method string, req any) (idempotency.Operation, *idempotency.Problem) {
	md, _ := metadata.FromIncomingContext(ctx)
	op := idempotency.Operation{Namespace: "grpc", Name: method}
	keys := md.Get(p.KeyHeader)
	switch {
	case len(keys) > 1:
		err := fmt.Errorf("%w: %d %s values sent, exactly one allowed", idempotency.ErrKeyMalformed, len(keys), strings.ToLower(p.KeyHeader))
		return op, idempotency.ProblemFor(err)
	case len(keys) == 1 && keys[0] == "":
		return op, idempotency.ProblemFor(fmt.Errorf("%w: empty value", idempotency.ErrKeyMalformed))
	case len(keys) == 1:
		op.Key = keys[0]
	}
	if op.Key == "" && p.AutoKey == nil {
		return op, nil // BeginOperation passes it, or refuses it as missing
	}
	msg, ok := req.(proto.Message)
	if !ok {
		err := fmt.Errorf("grpcmw: %s: request %T is not a proto message, so it cannot be fingerprinted", method, req)
		return op, idempotency.ProblemFor(err)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return op, idempotency.ProblemFor(fmt.Errorf("grpcmw: encode request: %w", err))
	}
	if p.Fingerprint == idempotency.FingerprintBody && int64(len(body)) > p.MaxRequestBody {
		return op, idempotency.ProblemFor(fmt.Errorf("%w: %d bytes, at most %d", idempotency.ErrRequestTooLarge, len(body), p.MaxRequestBody))
	}
	if p.Fingerprint == idempotency.FingerprintBody {
		op.Payload = appendField(op.Payload, body)
	}
	for _, name := range p.FingerprintHeaders {
		op.Payload = appendField(appendField(op.Payload, []byte(strings.ToLower(name))), []byte(strings.Join(md.Get(name), "\x00")))
	}
	if op.Key == "" { // automatic key: the method and the whole message
		sum := sha256.Sum256(appendField(appendField([]byte("gopotency/grpc-autokey/v1"), []byte(method)), body))
		op.Key = "auto." + hex.EncodeToString(sum[:])
	}
	for _, name := range p.ScopeHeaders {
		if vs := md.Get(name); len(vs) > 0 {
			op.Scope = append(op.Scope, strings.ToLower(name), strings.Join(vs, "\x00"))
		}
	}
	if s.scope != nil {
		op.Scope = append(op.Scope, ":func", s.scope(ctx))
	}
	return op, nil
}

// appendField appends b length-prefixed, so no two field lists collide.
func appendField(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func (s *server) proceed(ctx context.Context, l *idempotency.Lease, req any, handler grpc.UnaryHandler) (reply any, err error) {
	l.KeepAlive(ctx)
	st := &stream{ServerTransportStream: grpc.ServerTransportStreamFromContext(ctx)}
	settle := func(f func(context.Context) error) {
		// Waits for the record even if the client is gone, so a graceful
		// stop waits for it too (the engine bounds it by the lease).
		_ = f(context.WithoutCancel(ctx)) // failures are logged and counted by the engine
	}
	returned := false
	defer func() {
		if !returned {
			// A panic: nothing was answered unless the header went out.
			settle(func(c context.Context) error { return l.Abandon(c, st.sent) })
		}
	}()
	if st.ServerTransportStream != nil {
		ctx = grpc.NewContextWithServerTransportStream(ctx, st)
	}
	reply, err = handler(ctx, req)
	returned = true
	resp, unknown := response(st, reply, err)
	if unknown {
		settle(func(c context.Context) error { return l.Abandon(c, true) })
	} else {
		settle(func(c context.Context) error { return l.Complete(c, resp) })
	}
	return reply, err
}
