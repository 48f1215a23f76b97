// Package guard is the request flow shared by the net/http, Gin and Echo
// middleware: it runs the engine for one request and settles the lease. C
// is the framework's per-request value (*http.Request, *gin.Context,
// echo.Context), handed back to the user's extractors.
package guard

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/internal/capture"
)

// settleTimeout bounds the store call that settles a lease once the handler
// has returned. It runs detached from the request, whose client may be gone.
const settleTimeout = 10 * time.Second

// Config is what the options of a front end set.
type Config[C any] struct {
	// Policy chooses the policy of a request; nil means no idempotency.
	Policy func(C) *idempotency.Policy
	// Key, when set, supplies the key instead of the policy's key header;
	// ok false falls back to the header.
	Key func(C) (key string, ok bool)
	// Scope, when set, supplies the caller identity (Request.Principal).
	Scope func(C) string
	// Error answers a rejected request; the default writes the problem.
	Error func(c C, w http.ResponseWriter, p *idempotency.Problem, err error)
	// Engine options (clock, hooks, logger).
	Engine []idempotency.Option

	static *idempotency.Policy
	errs   []error
}

// SetPolicy makes p the policy of every request, after validating it.
func (c *Config[C]) SetPolicy(p idempotency.Policy) {
	if err := p.Validate(); err != nil {
		c.errs = append(c.errs, err)
		return
	}
	sp := &p
	c.static = sp
	c.Policy = func(C) *idempotency.Policy { return sp }
}

// SetPolicyFunc chooses the policy per request.
func (c *Config[C]) SetPolicyFunc(f func(C) *idempotency.Policy) { c.static, c.Policy = nil, f }

// Guard runs the engine for one front end. It is safe for concurrent use.
type Guard[C any] struct {
	eng *idempotency.Engine
	cfg Config[C]
}

// New checks cfg and builds the engine over store.
func New[C any](store idempotency.Store, cfg Config[C]) (*Guard[C], error) {
	if store == nil {
		cfg.errs = append(cfg.errs, errors.New("store is nil"))
	}
	if err := errors.Join(cfg.errs...); err != nil {
		return nil, err
	}
	if cfg.Policy == nil {
		cfg.SetPolicy(idempotency.DefaultPolicy())
	}
	if cfg.Scope != nil && cfg.static != nil {
		// The scope function's value only counts under ScopePrincipal.
		cfg.static.ScopePrincipal = true
	}
	if cfg.Error == nil {
		cfg.Error = func(_ C, w http.ResponseWriter, p *idempotency.Problem, _ error) { capture.WriteProblem(w, p) }
	}
	return &Guard[C]{eng: idempotency.New(store, cfg.Engine...), cfg: cfg}, nil
}

// Serve handles one request. w is where replays and problems go. pass runs
// the handler untouched; run runs it with its response recorded into rec,
// and must leave the head sent (Writer.Finish or the framework's
// equivalent) before returning.
func (g *Guard[C]) Serve(c C, w http.ResponseWriter, r *http.Request, pass func(), run func(rec *capture.Recorder)) {
	p := g.cfg.Policy(c)
	if p == nil {
		pass()
		return
	}
	req := &idempotency.Request{Method: r.Method, Path: target(r), Header: r.Header}
	if g.cfg.Scope != nil {
		if !p.ScopePrincipal {
			cp := *p
			cp.ScopePrincipal = true
			p = &cp
		}
		req.Principal = g.cfg.Scope(c)
	}
	if g.cfg.Key != nil {
		if k, ok := g.cfg.Key(c); ok {
			req.Header = r.Header.Clone()
			req.Header.Set(p.KeyHeader, k)
		}
	}
	d, more := g.eng.Precheck(p, req)
	if more {
		if p.NeedsBody(idempotency.HasKey(p, req)) {
			body, err := readBody(r, p.MaxRequestBody)
			if err != nil {
				g.cfg.Error(c, w, idempotency.ProblemFor(err), err)
				return
			}
			req.Body = body
		}
		d = g.eng.Begin(r.Context(), p, req)
	}
	switch d.Kind {
	case idempotency.Proceed:
		g.proceed(r.Context(), w, d.Lease, p, run)
	case idempotency.Replay:
		capture.WriteRecord(w, d.Record)
	case idempotency.Reject:
		g.cfg.Error(c, w, d.Problem, d.Err)
	default:
		pass()
	}
}

// proceed runs the handler under the lease and settles it.
func (g *Guard[C]) proceed(ctx context.Context, w http.ResponseWriter, l *idempotency.Lease, p *idempotency.Policy, run func(*capture.Recorder)) {
	rec := capture.NewRecorder(p.MaxResponseBody, w.Header())
	l.KeepAlive(ctx)
	returned := false
	defer func() {
		if returned {
			return
		}
		v := recover()
		sctx, cancel := settleContext(ctx)
		defer cancel()
		// A handler that panics (or calls runtime.Goexit) before answering
		// failed like one answering 500: the key is released so a retry
		// may run. Once the head is out the handler did run: its status
		// and headers are recorded as response-incomplete, never run
		// again. A hijacked connection, or http.ErrAbortHandler (a response
		// under way: httputil.ReverseProxy panics with it when the upstream
		// fails mid-body), leave the outcome unknown.
		switch {
		case rec.Sent():
			resp := rec.Response()
			resp.Incomplete = true
			_ = l.Complete(sctx, resp)
		default:
			_ = l.Abandon(sctx, rec.Hijacked() || v == http.ErrAbortHandler)
		}
		if v != nil {
			panic(v)
		}
	}()
	run(rec)
	returned = true

	sctx, cancel := settleContext(ctx)
	defer cancel()
	switch {
	case rec.Hijacked():
		_ = l.Abandon(sctx, true)
	case rec.Implicit() && ctx.Err() != nil:
		// The client left and the handler gave up without answering: the
		// outcome is unknown, and recorded as such.
		_ = l.Abandon(sctx, true)
	default:
		// Errors are logged and counted by the engine; the client already
		// has its response.
		_ = l.Complete(sctx, rec.Response())
	}
}

func settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}

// target is the request target as sent: path plus query.
func target(r *http.Request) string {
	if r.RequestURI != "" {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}
