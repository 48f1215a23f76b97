// Package ginmw is the idempotency middleware for Gin: requests carrying an
// Idempotency-Key run once; retries get the stored answer with
// Idempotent-Replayed: true and the handler chain is aborted.
//
// It is a thin adapter over the engine in package idempotency; the behaviour
// (docs/middleware.md) is the same as the Envoy ext_proc server's.
package ginmw

import (
	"context"
	"fmt"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/guard"
)

// ErrorHandler answers a request the engine rejected (bad or missing key,
// retry in flight, key reused, store down, …). err explains p. The chain is
// aborted afterwards.
type ErrorHandler func(c *gin.Context, p *idempotency.Problem, err error)

// Option configures the middleware.
type Option func(*options)

type options struct {
	guard.Config[*gin.Context]
	errh ErrorHandler
}

// WithPolicy applies p to every request (default: idempotency.DefaultPolicy).
// New reports a policy that does not validate. To give routes different
// policies, use one middleware per route group, or WithPolicyFunc.
func WithPolicy(p idempotency.Policy) Option {
	return func(o *options) { o.Policy, o.PolicyFunc = &p, nil }
}

// WithPolicyFunc chooses the policy per request, for example by
// c.FullPath(); returning nil lets the request through untouched. Return
// policies built and validated once, not per request.
func WithPolicyFunc(f func(c *gin.Context) *idempotency.Policy) Option {
	return func(o *options) { o.Policy, o.PolicyFunc = nil, f }
}

// WithKeyFunc takes the key from elsewhere than the policy's key header
// (ok false falls back to the header). The value is parsed like the header.
func WithKeyFunc(f func(c *gin.Context) (key string, ok bool)) Option {
	return func(o *options) { o.Key = f }
}

// WithScopeFunc names the caller, for example the user id your
// authentication middleware put in the context with c.Set. It is hashed
// into the storage key together with the policy's scope headers.
func WithScopeFunc(f func(c *gin.Context) string) Option {
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
func DefaultErrorHandler(c *gin.Context, p *idempotency.Problem, _ error) {
	guard.WriteProblem(c.Writer, p)
}

// New returns the middleware over store.
func New(store idempotency.Store, opts ...Option) (gin.HandlerFunc, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	g, err := guard.New(store, o.Config)
	if err != nil {
		return nil, fmt.Errorf("ginmw: %w", err)
	}
	return func(c *gin.Context) {
		ran := false
		out := guard.HTTPResponder{ResponseWriter: c.Writer}
		if o.errh != nil {
			out.OnReject = func(p *idempotency.Problem, err error) { o.errh(c, p, err) }
		}
		g.Serve(c, guard.HTTPRequest(c.Request), out,
			func() { ran = true; c.Next() },
			func(rec *guard.Recorder) {
				ran = true
				orig := c.Writer
				w := &writer{ResponseWriter: orig, rec: rec}
				c.Writer = w
				defer func() { c.Writer = orig }()
				c.Next()
				w.finish()
			})
		if !ran {
			c.Abort() // answered here: replay or problem
		}
	}, nil
}
