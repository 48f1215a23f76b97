// Package stdhttp is the idempotency middleware for net/http: wrap a handler
// and requests carrying an Idempotency-Key run once; retries get the stored
// answer with Idempotent-Replayed: true and never reach the handler.
//
// It is a thin adapter over the engine in package idempotency; the behaviour
// (docs/middleware.md) is the same as the Envoy ext_proc server's.
package stdhttp

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/guard"
)

// ErrorHandler answers a request the engine rejected (bad or missing key,
// retry in flight, key reused, store down, …). err explains p.
type ErrorHandler func(w http.ResponseWriter, r *http.Request, p *idempotency.Problem, err error)

// Option configures the middleware.
type Option func(*options)

type options struct {
	guard.Config[*http.Request]
	errh ErrorHandler
}

// WithPolicy applies p to every request (default: idempotency.DefaultPolicy).
// New reports a policy that does not validate.
func WithPolicy(p idempotency.Policy) Option {
	return func(o *options) { o.Policy, o.PolicyFunc = &p, nil }
}

// WithPolicyFunc chooses the policy per request, for example by route;
// returning nil lets the request through untouched. Return policies built
// and validated once, not per request.
func WithPolicyFunc(f func(r *http.Request) *idempotency.Policy) Option {
	return func(o *options) { o.Policy, o.PolicyFunc = nil, f }
}

// WithKeyFunc takes the key from elsewhere than the policy's key header
// (ok false falls back to the header). The value is parsed like the header.
func WithKeyFunc(f func(r *http.Request) (key string, ok bool)) Option {
	return func(o *options) { o.Key = f }
}

// WithScopeFunc names the caller, for example the user id your
// authentication middleware stored in the context. It is hashed into the
// storage key together with the policy's scope headers, so one caller never
// sees another's responses.
func WithScopeFunc(f func(r *http.Request) string) Option {
	return func(o *options) { o.Scope = f }
}

// WithErrorHandler replaces the default answer to rejected requests
// (DefaultErrorHandler).
func WithErrorHandler(h ErrorHandler) Option {
	return func(o *options) { o.errh = h }
}

// WithClock replaces time.Now and the sleeps used for waiting and lease
// renewal (tests pass a fake clock).
func WithClock(now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) Option {
	return WithEngineOptions(idempotency.WithClock(now, sleep))
}

// WithEngineOptions passes options to the engine (hooks for metrics, logger).
func WithEngineOptions(opts ...idempotency.Option) Option {
	return func(o *options) { o.Engine = append(o.Engine, opts...) }
}

// DefaultErrorHandler writes p as application/problem+json (RFC 9457).
func DefaultErrorHandler(w http.ResponseWriter, _ *http.Request, p *idempotency.Problem, _ error) {
	guard.WriteProblem(w, p)
}

// New returns the middleware over store.
func New(store idempotency.Store, opts ...Option) (func(http.Handler) http.Handler, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	g, err := guard.New(store, o.Config)
	if err != nil {
		return nil, fmt.Errorf("stdhttp: %w", err)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			out := guard.HTTPResponder{ResponseWriter: w}
			if o.errh != nil {
				out.OnReject = func(p *idempotency.Problem, err error) { o.errh(w, r, p, err) }
			}
			g.Serve(r, guard.HTTPRequest(r), out,
				func() { next.ServeHTTP(w, r) },
				func(rec *guard.Recorder) {
					cw := guard.NewWriter(w, rec)
					next.ServeHTTP(cw, r)
					cw.Finish()
				})
		})
	}, nil
}
