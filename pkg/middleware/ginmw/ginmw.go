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
type Option = guard.Option[*gin.Context, ErrorHandler]

// The options are written once, in package guard, where each is
// documented; the types bind them to this framework.
var (
	// WithPolicy applies p to every request (nil: idempotency.DefaultPolicy).
	WithPolicy func(p *idempotency.Policy) Option = guard.WithPolicy
	// WithPolicyFunc chooses the policy per request; nil passes it untouched.
	WithPolicyFunc func(f func(c *gin.Context) *idempotency.Policy) Option = guard.WithPolicyFunc
	// WithKeyFunc takes the key from elsewhere than the key header.
	WithKeyFunc func(f func(c *gin.Context) (key string, ok bool)) Option = guard.WithKeyFunc
	// WithScopeFunc names the caller; callers never share records.
	WithScopeFunc func(f func(c *gin.Context) string) Option = guard.WithScopeFunc
	// WithErrorHandler replaces DefaultErrorHandler.
	WithErrorHandler func(h ErrorHandler) Option = guard.WithErrorHandler
	// WithClock replaces time.Now and the sleeps (tests).
	WithClock func(now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) Option = guard.WithClock
	// WithEngineOptions passes options to the engine (hooks, logger).
	WithEngineOptions func(opts ...idempotency.Option) Option = guard.WithEngineOptions
)

// DefaultErrorHandler writes p as application/problem+json (RFC 9457).
func DefaultErrorHandler(c *gin.Context, p *idempotency.Problem, _ error) {
	guard.WriteProblem(c.Writer, p)
}

// New returns the middleware over store.
func New(store idempotency.Store, opts ...Option) (gin.HandlerFunc, error) {
	o := guard.Apply(opts...)
	g, err := guard.New(store, o.Config)
	if err != nil {
		return nil, fmt.Errorf("ginmw: %w", err)
	}
	return func(c *gin.Context) {
		ran := false
		out := guard.HTTPResponder{ResponseWriter: c.Writer}
		if o.ErrorHandler != nil {
			out.OnReject = func(p *idempotency.Problem, err error) { o.ErrorHandler(c, p, err) }
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
