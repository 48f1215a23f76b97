package guard

import (
	"context"
	"errors"
	"net/http"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Config is what a front end's options set. C is the framework's
// per-request value (*http.Request, *gin.Context, echo.Context, fiber.Ctx),
// handed back to the functions below.
type Config[C any] struct {
	// Policy applies to every request; nil means idempotency.DefaultPolicy.
	// New validates and copies it. Ignored when PolicyFunc is set.
	Policy *idempotency.Policy
	// PolicyFunc chooses the policy per request; returning nil lets the
	// request through untouched. Return policies built and validated once.
	PolicyFunc func(C) *idempotency.Policy
	// Key, when set, supplies the key instead of the policy's key header;
	// ok false falls back to the header. The value is parsed like the
	// header.
	Key func(C) (key string, ok bool)
	// Scope, when set, names the caller (Request.Principal), hashed into
	// the storage key together with the policy's scope headers.
	Scope func(C) string
	// Engine options (clock, hooks, logger).
	Engine []idempotency.Option
}

// Request is what a front end tells the guard about one request.
type Request struct {
	// Context is the request's context; nil means context.Background.
	Context context.Context
	Method  string
	// Target is the request target as sent: path plus query.
	Target string
	Header http.Header
	// Body returns at most limit+1 bytes of the request body and leaves
	// the whole body readable for the handler (one byte over the limit
	// tells the engine the body is too large). It is called only when the
	// policy needs the body; nil means there is none. HTTPRequest does this
	// for net/http; a framework that buffers bodies (fasthttp) returns its
	// buffer.
	Body func(limit int64) ([]byte, error)
}

// HTTPRequest describes a net/http request.
func HTTPRequest(r *http.Request) Request {
	return Request{Context: r.Context(), Method: r.Method, Target: target(r), Header: r.Header,
		Body: func(limit int64) ([]byte, error) { return readBody(r, limit) }}
}

// Responder answers a request without running the handler, and reports
// the response fields already set before it runs.
type Responder interface {
	// Header returns the response header fields set so far (by outer
	// middleware: CORS, request ids). They belong to every answer, so they
	// are recorded only if the handler changes them.
	Header() http.Header
	// Replay sends a stored response: status, header fields (repeated ones
	// apart and in order), Idempotent-Replayed: true, and body.
	Replay(rec *idempotency.Record)
	// Reject sends a refusal; err explains p. The default writes p as
	// application/problem+json.
	Reject(p *idempotency.Problem, err error)
}

// Guard runs the engine for one front end. It is safe for concurrent use.
type Guard[C any] struct {
	eng    *idempotency.Engine
	policy func(C) *idempotency.Policy
	cfg    Config[C]
}

// New checks cfg and builds the engine over store.
func New[C any](store idempotency.Store, cfg Config[C]) (*Guard[C], error) {
	g := &Guard[C]{cfg: cfg, policy: cfg.PolicyFunc}
	var errs []error
	if store == nil {
		errs = append(errs, errors.New("store is nil"))
	}
	if g.policy == nil {
		p := idempotency.DefaultPolicy()
		if cfg.Policy != nil {
			p = *cfg.Policy
		}
		if err := p.Validate(); err != nil {
			errs = append(errs, err)
		}
		// The scope function's value only counts under ScopePrincipal.
		p.ScopePrincipal = p.ScopePrincipal || cfg.Scope != nil
		g.policy = func(C) *idempotency.Policy { return &p }
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	g.eng = idempotency.New(store, cfg.Engine...)
	return g, nil
}

// Serve handles one request. out answers replays and refusals. pass runs
// the handler untouched; run runs it with its response recorded into rec,
// and must leave the response head recorded (Writer.Finish, or rec.Head)
// before returning. Serve settles the lease whatever run does: returns,
// panics (the panic goes on) or hijacks the connection.
func (g *Guard[C]) Serve(c C, req Request, out Responder, pass func(), run func(rec *Recorder)) {
	p := g.policy(c)
	if p == nil {
		pass()
		return
	}
	ctx := req.Context
	if ctx == nil {
		ctx = context.Background()
	}
	ireq := &idempotency.Request{Method: req.Method, Path: req.Target, Header: req.Header}
	if g.cfg.Scope != nil {
		if !p.ScopePrincipal {
			cp := *p
			cp.ScopePrincipal = true
			p = &cp
		}
		ireq.Principal = g.cfg.Scope(c)
	}
	if g.cfg.Key != nil {
		if k, ok := g.cfg.Key(c); ok {
			ireq.Header = req.Header.Clone()
			ireq.Header.Set(p.KeyHeader, k)
		}
	}
	d, more := g.eng.Precheck(p, ireq)
	if more {
		if p.NeedsBody(ireq) && req.Body != nil {
			body, err := req.Body(p.MaxRequestBody)
			if err != nil {
				out.Reject(idempotency.ProblemFor(err), err)
				return
			}
			ireq.Body = body
		}
		d = g.eng.Begin(ctx, p, ireq)
	}
	switch d.Kind {
	case idempotency.Proceed:
		proceed(ctx, d.Lease, NewRecorder(p.MaxResponseBody, out.Header()), run)
	case idempotency.Replay:
		out.Replay(d.Record)
	case idempotency.Reject:
		out.Reject(d.Problem, d.Err)
	default:
		pass()
	}
}

// proceed runs the handler under the lease and settles it.
func proceed(ctx context.Context, l *idempotency.Lease, rec *Recorder, run func(*Recorder)) {
	l.KeepAlive(ctx)
	returned := false
	defer func() {
		if returned {
			return
		}
		v := recover()
		sctx := context.WithoutCancel(ctx)
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
			resp.Mark = idempotency.MarkIncomplete
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

	// Waits for the record even if the client is gone, so a graceful
	// shutdown waits for it too (the engine bounds it by the lease).
	sctx := context.WithoutCancel(ctx)
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

// target is the request target as sent: path plus query.
func target(r *http.Request) string {
	if r.RequestURI != "" {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}
