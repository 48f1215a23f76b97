package idempotency

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Lease is the right, won by Begin, to execute a request and record its
// outcome. Exactly one of Complete or Abandon settles it; later calls are
// no-ops, so a transport can defer Abandon unconditionally.
type Lease struct {
	e *Engine
	p *Policy
	c Claim

	// mu serialises renewals with settling: once settled, no renewal can
	// reach the store (a late Extend would re-create a released claim).
	mu       sync.Mutex
	settled  bool
	stopKeep func()
	saved    chan struct{} // closed when a save in the background ends
}

// closed is the Saved of a lease not saving in the background.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// A settle's bound (settleTimeout, or two thirds of a shorter lease) and
// the backoff of its retries after a transient store failure.
const (
	settleTimeout    = 5 * time.Second
	settleRetryFirst = 50 * time.Millisecond
	settleRetryMax   = time.Second
)

// Complete records resp, what the transport captured: a whole response
// (MarkNone), MarkTooLarge when the transport stopped accumulating a body
// over Policy.MaxResponseBody, or MarkIncomplete when the body was cut off
// after the head (client gone or upstream reset: the upstream ran, so
// retries get response-incomplete and the key is never released). A
// status the policy does not store (5xx, 408, 429 by default) releases the
// key instead, so a retry may run; a body over the cap stores a tombstone:
// retries get 413, never a re-run. Only the status, the replayable headers
// and the body are kept; CreatedAt is set here.
//
// The saving is the lease's, not ctx's (see settle): Complete returns once
// the outcome is saved or cannot be, or, when the store failed and ctx
// ends while the retries go on, before that (Saved tells when).
func (l *Lease) Complete(ctx context.Context, resp *Record) error {
	start := time.Now() // the settle's bound counts from here, not from the lock
	if m := resp.Mark; m != MarkNone && m != MarkTooLarge && m != MarkIncomplete {
		// Nothing is settled: the transport's deferred Abandon still is.
		return fmt.Errorf("%w: Complete takes a whole, too-large or incomplete response, not mark %v (Abandon settles an unknown outcome)", ErrMisconfigured, m)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.settleLocked() {
		return nil
	}
	if !l.p.Stores(resp.Status) {
		return l.releaseLocked(ctx, start)
	}
	rec := &Record{Status: resp.Status, CreatedAt: l.e.now().Truncate(time.Millisecond)}
	how := "recorded"
	switch {
	case resp.Mark == MarkIncomplete:
		rec.Mark, rec.Headers, how = MarkIncomplete, replayableHeaders(l.p, resp.Headers), "incomplete"
	case resp.Mark == MarkTooLarge || int64(len(resp.Body)) > l.p.MaxResponseBody:
		rec.Mark, how = MarkTooLarge, "too_large"
	default:
		rec.Headers = replayableHeaders(l.p, resp.Headers)
		rec.Body = resp.Body
	}
	return l.recordLocked(ctx, start, rec, how)
}

// Abandon settles a lease that will never see a complete response. When
// upstreamSawRequest is false (the request provably never left), the key
// is released so a retry may run. Otherwise the outcome is unknown: it is
// recorded as such (MarkUnknown), so no retry runs the request again; under
// Policy.UnknownOutcome retry_after_lease the claim is left to its lease
// instead, after which a retry may run. It is saved as Complete saves.
func (l *Lease) Abandon(ctx context.Context, upstreamSawRequest bool) error {
	start := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.settleLocked() {
		return nil
	}
	if !upstreamSawRequest {
		return l.releaseLocked(ctx, start)
	}
	if l.p.UnknownOutcome == UnknownRetryAfterLease {
		l.report("expiring", 0)
		l.e.logger.WarnContext(ctx, "request ended without a response; its key runs again once the lease expires (unknown_outcome: retry_after_lease)", "key_id", KeyID(l.c.Key), "lease", l.p.Lease.String())
		return nil
	}
	l.e.logger.WarnContext(ctx, "request ended without a response; its key is recorded as outcome-unknown", "key_id", KeyID(l.c.Key))
	return l.recordLocked(ctx, start, &Record{Mark: MarkUnknown, CreatedAt: l.e.now().Truncate(time.Millisecond)}, "unknown")
}

func (l *Lease) renew(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.settled {
		return nil
	}
	start := time.Now()
	sctx, cancel := l.e.storeCtx(ctx)
	err := l.e.store.Extend(sctx, l.c)
	cancel()
	l.e.observe("extend", start, err)
	if l.e.hooks.LeaseRenewed != nil {
		l.e.hooks.LeaseRenewed(err)
	}
	if err != nil {
		return fmt.Errorf("extend: %w", err)
	}
	return nil
}

// KeepAlive renews the lease every third of its length until the lease is
// settled or lost, so a slow upstream never lets a duplicate through. It
// keeps ctx's values but not its cancellation (a client hanging up does
// not stop a running handler), so the transport must always settle the
// lease. Calling it again is a no-op.
//
// A renewal is a runtime timer, not a goroutine per request: most requests
// settle before the first renewal is due, and then cost one timer.
func (l *Lease) KeepAlive(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.settled || l.stopKeep != nil {
		return
	}
	every := l.p.Lease / 3
	if l.e.fakeClock {
		l.keepAliveSleeping(ctx, every)
		return
	}
	var t *time.Timer
	t = time.AfterFunc(every, func() {
		if l.renewed(ctx) {
			l.mu.Lock()
			if !l.settled {
				t.Reset(every)
			}
			l.mu.Unlock()
		}
	})
	l.stopKeep = func() { t.Stop() }
}

// keepAliveSleeping renews through the engine's injected sleep (WithClock);
// the caller holds l.mu.
func (l *Lease) keepAliveSleeping(ctx context.Context, every time.Duration) {
	ctx, cancel := context.WithCancel(ctx)
	l.stopKeep = cancel
	go func() {
		for l.e.sleep(ctx, every) == nil && l.renewed(ctx) {
		}
	}()
}

// renewed renews once and reports whether renewal should go on.
func (l *Lease) renewed(ctx context.Context) bool {
	err := l.renew(ctx)
	switch {
	case err == nil:
	case errors.Is(err, ErrLeaseLost):
		l.e.logger.Error("lease taken over by another request; it holds the key now", "key_id", KeyID(l.c.Key), "error", err)
		return false
	default:
		l.e.logger.Error("lease renewal failed; retrying at the next interval (if the lease runs out first, retries are told outcome-unknown)", "key_id", KeyID(l.c.Key), "error", err)
	}
	return true
}

// StorageKey returns the opaque key the lease holds (for admin and tests).
func (l *Lease) StorageKey() string { return l.c.Key }

// settleLocked marks the lease settled and stops renewal; it reports false
// if the lease was already settled. The caller holds l.mu.
func (l *Lease) settleLocked() bool {
	if l.settled {
		return false
	}
	l.settled = true
	if l.stopKeep != nil {
		l.stopKeep()
	}
	return true
}

func (l *Lease) releaseLocked(ctx context.Context, start time.Time) error {
	return l.settle(ctx, start, "release", func(sctx context.Context) error { return l.e.store.Release(sctx, l.c) }, func(err error) error {
		switch {
		case err == nil:
			l.report("released", 0)
			return nil
		case errors.Is(err, ErrLeaseLost):
			l.report("lost", 0)
			l.e.logger.InfoContext(ctx, "key not released: another request's token holds it now (its claim or its record)", "key_id", KeyID(l.c.Key))
		default:
			l.report("failed", 0)
			l.e.logger.ErrorContext(ctx, "could not release the key; its claim stays until the lease runs out, then retries are told outcome-unknown", "key_id", KeyID(l.c.Key), "error", err)
		}
		return fmt.Errorf("release: %w", err)
	})
}

func (l *Lease) recordLocked(ctx context.Context, start time.Time, rec *Record, how string) error {
	return l.settle(ctx, start, "complete", func(sctx context.Context) error { return l.e.store.Complete(sctx, l.c, rec) }, func(err error) error {
		switch {
		case err == nil:
			l.report(how, len(rec.Body))
			return nil
		case errors.Is(err, ErrLeaseLost):
			l.report("lost", 0)
			// Stores keep the completing token with the record, so a retry
			// whose first try landed succeeds: lost is another token's hold.
			l.e.logger.WarnContext(ctx, "not recorded: another request's token holds this key now (it claimed the key after our claim was taken over, purged or expired, and may have completed it)", "key_id", KeyID(l.c.Key), "mark", rec.Mark.String(), "status", rec.Status)
		default:
			l.report("failed", 0)
			l.e.logger.ErrorContext(ctx, "could not record the outcome; the claim stays until its lease runs out, then retries are told outcome-unknown", "key_id", KeyID(l.c.Key), "mark", rec.Mark.String(), "status", rec.Status, "error", err)
		}
		return fmt.Errorf("complete: %w", err)
	})
}

// settle runs a settling store call and hands its error to outcome, which
// reports it. The call is detached from ctx's cancellation (the client may
// be gone, the outcome must still be saved) and bounded by settleTimeout
// and two thirds of the lease: renewals stop when settling starts, so it
// gives up before the lease can run out, and no retry can take the key
// over while the record may still land. Past that bound the claim is left
// to its lease, after which retries are told the outcome is unknown: the
// request is never run again, only its answer is not kept.
//
// The first attempt runs on the caller's goroutine, within the store
// timeout and ctx's deadline: the usual settle costs no goroutine. If it
// fails on a transient store error, the retries (with backoff) run on
// their own goroutine, and the caller waits for them only while ctx lasts,
// so a transport that must answer in time (ext_proc) is never held past
// its ctx by a store that is down; Saved and Engine.Wait tell when they
// end. The caller holds l.mu.
func (l *Lease) settle(ctx context.Context, start time.Time, op string, call func(context.Context) error, outcome func(error) error) error {
	detached := context.WithoutCancel(ctx)
	bound := start.Add(min(settleTimeout, l.p.Lease*2/3))
	first := bound
	if dl, ok := ctx.Deadline(); ok && dl.Before(first) {
		first = dl
	}
	fctx, cancel := context.WithDeadline(detached, first)
	err := l.attempt(fctx, op, call)
	cancel()
	if err == nil || !storeDown(err) || !time.Now().Before(bound) {
		return outcome(err)
	}
	sctx, cancel := context.WithDeadline(detached, bound)
	done := make(chan error, 1)
	l.saved = make(chan struct{})
	l.e.saving.Add(1)
	go func(saved chan struct{}) {
		defer l.e.saving.Done()
		defer close(saved)
		defer cancel()
		wait := settleRetryFirst
		err := err
		for storeDown(err) && sctx.Err() == nil && l.e.sleep(sctx, wait) == nil {
			wait = min(wait*2, settleRetryMax)
			err = l.attempt(sctx, op, call)
		}
		done <- outcome(err)
	}(l.saved)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done: // it ended as ctx did
			return err
		default:
		}
		l.e.logger.WarnContext(ctx, "the store is slow or down: returning before the outcome is saved; saving goes on in the background (retries of this key get 409 meanwhile)", "key_id", KeyID(l.c.Key), "op", op, "error", err)
		return fmt.Errorf("%s: still saving in the background after: %w", op, err)
	}
}

// Saved returns a channel closed once the outcome Complete or Abandon
// began to save is saved or given up: they return before that only when
// the store failed and their ctx ended while the retries went on.
func (l *Lease) Saved() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.saved == nil {
		return closed
	}
	return l.saved
}

// attempt is one settling store call, within the store timeout.
func (l *Lease) attempt(ctx context.Context, op string, call func(context.Context) error) error {
	start := time.Now()
	actx, cancel := l.e.storeCtx(ctx)
	err := call(actx)
	cancel()
	l.e.observe(op, start, err)
	return err
}

func (l *Lease) report(how string, n int) {
	if l.e.hooks.Settled != nil {
		l.e.hooks.Settled(how, n)
	}
}
