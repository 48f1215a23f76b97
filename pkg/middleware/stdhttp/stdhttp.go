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
type Option = guard.Option[*http.Request, ErrorHandler]

// The options are written once, in package guard, where each is
// documented; the types bind them to this framework.
var (
	// WithPolicy applies p to every request (nil: idempotency.DefaultPolicy).
	WithPolicy func(p *idempotency.Policy) Option = guard.WithPolicy
	// WithPolicyFunc chooses the policy per request; nil passes it untouched.
	WithPolicyFunc func(f func(r *http.Request) *idempotency.Policy) Option = guard.WithPolicyFunc
	// WithKeyFunc takes the key from elsewhere than the key header.
	WithKeyFunc func(f func(r *http.Request) (key string, ok bool)) Option = guard.WithKeyFunc
	// WithScopeFunc names the caller; callers never share records.
	WithScopeFunc func(f func(r *http.Request) string) Option = guard.WithScopeFunc
	// WithErrorHandler replaces DefaultErrorHandler.
	WithErrorHandler func(h ErrorHandler) Option = guard.WithErrorHandler
	// WithClock replaces time.Now and the sleeps (tests).
	WithClock func(now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) Option = guard.WithClock
	// WithEngineOptions passes options to the engine (hooks, logger).
	WithEngineOptions func(opts ...idempotency.Option) Option = guard.WithEngineOptions
)

// DefaultErrorHandler writes p as application/problem+json (RFC 9457).
func DefaultErrorHandler(w http.ResponseWriter, _ *http.Request, p *idempotency.Problem, _ error) {
	guard.WriteProblem(w, p)
}

// New returns the middleware over store.
func New(store idempotency.Store, opts ...Option) (func(http.Handler) http.Handler, error) {
	o := guard.Apply(opts...)
	g, err := guard.New(store, o.Config)
	if err != nil {
		return nil, fmt.Errorf("stdhttp: %w", err)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			out := guard.HTTPResponder{ResponseWriter: w}
			if o.ErrorHandler != nil {
				out.OnReject = func(p *idempotency.Problem, err error) { o.ErrorHandler(w, r, p, err) }
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
