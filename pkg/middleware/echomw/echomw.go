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
type Option func(*options)

type options struct {
	guard.Config[echo.Context]
	errh ErrorHandler
}

// WithPolicy applies p to every request (default: idempotency.DefaultPolicy).
// New reports a policy that does not validate. To give routes different
// policies, use one middleware per route or group, or WithPolicyFunc.
func WithPolicy(p idempotency.Policy) Option {
	return func(o *options) { o.Policy, o.PolicyFunc = &p, nil }
}

// WithPolicyFunc chooses the policy per request, for example by c.Path();
// returning nil lets the request through untouched. Return policies built
// and validated once, not per request.
func WithPolicyFunc(f func(c echo.Context) *idempotency.Policy) Option {
	return func(o *options) { o.Policy, o.PolicyFunc = nil, f }
}

// WithKeyFunc takes the key from elsewhere than the policy's key header
// (ok false falls back to the header). The value is parsed like the header.
func WithKeyFunc(f func(c echo.Context) (key string, ok bool)) Option {
	return func(o *options) { o.Key = f }
}

// WithScopeFunc names the caller, for example the user id your
// authentication middleware put in the context with c.Set. It is hashed
// into the storage key together with the policy's scope headers.
func WithScopeFunc(f func(c echo.Context) string) Option {
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
func DefaultErrorHandler(c echo.Context, p *idempotency.Problem, _ error) error {
	guard.WriteProblem(c.Response(), p)
	return nil
}

// New returns the middleware over store.
func New(store idempotency.Store, opts ...Option) (echo.MiddlewareFunc, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	g, err := guard.New(store, o.Config)
	if err != nil {
		return nil, fmt.Errorf("echomw: %w", err)
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			var herr error
			out := guard.HTTPResponder{ResponseWriter: c.Response()}
			if o.errh != nil {
				out.OnReject = func(p *idempotency.Problem, err error) {
					if herr = o.errh(c, p, err); herr != nil {
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
