package guard

import (
	"context"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Options is what a front end's options set: the Config and the front
// end's error handler H, whose signature is the framework's (for net/http
// func(http.ResponseWriter, *http.Request, *idempotency.Problem, error)).
// The With… functions below are written once here; each front end names
// them in its own package, so users write stdhttp.WithPolicy or
// ginmw.WithPolicy and the compiler checks C and H.
type Options[C, H any] struct {
	Config[C]
	// ErrorHandler answers rejected requests; its zero value means the
	// front end's default.
	ErrorHandler H
}

// Option sets Options.
type Option[C, H any] func(*Options[C, H])

// Apply returns the Options opts set, in order: a later option overrides
// an earlier one.
func Apply[C, H any](opts ...Option[C, H]) Options[C, H] {
	var o Options[C, H]
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithPolicy applies p to every request (nil: idempotency.DefaultPolicy).
// p is copied when the middleware is built, and a policy that does not
// validate is reported then. It replaces WithPolicyFunc. To give routes
// different policies, use one middleware per route or group, or
// WithPolicyFunc.
func WithPolicy[C, H any](p *idempotency.Policy) Option[C, H] {
	return func(o *Options[C, H]) { o.Policy, o.PolicyFunc = p, nil }
}

// WithPolicyFunc chooses the policy per request, for example by route;
// returning nil lets the request through untouched. Return policies built
// and validated once, not per request. It replaces WithPolicy.
func WithPolicyFunc[C, H any](f func(c C) *idempotency.Policy) Option[C, H] {
	return func(o *Options[C, H]) { o.Policy, o.PolicyFunc = nil, f }
}

// WithKeyFunc takes the key from elsewhere than the policy's key header
// (ok false falls back to the header). The value is parsed like the header.
func WithKeyFunc[C, H any](f func(c C) (key string, ok bool)) Option[C, H] {
	return func(o *Options[C, H]) { o.Key = f }
}

// WithScopeFunc names the caller, for example the user id your
// authentication middleware stored with the request. It is hashed into the
// storage key together with the policy's scope headers, so one caller never
// sees another's responses.
func WithScopeFunc[C, H any](f func(c C) string) Option[C, H] {
	return func(o *Options[C, H]) { o.Scope = f }
}

// WithErrorHandler replaces the front end's default answer to rejected
// requests (bad or missing key, retry in flight, key reused, store down).
func WithErrorHandler[C, H any](h H) Option[C, H] {
	return func(o *Options[C, H]) { o.ErrorHandler = h }
}

// WithClock replaces time.Now and the sleeps used for waiting and lease
// renewal (tests pass a fake clock).
func WithClock[C, H any](now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) Option[C, H] {
	return WithEngineOptions[C, H](idempotency.WithClock(now, sleep))
}

// WithEngineOptions passes options to the engine (hooks for metrics, logger,
// store timeout).
func WithEngineOptions[C, H any](opts ...idempotency.Option) Option[C, H] {
	return func(o *Options[C, H]) { o.Engine = append(o.Engine, opts...) }
}
