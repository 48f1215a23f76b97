package idempotency

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Kind is what a transport must do with a request.
type Kind int

const (
	// Pass: let the request through untouched; nothing is recorded.
	Pass Kind = iota + 1
	// Proceed: let the request through and settle Decision.Lease with the
	// response (Complete) or without one (Abandon).
	Proceed
	// Replay: answer with Decision.Record plus Idempotent-Replayed: true;
	// the upstream is not called.
	Replay
	// Reject: answer with Decision.Problem; the upstream is not called.
	Reject
)

func (k Kind) String() string {
	if k < Pass || k > Reject {
		return "invalid"
	}
	return [...]string{"", "pass", "proceed", "replay", "reject"}[k]
}

// Decision is the engine's answer to Begin.
type Decision struct {
	Kind    Kind
	Lease   *Lease
	Record  *Record
	Problem *Problem
	// Err explains a Reject, or a Pass caused by fail-open.
	Err error
	// KeyID is a short, non-reversible id of the storage key for logs.
	KeyID string
}

// Hooks observe the engine, for metrics. Nil fields are skipped. They run
// on the request path, so they must be fast and must not block.
type Hooks struct {
	// Decided is called once per Begin with its outcome label: pass,
	// proceed, replay, or the problem slug of a reject.
	Decided func(outcome string)
	// StoreCall is called after every store operation.
	StoreCall func(op string, took time.Duration, err error)
	// LeaseRenewed is called after each renewal attempt.
	LeaseRenewed func(err error)
	// Settled is called once when a lease ends, with how it ended:
	//   - recorded: a whole response was stored;
	//   - too_large: a tombstone was stored (the body exceeded the cap);
	//   - incomplete: the status and headers of a cut-off response were;
	//   - unknown: the request was forwarded and never answered;
	//   - released: the key was freed (status not stored, or the request
	//     provably never left);
	//   - expiring: left to its lease (Policy.UnknownOutcome
	//     retry_after_lease);
	//   - lost: another request holds the key now;
	//   - failed: the store could not be told (logged with the key's id).
	Settled func(how string, bodyBytes int)
}

// Engine runs the idempotency state machine over a Store. It is safe for
// concurrent use; per-request state lives in Decision and Lease.
type Engine struct {
	store        Store
	now          func() time.Time
	sleep        func(ctx context.Context, d time.Duration) error
	hooks        Hooks
	logger       *slog.Logger
	storeTimeout time.Duration
	// saving counts the settles still saving in the background (Wait).
	saving sync.WaitGroup
	// fakeClock: WithClock replaced the sleeps, so renewals go through
	// e.sleep instead of runtime timers.
	fakeClock bool
}

// Option configures an Engine.
type Option func(*Engine)

// WithClock replaces time.Now and the sleeps used when waiting and renewing
// (tests use a fake clock).
func WithClock(now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) Option {
	return func(e *Engine) { e.now, e.sleep, e.fakeClock = now, sleep, true }
}

// WithHooks installs observers.
func WithHooks(h Hooks) Option { return func(e *Engine) { e.hooks = h } }

// WithStoreTimeout bounds every store call. A transport with its own
// deadline (Envoy's message_timeout) sets it below that deadline, so a
// slow or unreachable store becomes the engine's 503 problem (or a pass
// under fail-open) instead of the transport's timeout. Zero: no bound
// beyond the caller's context.
func WithStoreTimeout(d time.Duration) Option { return func(e *Engine) { e.storeTimeout = d } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.logger = l } }

