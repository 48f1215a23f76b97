package idempotency

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Response is what a transport captured from the upstream or handler.
type Response struct {
	Status  int
	Headers []Header
	// Body holds at most Policy.MaxResponseBody bytes; set TooLarge when
	// the transport stopped accumulating because the body was larger.
	Body     []byte
	TooLarge bool
}

// Lease is the right, won by Begin, to execute a request and record its
// outcome. Exactly one of Complete or Abandon settles it; later calls are
// no-ops, so a transport can defer Abandon unconditionally.
type Lease struct {
	e     *Engine
	p     *Policy
	key   string
	token string

	mu       sync.Mutex
	settled  bool
	stopKeep func()
}

// Complete records resp, or releases the key when the policy does not
// store resp.Status (5xx, 408, 429 by default) so a retry may run. A body
// over the cap stores a tombstone instead: retries get 413, never a re-run.
func (l *Lease) Complete(ctx context.Context, resp *Response) error {
	if !l.settle() {
		return nil
	}
	if !l.p.Stores(resp.Status) {
		return l.release(ctx, "released_status")
	}
	rec := &Record{Status: resp.Status, CreatedAt: l.e.now().Truncate(time.Millisecond)}
	if resp.TooLarge || int64(len(resp.Body)) > l.p.MaxResponseBody {
		rec.TooLarge = true
	} else {
		rec.Headers = ReplayableHeaders(l.p, resp.Headers)
		rec.Body = resp.Body
	}
	start := time.Now()
	sctx, cancel := l.e.storeCtx(ctx)
	err := l.e.store.Complete(sctx, l.key, l.token, rec, l.p.Retention)
	cancel()
	l.e.observe("complete", start, err)
	how := "completed"
	switch {
	case rec.TooLarge:
		how = "completed_too_large"
	case errors.Is(err, ErrLeaseLost):
		how = "lost"
	case err != nil:
		how = "complete_failed"
	}
	l.report(how, len(rec.Body))
	if err != nil {
		l.e.logger.ErrorContext(ctx, "could not record response; key stays locked until its lease expires", "key_id", l.key[:12], "error", err)
		return fmt.Errorf("complete: %w", err)
	}
	return nil
}

// Abandon settles a lease that will never see a complete response. When
// upstreamSawRequest is false (the request provably never left), the key
// is released so a retry may run. Otherwise the outcome is unknown: the
// claim is left to expire, so no duplicate runs while the first may still
// be executing.
func (l *Lease) Abandon(ctx context.Context, upstreamSawRequest bool) error {
	if !l.settle() {
		return nil
	}
	if !upstreamSawRequest {
		return l.release(ctx, "released_unsent")
	}
	l.report("abandoned", 0)
	l.e.logger.WarnContext(ctx, "request ended without a complete response; key left locked until its lease expires", "key_id", l.key[:12])
	return nil
}

// Extend renews the lease once.
func (l *Lease) Extend(ctx context.Context) error {
	start := time.Now()
	sctx, cancel := l.e.storeCtx(ctx)
	err := l.e.store.Extend(sctx, l.key, l.token, l.p.Lease)
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
func (l *Lease) KeepAlive(ctx context.Context) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.mu.Lock()
	if l.settled || l.stopKeep != nil {
		l.mu.Unlock()
		cancel()
		return
	}
	l.stopKeep = cancel
	l.mu.Unlock()
	go func() {
		for l.e.sleep(ctx, l.p.Lease/3) == nil {
			if err := l.Extend(ctx); err != nil && ctx.Err() == nil {
				l.e.logger.Error("lease renewal failed; a duplicate may run once the lease expires", "key_id", l.key[:12], "error", err)
				if errors.Is(err, ErrLeaseLost) {
					return
				}
			}
		}
	}()
}

// StorageKey returns the opaque key the lease holds (for admin and tests).
func (l *Lease) StorageKey() string { return l.key }

// settle marks the lease settled and stops renewal; it reports false if the
// lease was already settled.
func (l *Lease) settle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.settled {
		return false
	}
	l.settled = true
	if l.stopKeep != nil {
		l.stopKeep()
	}
	return true
}

func (l *Lease) release(ctx context.Context, how string) error {
	start := time.Now()
	sctx, cancel := l.e.storeCtx(ctx)
	err := l.e.store.Release(sctx, l.key, l.token)
	cancel()
	l.e.observe("release", start, err)
	if err != nil {
		how = "release_failed"
	}
	l.report(how, 0)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

func (l *Lease) report(how string, n int) {
	if l.e.hooks.Settled != nil {
		l.e.hooks.Settled(how, n)
	}
}
