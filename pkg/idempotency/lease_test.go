package idempotency_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

func TestAbandonUnsentReleases(t *testing.T) {
	f := newFixture(t)
	lease := f.proceed(t, post("k1", orderJSON))
	require.NoError(t, lease.Abandon(context.Background(), false))
	assert.Zero(t, f.store.Len())
	f.proceed(t, post("k1", orderJSON))
}

func TestAbandonUnknownOutcomeKeepsKeyLocked(t *testing.T) {
	f := newFixture(t)
	f.pol.Lease = 5 * time.Second
	first := f.proceed(t, post("k1", orderJSON))
	require.NoError(t, first.Abandon(context.Background(), true))

	f.clock.Advance(4 * time.Second)
	requireReject(t, f.begin(t, post("k1", orderJSON)), 409, "request-in-progress")

	f.clock.Advance(time.Second)
	second := f.proceed(t, post("k1", orderJSON))
	assert.Equal(t, first.StorageKey(), second.StorageKey())
	require.NoError(t, second.Complete(context.Background(), response(201, "second")))
	d := f.begin(t, post("k1", orderJSON))
	require.Equal(t, idempotency.Replay, d.Kind)
	assert.Equal(t, "second", string(d.Record.Body))
}

func TestCompleteAfterTakeoverIsFenced(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, idempotency.WithHooks(rec.hooks()))
	f.pol.Lease = time.Second
	slow := f.proceed(t, post("k1", orderJSON))

	f.clock.Advance(time.Second)
	fast := f.proceed(t, post("k1", orderJSON))
	require.NoError(t, fast.Complete(context.Background(), response(201, "fast")))

	err := slow.Complete(context.Background(), response(201, "slow"))
	require.Error(t, err)
	assert.ErrorIs(t, err, idempotency.ErrLeaseLost)
	assert.ErrorIs(t, slow.Extend(context.Background()), idempotency.ErrLeaseLost)

	d := f.begin(t, post("k1", orderJSON))
	require.Equal(t, idempotency.Replay, d.Kind)
	assert.Equal(t, "fast", string(d.Record.Body), "the fenced writer changed nothing")

	_, _, settled, _ := rec.snapshot()
	assert.Equal(t, []string{"completed/4", "lost/4"}, settled)
}

func TestSettleFailuresAreReported(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, idempotency.WithHooks(rec.hooks()))
	f.pol.Lease = time.Second
	a := f.proceed(t, post("a", orderJSON))
	b := f.proceed(t, post("b", orderJSON))
	f.clock.Advance(time.Second)
	f.proceed(t, post("a", orderJSON))
	f.proceed(t, post("b", orderJSON))

	assert.ErrorIs(t, a.Abandon(context.Background(), false), idempotency.ErrLeaseLost, "cannot release a claim taken over")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.Complete(ctx, response(201, "x"))
	assert.ErrorIs(t, err, context.Canceled)
	_, _, settled, _ := rec.snapshot()
	assert.Equal(t, []string{"release_failed/0", "complete_failed/1"}, settled)
}

func TestHooks(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, idempotency.WithHooks(rec.hooks()))
	f.pol.MaxResponseBody = 4
	ctx := context.Background()

	f.begin(t, request("POST", "/", "")) // pass
	l := f.proceed(t, post("k1", orderJSON))
	require.NoError(t, l.Extend(ctx))
	require.NoError(t, l.Complete(ctx, response(201, "abc")))
	f.begin(t, post("k1", orderJSON))                                   // replay
	f.begin(t, post("k1", "{}"))                                        // key-reused
	require.NoError(t, f.proceed(t, post("k2", "")).Abandon(ctx, true)) // abandoned
	f.begin(t, post("k2", ""))                                          // request-in-progress
	require.NoError(t, f.proceed(t, post("k3", "")).Complete(ctx, response(200, "too big")))
	require.NoError(t, f.proceed(t, post("k4", "")).Abandon(ctx, false))

	decided, ops, settled, renewals := rec.snapshot()
	assert.Equal(t, []string{"pass", "proceed", "replay", "key-reused", "proceed", "request-in-progress", "proceed", "proceed"}, decided)
	assert.Equal(t, []string{"acquire", "extend", "complete", "acquire", "acquire", "acquire", "acquire", "acquire", "complete", "acquire", "release"}, ops)
	assert.Equal(t, []string{"completed/3", "abandoned/0", "completed_too_large/0", "released_unsent/0"}, settled)
	assert.Equal(t, 1, renewals)
	for _, err := range rec.opErrs {
		assert.NoError(t, err)
	}

	rec2 := &recorder{}
	p := idempotency.DefaultPolicy()
	p.FailOpen = true
	idempotency.New(stubStore{}, idempotency.WithHooks(rec2.hooks())).Begin(ctx, &p, post("k", ""))
	decided, ops, _, _ = rec2.snapshot()
	assert.Equal(t, []string{"pass"}, decided, "fail-open is a pass")
	assert.Equal(t, []string{"acquire"}, ops)
	assert.ErrorIs(t, rec2.opErrs[0], idempotency.ErrStoreUnavailable)
}

