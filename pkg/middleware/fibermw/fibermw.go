// Package fibermw is the idempotency middleware for Fiber v3: requests
// carrying an Idempotency-Key run once; retries get the stored answer with
// Idempotent-Replayed: true and never reach the handler.
//
// It is a thin adapter over package guard and the engine in package
// idempotency; the behaviour (docs/middleware.md) is the same as the net/http
// middleware's and the Envoy ext_proc server's. Fiber runs on fasthttp,
// which buffers the whole response, so the answer is recorded from the
// response once the handler chain returns.
package fibermw

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v3"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/guard"
)

// ErrorHandler answers a request the engine rejected (bad or missing key,
// retry in flight, key reused, store down, …). err explains p. An error it
// returns goes to the app's ErrorHandler.
type ErrorHandler func(c fiber.Ctx, p *idempotency.Problem, err error) error

// Option configures the middleware.
type Option = guard.Option[fiber.Ctx, ErrorHandler]

// The options are written once, in package guard, where each is
// documented; the types bind them to this framework.
var (
	// WithPolicy applies p to every request (nil: idempotency.DefaultPolicy).
	WithPolicy func(p *idempotency.Policy) Option = guard.WithPolicy
	// WithPolicyFunc chooses the policy per request; nil passes it untouched.
	WithPolicyFunc func(f func(c fiber.Ctx) *idempotency.Policy) Option = guard.WithPolicyFunc
	// WithKeyFunc takes the key from elsewhere than the key header.
	WithKeyFunc func(f func(c fiber.Ctx) (key string, ok bool)) Option = guard.WithKeyFunc
	// WithScopeFunc names the caller; callers never share records.
	WithScopeFunc func(f func(c fiber.Ctx) string) Option = guard.WithScopeFunc
	// WithErrorHandler replaces DefaultErrorHandler.
	WithErrorHandler func(h ErrorHandler) Option = guard.WithErrorHandler
	// WithClock replaces time.Now and the sleeps (tests).
	WithClock func(now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) Option = guard.WithClock
	// WithEngineOptions passes options to the engine (hooks, logger).
	WithEngineOptions func(opts ...idempotency.Option) Option = guard.WithEngineOptions
)

// DefaultErrorHandler writes p as application/problem+json (RFC 9457).
func DefaultErrorHandler(c fiber.Ctx, p *idempotency.Problem, _ error) error {
	resp := c.Response()
	for _, f := range p.Headers() {
		resp.Header.Set(f.Name, f.Value)
	}
	resp.SetStatusCode(p.Status)
	resp.SetBody(p.Body())
	return nil
}

// New returns the middleware over store.
//
// A handler error is rendered in place by the app's ErrorHandler, so the
// answer recorded is the answer sent (a 404 from fiber.NewError replays, a
// 500 is not stored), and is not returned further, as Fiber's own logger
// middleware does: otherwise the app would render it a second time over the
// recorded answer. Middleware that must see handler errors goes after this
// one.
func New(store idempotency.Store, opts ...Option) (fiber.Handler, error) {
	o := guard.Apply(opts...)
	if o.ErrorHandler == nil {
		o.ErrorHandler = DefaultErrorHandler
	}
	g, err := guard.New(store, o.Config)
	if err != nil {
		return nil, fmt.Errorf("fibermw: %w", err)
	}
	return func(c fiber.Ctx) error {
		out := &responder{c: c, errh: o.ErrorHandler}
		g.Serve(c, request(c), out,
			func() { out.err = c.Next() },
			func(rec *guard.Recorder) { run(c, rec) })
		return out.err
	}, nil
}

// request describes the fasthttp request to the guard. The body is already
// in memory; the engine refuses one over the policy's cap.
func request(c fiber.Ctx) guard.Request {
	req := c.Request()
	return guard.Request{Context: c.Context(), Method: c.Method(), Target: c.OriginalURL(),
		Header: header(req.Header.All()), Body: func(int64) ([]byte, error) { return req.Body(), nil }}
}

// run runs the rest of the chain and records the buffered response.
func run(c fiber.Ctx, rec *guard.Recorder) {
	if err := c.Next(); err != nil {
		if herr := c.App().ErrorHandler(c, err); herr != nil {
			_ = c.SendStatus(fiber.StatusInternalServerError) // as Fiber's logger middleware does
		}
	}
	resp := c.Response()
	if resp.IsBodyStream() || c.RequestCtx().Hijacked() {
		// The body is produced after the handler returns (SendStream, a
		// stream writer) or the connection is taken over: what the client
		// gets cannot be recorded, so the outcome stays unknown.
		rec.SetHijacked()
		return
	}
	rec.Head(resp.StatusCode(), header(resp.Header.All()))
	rec.Body(resp.Body())
}

// responder answers through the fasthttp response.
type responder struct {
	c    fiber.Ctx
	errh ErrorHandler
	err  error // returned by the middleware
}

func (r *responder) Header() http.Header { return header(r.c.Response().Header.All()) }

func (r *responder) Replay(rec *idempotency.Record) {
	resp := r.c.Response()
	for _, f := range rec.Headers {
		resp.Header.Del(f.Name)
	}
	for _, f := range rec.Headers {
		resp.Header.Add(f.Name, f.Value)
	}
	resp.Header.Set(idempotency.ReplayedHeader, "true")
	resp.SetStatusCode(rec.Status)
	resp.SetBody(rec.Body)
}

func (r *responder) Reject(p *idempotency.Problem, err error) { r.err = r.errh(r.c, p, err) }

// header copies fasthttp header fields into an http.Header, repeated fields
// apart and in order.
func header(all iter.Seq2[[]byte, []byte]) http.Header {
	h := http.Header{}
	for k, v := range all {
		name := http.CanonicalHeaderKey(string(k))
		h[name] = append(h[name], string(v))
	}
	return h
}

var _ guard.Responder = (*responder)(nil)
