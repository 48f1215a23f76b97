// Package idempotent makes a plain Go function run at most once per key,
// with the store, lease renewal, in-flight and mismatch rules of the HTTP
// middleware and the Envoy ext_proc server: AWS Lambda Powertools'
// idempotent_function, for any code and on every GoPotency store.
//
//	charge := idempotent.New(runner, chargeCard) // func(ctx, ChargeRequest) (Receipt, error)
//	receipt, err := charge.Do(ctx, req.OrderID, req)
//
// The first call with a key runs the function; its result is encoded with
// the runner's Codec (JSON by default) and stored for the policy's
// retention. Later calls with the key get the stored result decoded,
// without running the function. The input is encoded too and bound to the
// key: the same key with another input is refused (ErrMismatch).
//
// # Errors of the function
//
// A returned error is not stored (as Powertools does not store exceptions,
// and the HTTP front ends do not store 5xx answers): the key is released
// and a retry runs the function again. That is right for a failure that
// left nothing behind, and it is the function's job to say otherwise:
//
//   - An error that is a final outcome (card declined, order not found)
//     should replay: return it as part of the result value instead.
//   - An error after which the side effect may have happened (a timeout
//     talking to the payment provider, a cancelled context mid-call) must
//     not be retried blindly: wrap it with Uncertain. The outcome is then
//     recorded as unknown (retries get idempotency.ErrOutcomeUnknown), so
//     no retry runs it twice. Errors
//     wrapping context.Canceled or context.DeadlineExceeded, and errors
//     reporting Timeout() true (net.Error, os.ErrDeadlineExceeded), are
//     treated as uncertain without wrapping.
//   - A panic releases the key and goes on, as in the HTTP front ends
//     (nothing was answered).
//
// Refusals (a call with the key still running, a reused key, the store
// down) are returned as an *Error wrapping the idempotency.Err… cause, so
// errors.Is(err, idempotency.ErrInFlight) works; they never ran the
// function.
package idempotent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Codec encodes function results (stored and replayed) and inputs (bound to
// the key). It must be deterministic for inputs: the same value must encode
// to the same bytes, or a retry is refused as a mismatch.
type Codec interface {
	// Name is stored with each result, so a result written by another
	// codec is refused rather than misread.
	Name() string
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default Codec: encoding/json (map keys sorted, so inputs
// encode deterministically).
var JSON Codec = jsonCodec{}

type jsonCodec struct{}

func (jsonCodec) Name() string                       { return "application/json" }
func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// codecHeader names the stored record field carrying Codec.Name.
const codecHeader = "Content-Type"

// Option configures a Runner.
type Option func(*Runner)

// WithPolicy sets the policy (nil: idempotency.DefaultPolicy). Of its
// fields a function uses Retention, Lease, Fingerprint (FingerprintNone:
// the input is not bound to the key), MaxResponseBody (a larger encoded
// result stores a tombstone: retries get ErrRecordTooLarge), WaitInFlight,
// UnknownOutcome and FailOpen. NewRunner copies and validates it.
//
// KeyRequired is not read: a call with an empty key is always refused with
// idempotency.ErrKeyMissing, never run unguarded, whatever the policy says
// (so a policy starting from DefaultPolicy, whose KeyRequired is false,
// cannot turn the guard off by accident). WithOptionalKey turns it off on
// purpose.
func WithPolicy(p *idempotency.Policy) Option { return func(r *Runner) { r.policy = p } }

// WithOptionalKey lets a call with an empty key run the function unguarded
// (every time, nothing stored), as a front end's optional-key route does;
// without it an empty key is idempotency.ErrKeyMissing.
func WithOptionalKey() Option { return func(r *Runner) { r.optionalKey = true } }

// WithCodec replaces JSON.
func WithCodec(c Codec) Option { return func(r *Runner) { r.codec = c } }

// WithScopeFunc names the caller from the context (a tenant or user id put
// there by your authentication), so callers never share results.
func WithScopeFunc(f func(ctx context.Context) string) Option {
	return func(r *Runner) { r.scope = f }
}

// WithReplayHook calls f when a call is answered from the store instead of
// running the function (Powertools' response hook), for logs or metrics.
func WithReplayHook(f func(ctx context.Context, key string)) Option {
	return func(r *Runner) { r.onReplay = f }
}

// WithEngineOptions passes options to the engine (hooks for metrics,
// logger, clock, store timeout).
func WithEngineOptions(opts ...idempotency.Option) Option {
	return func(r *Runner) { r.engOpts = append(r.engOpts, opts...) }
}

// Runner holds what the calls of one operation share: its name, store,
// policy and codec. It is safe for concurrent use.
type Runner struct {
	name     string
	eng      *idempotency.Engine
	policy   *idempotency.Policy // a copy, owned by the runner
	codec    Codec
	scope    func(context.Context) string
	onReplay func(context.Context, string)
	engOpts  []idempotency.Option
	// optionalKey: WithOptionalKey; the policy's KeyRequired is its negation.
	optionalKey bool
}

// NewRunner returns a runner for the operation called name. The name
// separates key spaces: the same key under two names runs each operation
// once (an order id can key both "charge" and "send-receipt"). Keep names
// stable across releases: a renamed operation starts with no records.
func NewRunner(store idempotency.Store, name string, opts ...Option) (*Runner, error) {
	r := &Runner{name: name, codec: JSON}
	for _, o := range opts {
		o(r)
	}
	p := idempotency.DefaultPolicy()
	if r.policy != nil {
		p = *r.policy
	}
	p.KeyRequired = !r.optionalKey
	r.policy = &p
	var errs []error
	if store == nil {
		errs = append(errs, errors.New("store is nil"))
	}
	if name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if r.codec == nil {
		errs = append(errs, errors.New("codec is nil"))
	}
	if err := r.policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("idempotent: %w", err)
	}
	r.eng = idempotency.New(store, r.engOpts...)
	return r, nil
}

// Name returns the operation's name.
func (r *Runner) Name() string { return r.name }

// StorageKey returns the key the store holds for calls with key under the
// context's scope, to purge it with Store.Delete.
func (r *Runner) StorageKey(ctx context.Context, key string) string {
	op := r.operation(ctx, key, nil)
	return op.StorageKey()
}

func (r *Runner) operation(ctx context.Context, key string, payload []byte) idempotency.Operation {
	op := idempotency.Operation{Namespace: "func/" + r.name, Key: key, Payload: payload}
	if r.scope != nil {
		op.Scope = []string{r.scope(ctx)}
	}
	return op
}

// Error is a refusal: fn did not run. It wraps the cause
// (idempotency.ErrInFlight, ErrMismatch, ErrKeyMissing, ErrKeyMalformed,
// ErrRecordTooLarge, ErrStoreUnavailable, …), so errors.Is works.
type Error struct {
	// Problem is the refusal as the HTTP front ends would answer it (its
	// Type URI is stable, its RetryAfter set for retryable ones).
	Problem *idempotency.Problem
	Err     error
}

func (e *Error) Error() string { return "idempotent: " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// RetryAfter is how long to wait before retrying, or 0 when a retry with
// the same key cannot succeed.
func (e *Error) RetryAfter() time.Duration { return e.Problem.RetryAfter }

// Run calls fn at most once per key under r: the first call runs it and
// stores its result; later calls with the key return the stored result.
// input is what fn works on; it is encoded and bound to the key, so the
// same key with another input is refused. See the package documentation
// for what happens to fn's errors.
func Run[T any](ctx context.Context, r *Runner, key string, input any, fn func(context.Context) (T, error)) (T, error) {
	var zero T
	var payload []byte
	if r.policy.Fingerprint != idempotency.FingerprintNone {
		b, err := r.codec.Marshal(input)
		if err != nil {
			return zero, fmt.Errorf("idempotent: encode input of %s: %w", r.name, err)
		}
		payload = b
	}
	d := r.eng.BeginOperation(ctx, r.policy, r.operation(ctx, key, payload))
	switch d.Kind {
	case idempotency.Pass:
		return fn(ctx)
	case idempotency.Replay:
		if r.onReplay != nil {
			r.onReplay(ctx, key)
		}
		return decode[T](r, d.Record)
	case idempotency.Reject:
		return zero, &Error{Problem: d.Problem, Err: d.Err}
	}
	return runLeased(ctx, r, d.Lease, fn)
}

func decode[T any](r *Runner, rec *idempotency.Record) (T, error) {
	var v T
	name := ""
	for _, h := range rec.Headers {
		if h.Name == codecHeader {
			name = h.Value
		}
	}
	if name != r.codec.Name() {
		return v, fmt.Errorf("idempotent: stored result of %s was written by codec %q, not %q: %w", r.name, name, r.codec.Name(), idempotency.ErrCorruptRecord)
	}
	if err := r.codec.Unmarshal(rec.Body, &v); err != nil {
		return v, fmt.Errorf("idempotent: decode stored result of %s: %w (%w)", r.name, idempotency.ErrCorruptRecord, err)
	}
	return v, nil
}

func runLeased[T any](ctx context.Context, r *Runner, l *idempotency.Lease, fn func(context.Context) (T, error)) (v T, err error) {
	l.KeepAlive(ctx)
	settle := func(f func(context.Context) error) {
		// Waits for the record even if ctx has ended (the engine bounds it
		// by the lease).
		_ = f(context.WithoutCancel(ctx)) // failures are logged and counted by the engine
	}
	returned := false
	defer func() {
		if !returned {
			// A panic (or runtime.Goexit): nothing was answered, so the key
			// is released, as the HTTP front ends do; the panic goes on.
			settle(func(c context.Context) error { return l.Abandon(c, false) })
		}
	}()
	v, err = fn(ctx)
	returned = true
	if err != nil {
		settle(func(c context.Context) error { return l.Abandon(c, IsUncertain(err)) })
		return v, err
	}
	body, merr := r.codec.Marshal(v)
	if merr != nil {
		// fn ran: record the outcome as unknown rather than let a retry run
		// it again.
		settle(func(c context.Context) error { return l.Abandon(c, true) })
		return v, fmt.Errorf("idempotent: %s ran but its result cannot be encoded, so it was not recorded: %w", r.name, merr)
	}
	resp := &idempotency.Record{Status: 200, Headers: []idempotency.Header{{Name: codecHeader, Value: r.codec.Name()}}, Body: body}
	settle(func(c context.Context) error { return l.Complete(c, resp) })
	return v, nil
}

// Func is fn made idempotent under a Runner: Powertools' makeIdempotent.
type Func[In, Out any] struct {
	r  *Runner
	fn func(context.Context, In) (Out, error)
}

// New wraps fn so that Do runs it at most once per key.
func New[In, Out any](r *Runner, fn func(ctx context.Context, in In) (Out, error)) *Func[In, Out] {
	return &Func[In, Out]{r: r, fn: fn}
}

// Do runs the function with in at most once per key, as Run does; in is
// bound to the key.
func (f *Func[In, Out]) Do(ctx context.Context, key string, in In) (Out, error) {
	return Run(ctx, f.r, key, in, func(ctx context.Context) (Out, error) { return f.fn(ctx, in) })
}

// uncertain marks an error whose operation may have had its effect.
type uncertain struct{ err error }

func (u uncertain) Error() string { return u.err.Error() }
func (u uncertain) Unwrap() error { return u.err }

// Uncertain marks err as a failure after which the side effect may have
// happened (a timeout, a lost connection after the request was sent). The
// outcome is recorded as unknown, so no retry runs the function twice
// (unless the policy's UnknownOutcome allows one after the lease). Uncertain(nil)
// is nil.
func Uncertain(err error) error {
	if err == nil {
		return nil
	}
	return uncertain{err}
}

// IsUncertain reports whether err leaves the outcome unknown: marked with
// Uncertain, a cancelled or expired context, or a timeout (an error in the
// chain with a Timeout method reporting true).
func IsUncertain(err error) bool {
	var u uncertain
	var to interface{ Timeout() bool }
	return errors.As(err, &u) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &to) && to.Timeout())
}