// countingStore counts Extend calls on a real-time memstore.
type countingStore struct {
	*memstore.Store
	mu      sync.Mutex
	extends int
	errs    []error
}

func (s *countingStore) Extend(ctx context.Context, key, token string, lease time.Duration) error {
	err := s.Store.Extend(ctx, key, token, lease)
	s.mu.Lock()
	s.extends++
	if err != nil {
		s.errs = append(s.errs, err)
	}
	s.mu.Unlock()
	return err
}

func (s *countingStore) counts() (int, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.extends, append([]error(nil), s.errs...)
}

// TestKeepAliveOutlivesLease runs on real time: a 60ms lease held for
// 300ms must never be taken over, and renewal must stop once settled.
func TestKeepAliveOutlivesLease(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = mem.Close() })
	s := &countingStore{Store: mem}
	eng := idempotency.New(s)
	p := idempotency.DefaultPolicy()
	p.Lease = 60 * time.Millisecond
	ctx := context.Background()

	d := eng.Begin(ctx, &p, post("slow", orderJSON))
	require.Equal(t, idempotency.Proceed, d.Kind)
	reqCtx, cancelReq := context.WithCancel(ctx)
	d.Lease.KeepAlive(reqCtx)
	d.Lease.KeepAlive(reqCtx) // a second call is a no-op, not a second renewer
	cancelReq()               // the client went away; the handler is still running

	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		dup := eng.Begin(ctx, &p, post("slow", orderJSON))
		require.Equal(t, idempotency.Reject, dup.Kind, "a duplicate got %v while the first was running", dup.Kind)
		require.Equal(t, 409, dup.Problem.Status)
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, d.Lease.Complete(ctx, response(201, "slow done")))

	n, errs := s.counts()
	assert.GreaterOrEqual(t, n, 5, "300ms at one renewal per 20ms")
	assert.Empty(t, errs, "no renewal failed while the lease was held")

	// A renewal racing Complete may still land; after that, none.
	time.Sleep(30 * time.Millisecond)
	settledAt, _ := s.counts()
	time.Sleep(150 * time.Millisecond)
	after, _ := s.counts()
	assert.Equal(t, settledAt, after, "renewal stopped after Complete")

	r := eng.Begin(ctx, &p, post("slow", orderJSON))
	require.Equal(t, idempotency.Replay, r.Kind)
	assert.Equal(t, "slow done", string(r.Record.Body))
}

// Without KeepAlive the same slow request is taken over: the test above
// can fail.
func TestLeaseExpiresWithoutKeepAlive(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = mem.Close() })
	eng := idempotency.New(mem)
	p := idempotency.DefaultPolicy()
	p.Lease = 20 * time.Millisecond
	d := eng.Begin(context.Background(), &p, post("slow", orderJSON))
	require.Equal(t, idempotency.Proceed, d.Kind)
	time.Sleep(40 * time.Millisecond)
	dup := eng.Begin(context.Background(), &p, post("slow", orderJSON))
	assert.Equal(t, idempotency.Proceed, dup.Kind)
	assert.True(t, errors.Is(d.Lease.Complete(context.Background(), response(201, "")), idempotency.ErrLeaseLost))
}

func TestKeepAliveStopsOnLeaseLost(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = mem.Close() })
	s := &countingStore{Store: mem}
	eng := idempotency.New(s)
	p := idempotency.DefaultPolicy()
	p.Lease = 30 * time.Millisecond
	d := eng.Begin(context.Background(), &p, post("k", orderJSON))
	require.Equal(t, idempotency.Proceed, d.Kind)
	require.NoError(t, mem.Delete(context.Background(), d.Lease.StorageKey())) // an admin purge
	d.Lease.KeepAlive(context.Background())

	time.Sleep(60 * time.Millisecond)
	n, errs := s.counts()
	require.Equal(t, 1, n, "one failed renewal, then the renewer gives up")
	assert.ErrorIs(t, errs[0], idempotency.ErrLeaseLost)
	time.Sleep(60 * time.Millisecond)
	n, _ = s.counts()
	assert.Equal(t, 1, n)
	require.NoError(t, d.Lease.Abandon(context.Background(), true))
}
