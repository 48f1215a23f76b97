// Package echomw is the idempotency middleware for Echo v4: requests
// carrying an Idempotency-Key run once; retries get the stored answer with
// Idempotent-Replayed: true and never reach the handler.
//
// It is a thin adapter over the engine in package idempotency; the behaviour
// (docs/middleware.md) is the same as the Envoy ext_proc server's.
package echomw

import (
	"context"
	"fmt"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/guard"
)

// ErrorHandler answers a request the engine rejected (bad or missing key,
// retry in flight, key reused, store down, …). err explains p. An error it
// returns goes to Echo's HTTPErrorHandler.
type ErrorHandler func(c echo.Context, p *idempotency.Problem, err error) error

// Option configures the middleware.
type Option = guard.Option[echo.Context, ErrorHandler]

// The options are written once, in package guard, where each is
// documented; the types bind them to this framework.
var (
	// WithPolicy applies p to every request (nil: idempotency.DefaultPolicy).
	WithPolicy func(p *idempotency.Policy) Option = guard.WithPolicy
	// WithPolicyFunc chooses the policy per request; nil passes it untouched.
	WithPolicyFunc func(f func(c echo.Context) *idempotency.Policy) Option = guard.WithPolicyFunc
	// WithKeyFunc takes the key from elsewhere than the key header.
	WithKeyFunc func(f func(c echo.Context) (key string, ok bool)) Option = guard.WithKeyFunc
	// WithScopeFunc names the caller; callers never share records.
	WithScopeFunc func(f func(c echo.Context) string) Option = guard.WithScopeFunc
	// WithErrorHandler replaces DefaultErrorHandler.
	WithErrorHandler func(h ErrorHandler) Option = guard.WithErrorHandler
	// WithClock replaces time.Now and the sleeps (tests).
	WithClock func(now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) Option = guard.WithClock
	// WithEngineOptions passes options to the engine (hooks, logger).
	WithEngineOptions func(opts ...idempotency.Option) Option = guard.WithEngineOptions
)

// DefaultErrorHandler writes p as application/problem+json (RFC 9457).
func DefaultErrorHandler(c echo.Context, p *idempotency.Problem, _ error) error {
	guard.WriteProblem(c.Response(), p)
	return nil
}

// New returns the middleware over store.
func New(store idempotency.Store, opts ...Option) (echo.MiddlewareFunc, error) {
	o := guard.Apply(opts...)
	g, err := guard.New(store, o.Config)
	if err != nil {
		return nil, fmt.Errorf("echomw: %w", err)
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			var herr error
			out := guard.HTTPResponder{ResponseWriter: c.Response()}
			if o.ErrorHandler != nil {
				out.OnReject = func(p *idempotency.Problem, err error) {
					if herr = o.ErrorHandler(c, p, err); herr != nil {
						c.Error(herr)
					}
				}
			}
			g.Serve(c, guard.HTTPRequest(c.Request()), out,
				func() { herr = next(c) },
				func(rec *guard.Recorder) { herr = runRecorded(c, next, rec) })
			return herr
		}
	}, nil
}

// runRecorded runs next with the response recorded. An error next returns
// is rendered here, by Echo's HTTPErrorHandler, so the error answer is what
// gets recorded, and then returned for outer middleware (loggers, error
// metrics). Echo's HTTPErrorHandler ignores an error whose response is
// already committed, so it is not rendered twice (as with Echo's
// RequestLogger and HandleError).
func runRecorded(c echo.Context, next echo.HandlerFunc, rec *guard.Recorder) error {
	res := c.Response()
	orig := res.Writer
	res.Writer = guard.NewWriter(orig, rec)
	defer func() { res.Writer = orig }()
	err := next(c)
	if err != nil {
		c.Error(err)
	}
	if !res.Committed && !rec.Hijacked() {
		rec.SetImplicit()
		res.WriteHeader(res.Status)
	}
	return err
}