// New returns an engine over store.
func New(store Store, opts ...Option) *Engine {
	e := &Engine{store: store, now: time.Now, sleep: sleepCtx, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Wait returns once every settle still saving in the background has
// ended (each is bounded: at most 5s, and two thirds of its lease). Call
// it after the transports stopped and before the store is closed.
func (e *Engine) Wait() { e.saving.Wait() }

// Begin decides what to do with r under p. It never returns an error:
// every failure becomes a Reject (or a Pass under fail-open) carrying the
// problem to send, so no transport can forget to fail closed.
func (e *Engine) Begin(ctx context.Context, p *Policy, r *Request, opts ...BeginOption) Decision {
	var o beginOptions
	for _, f := range opts {
		f(&o)
	}
	return e.decided(e.begin(ctx, p, r, o.beforeWait))
}

// BeginOption is a per-call hook of the transport that calls Begin.
type BeginOption func(*beginOptions)

type beginOptions struct{ beforeWait func(time.Duration) }

// BeforeWait has f called once before Begin waits (up to the given
// Policy.WaitInFlight) for an in-flight duplicate to finish; the ext_proc
// server uses it to extend Envoy's message timeout only for requests that
// really wait. It is a transport's concern, so it is passed where the
// transport calls, not kept in the Request.
func BeforeWait(f func(wait time.Duration)) BeginOption {
	return func(o *beginOptions) { o.beforeWait = f }
}

// decided reports d to the Decided hook and returns it.
func (e *Engine) decided(d Decision) Decision {
	if e.hooks.Decided != nil {
		label := d.Kind.String()
		if d.Kind == Reject {
			label = d.Problem.Slug()
		}
		e.hooks.Decided(label)
	}
	return d
}

func (e *Engine) begin(ctx context.Context, p *Policy, r *Request, beforeWait func(time.Duration)) Decision {
	if !p.Applies(r.Method) {
		return Decision{Kind: Pass}
	}
	key, hasKey, err := requestKey(p, r)
	if err != nil {
		return reject(err, "")
	}
	if key == "" {
		return Decision{Kind: Pass}
	}
	if p.NeedsBody(r) && int64(len(r.Body)) > p.MaxRequestBody {
		return reject(fmt.Errorf("%w: more than %d bytes", ErrRequestTooLarge, p.MaxRequestBody), "")
	}
	scope := callerScope(p, r)
	if !hasKey {
		// A derived key names content, not an operation: without a caller
		// identity two anonymous callers sending the same content would
		// get each other's responses, so such requests are not
		// deduplicated at all.
		scope = derivedScope(p, r, scope)
		if scope == "" {
			return Decision{Kind: Pass}
		}
	}
	return e.decide(ctx, p, StorageKey(scope, key), fingerprint(p, r), beforeWait)
}

// decide claims skey for fp and turns the store's answer into a Decision;
// every front end (HTTP requests, direct operations) shares it.
func (e *Engine) decide(ctx context.Context, p *Policy, skey, fp string, beforeWait func(time.Duration)) Decision {
	c := Claim{Key: skey, Token: NewToken(), Fingerprint: fp, Lease: p.Lease, Retention: p.Retention}
	keyID := KeyID(c.Key)
	opts := AcquireOptions{TakeOverExpired: p.UnknownOutcome == UnknownRetryAfterLease}
	res, err := e.acquire(ctx, c, opts)
	if err == nil && res.State == InFlight && p.WaitInFlight > 0 {
		if beforeWait != nil {
			beforeWait(p.WaitInFlight)
		}
		res, err = e.wait(ctx, p, c, opts, res)
	}
	if err != nil {
		// The claim may have been made even though the call failed (the
		// reply was lost, or ctx ended mid-call): the token is ours, so
		// take it back; nothing was forwarded.
		if !errors.Is(err, ErrCorruptRecord) {
			go e.releaseOrphan(c)
		}
		if p.FailOpen && ctx.Err() == nil && storeDown(err) {
			e.logger.WarnContext(ctx, "idempotency store failed; passing request through (fail-open)", "key_id", keyID, "error", err)
			return Decision{Kind: Pass, Err: err, KeyID: keyID}
		}
		e.logger.ErrorContext(ctx, "idempotency store failed; rejecting request (fail-closed)", "key_id", keyID, "error", err)
		return reject(err, keyID)
	}
	switch res.State {
	case Acquired:
		return Decision{Kind: Proceed, KeyID: keyID, Lease: &Lease{e: e, p: p, c: c}}
	case Completed:
		return completed(res.Record, keyID)
	case InFlight:
		d := reject(ErrInFlight, keyID)
		d.Problem.RetryAfter = p.RetryAfter
		return d
	case LeaseExpired:
		return reject(fmt.Errorf("%w: the lease of the request holding it ran out", ErrOutcomeUnknown), keyID)
	case Mismatch:
		return reject(ErrMismatch, keyID)
	}
	return reject(fmt.Errorf("store returned unknown outcome %d", res.State), keyID)
}

// releaseOrphan releases c after a failed Acquire, bounded in time; it is
// a no-op when the claim was never made.
func (e *Engine) releaseOrphan(c Claim) {
	if c.Validate() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(e.storeTimeout, time.Second))
	defer cancel()
	if err := e.store.Release(ctx, c); err != nil && !errors.Is(err, ErrLeaseLost) {
		e.logger.Debug("could not release a claim whose Acquire failed", "key_id", KeyID(c.Key), "error", err)
	}
}

// completed turns a stored record into a replay, or into the problem its
// mark stands for.
func completed(rec *Record, keyID string) Decision {
	switch rec.Mark {
	case MarkNone:
		return Decision{Kind: Replay, Record: rec, KeyID: keyID}
	case MarkTooLarge:
		return reject(ErrRecordTooLarge, keyID)
	case MarkIncomplete:
		return reject(&statusError{Err: errResponseIncomplete, Status: rec.Status}, keyID)
	case MarkEvicted:
		return reject(&statusError{Err: errRecordEvicted, Status: rec.Status}, keyID)
	case MarkUnknown:
		return reject(ErrOutcomeUnknown, keyID)
	}
	return reject(fmt.Errorf("%w: record mark %v", ErrCorruptRecord, rec.Mark), keyID)
}

func reject(err error, keyID string) Decision {
	return Decision{Kind: Reject, Problem: ProblemFor(err), Err: err, KeyID: keyID}
}

// derivedScope is the scope of an automatic key: the caller scope plus,
// when the policy asks, the client address (without its port, which
// changes with every connection). "" means anonymous.
func derivedScope(p *Policy, r *Request, scope string) string {
	if p.AutoKey == nil || !p.AutoKey.SourceAddress || r.SourceAddress == "" {
		return scope
	}
	host := r.SourceAddress
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	f := newFieldHash("gopotency/scope/address/v1")
	f.add(scope)
	f.add(host)
	return hex.EncodeToString(f.sum())
}

// requestKey returns the client's key, a derived key, or "" when the
// request carries none and the route does not require one.
func requestKey(p *Policy, r *Request) (key string, fromHeader bool, err error) {
	vals := r.Header.Values(p.KeyHeader)
	switch {
	case len(vals) > 1:
		return "", false, fmt.Errorf("%w: %d %s fields sent, exactly one allowed", ErrKeyMalformed, len(vals), p.KeyHeader)
	case len(vals) == 1:
		if r.checkedKey != "" && r.checkedHeader == vals[0] {
			return r.checkedKey, true, nil
		}
		k, err := parseKey(vals[0])
		return k, true, err
	case p.AutoKey != nil:
		return deriveKey(p.AutoKey, r), false, nil
	case p.KeyRequired:
		return "", false, ErrKeyMissing
	}
	return "", false, nil
}

// Precheck validates what can be validated from the headers alone, so a
// transport can reject a bad or missing key before reading the body. It
// returns a Reject decision or a Decision with Kind Pass meaning "go on".
func (e *Engine) Precheck(p *Policy, r *Request) (Decision, bool) {
	if !p.Applies(r.Method) {
		return Decision{Kind: Pass}, false
	}
	vals := r.Header.Values(p.KeyHeader)
	if len(vals) == 0 && p.AutoKey != nil {
		// Derived later from the body; nothing to check at the headers.
		return Decision{Kind: Pass}, true
	}
	key, _, err := requestKey(p, r)
	if len(vals) > 0 {
		// Begin reuses the parsed key instead of parsing it again.
		r.checkedKey, r.checkedHeader = key, vals[0]
	}
	if err != nil {
		d := reject(err, "")
		if e.hooks.Decided != nil {
			e.hooks.Decided(d.Problem.Slug())
		}
		return d, false
	}
	if key == "" {
		if e.hooks.Decided != nil {
			e.hooks.Decided(Pass.String())
		}
		return Decision{Kind: Pass}, false
	}
	return Decision{Kind: Pass}, true
}

func (e *Engine) acquire(ctx context.Context, c Claim, o AcquireOptions) (AcquireResult, error) {
	start := time.Now()
	ctx, cancel := e.storeCtx(ctx)
	defer cancel()
	res, err := e.store.Acquire(ctx, c, o)
	e.observe("acquire", start, err)
	if err != nil {
		return res, fmt.Errorf("acquire: %w", err)
	}
	return res, nil
}

// wait polls until the in-flight request settles or p.WaitInFlight passes.
// Polling keeps the Store contract to one atomic call; the interval grows
// from 25ms to 500ms so a long wait costs few round trips.
func (e *Engine) wait(ctx context.Context, p *Policy, c Claim, o AcquireOptions, res AcquireResult) (AcquireResult, error) {
	deadline := e.now().Add(p.WaitInFlight)
	step := 25 * time.Millisecond
	for res.State == InFlight {
		left := deadline.Sub(e.now())
		if left <= 0 {
			return res, nil
		}
		if err := e.sleep(ctx, min(step, left, res.RetryAfter+time.Millisecond)); err != nil {
			return res, fmt.Errorf("wait for in-flight request: %w", err)
		}
		step = min(step*2, 500*time.Millisecond)
		var err error
		if res, err = e.acquire(ctx, c, o); err != nil {
			return res, err
		}
	}
	return res, nil
}

// storeCtx applies the store timeout to one store call.
func (e *Engine) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if e.storeTimeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, e.storeTimeout)
}

func (e *Engine) observe(op string, start time.Time, err error) {
	if e.hooks.StoreCall != nil {
		e.hooks.StoreCall(op, time.Since(start), err)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
