package idempotency_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

func TestAbandonUnsentReleases(t *testing.T) {
	f := newFixture(t)
	lease := f.proceed(t, post("k1", orderJSON))
	require.NoError(t, lease.Abandon(context.Background(), false))
	assert.Zero(t, f.store.Len())
	f.proceed(t, post("k1", orderJSON))
}

// A request forwarded and never answered may have run: its key answers
// outcome-unknown for the retention, never runs again on its own.
func TestAbandonRecordsOutcomeUnknown(t *testing.T) {
	f := newFixture(t)
	f.pol.Lease = 5 * time.Second
	first := f.proceed(t, post("k1", orderJSON))
	require.NoError(t, first.Abandon(context.Background(), true))
	for _, after := range []time.Duration{0, time.Minute, 23 * time.Hour} {
		f.clock.Advance(after)
		d := f.begin(t, post("k1", orderJSON))
		requireReject(t, d, 424, "outcome-unknown")
		assert.ErrorIs(t, d.Err, idempotency.ErrOutcomeUnknown)
		assert.Zero(t, d.Problem.RetryAfter, "waiting does not help: no Retry-After")
	}
	requireReject(t, f.begin(t, post("k1", `{"other":1}`)), 422, "key-reused")
	f.clock.Advance(time.Hour)
	f.proceed(t, post("k1", orderJSON)) // past the retention: forgotten
}

// Under unknown_outcome retry_after_lease (upstreams that roll back work
// cut off mid-request) the key runs again once the lease runs out.
func TestAbandonRetryAfterLease(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, idempotency.WithHooks(rec.hooks()))
	f.pol.Lease = 5 * time.Second
	f.pol.UnknownOutcome = idempotency.UnknownRetryAfterLease
	first := f.proceed(t, post("k1", orderJSON))
	require.NoError(t, first.Abandon(context.Background(), true))
	f.clock.Advance(4 * time.Second)
	requireReject(t, f.begin(t, post("k1", orderJSON)), 409, "request-in-progress")
	f.clock.Advance(time.Second)
	second := f.proceed(t, post("k1", orderJSON))
	require.NoError(t, second.Complete(context.Background(), response(201, "second")))
	d := f.begin(t, post("k1", orderJSON))
	require.Equal(t, idempotency.Replay, d.Kind)
	assert.Equal(t, "second", string(d.Record.Body))
	_, _, settled, _ := rec.snapshot()
	assert.Equal(t, []string{"expiring/0", "recorded/6"}, settled)
}

// A holder that vanished without settling (a crash) leaves a claim whose
// lease runs out: that is outcome-unknown too, not a free key.
func TestCrashedHolderIsOutcomeUnknown(t *testing.T) {
	f := newFixture(t)
	f.pol.Lease = time.Second
	f.proceed(t, post("k1", orderJSON)) // never settled, never renewed
	f.clock.Advance(999 * time.Millisecond)
	requireReject(t, f.begin(t, post("k1", orderJSON)), 409, "request-in-progress")
	f.clock.Advance(time.Millisecond)
	requireReject(t, f.begin(t, post("k1", orderJSON)), 424, "outcome-unknown")
}

func TestCompleteIncompleteResponse(t *testing.T) {
	f := newFixture(t)
	ran := f.proceed(t, post("k1", orderJSON))
	require.NoError(t, ran.Complete(context.Background(), &idempotency.Record{Status: 201, Mark: idempotency.MarkIncomplete,
		Headers: hdrs("Location", "/v1/orders/ord_1", "Set-Cookie", "s=1"), Body: []byte(`{"id":"or`)}))
	e, err := f.store.Get(context.Background(), ran.StorageKey())
	require.NoError(t, err)
	assert.Equal(t, idempotency.MarkIncomplete, e.Record.Mark)
	assert.Equal(t, hdrs("Location", "/v1/orders/ord_1"), e.Record.Headers, "replayable headers are kept, the partial body is not")
	assert.Empty(t, e.Record.Body)
	d := f.begin(t, post("k1", orderJSON))
	requireReject(t, d, 424, "response-incomplete")
	assert.Equal(t, 201, d.Problem.OriginalStatus)
	assert.Contains(t, string(d.Problem.Body()), `"original_status":201`)

	// A cut-off 500 is still a 500: not stored, the key is released.
	failed := f.proceed(t, post("k2", orderJSON))
	require.NoError(t, failed.Complete(context.Background(), &idempotency.Record{Status: 500, Mark: idempotency.MarkIncomplete}))
	f.proceed(t, post("k2", orderJSON))
}

func TestCompleteAfterTakeoverIsFenced(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, idempotency.WithHooks(rec.hooks()))
	f.pol.Lease = time.Second
	f.pol.UnknownOutcome = idempotency.UnknownRetryAfterLease
	slow := f.proceed(t, post("k1", orderJSON))

	f.clock.Advance(time.Second)
	fast := f.proceed(t, post("k1", orderJSON))
	require.NoError(t, fast.Complete(context.Background(), response(201, "fast")))

	err := slow.Complete(context.Background(), response(201, "slow"))
	require.Error(t, err)
	assert.ErrorIs(t, err, idempotency.ErrLeaseLost)
	assert.NoError(t, slow.Renew(context.Background()), "a settled lease renews nothing")

	d := f.begin(t, post("k1", orderJSON))
	require.Equal(t, idempotency.Replay, d.Kind)
	assert.Equal(t, "fast", string(d.Record.Body), "the fenced writer changed nothing")

	_, _, settled, _ := rec.snapshot()
	assert.Equal(t, []string{"recorded/4", "lost/0"}, settled)
}

// flakyStore fails the first n settling calls as an unreachable store
// would, then behaves.
type flakyStore struct {
	idempotency.Store
	mu    sync.Mutex
	fails int
	calls []string
}

func (s *flakyStore) flake(op string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, op)
	if s.fails > 0 {
		s.fails--
		return fmt.Errorf("flaky: %w", idempotency.ErrStoreUnavailable)
	}
	return nil
}

func (s *flakyStore) Complete(ctx context.Context, c idempotency.Claim, rec *idempotency.Record) error {
	if err := s.flake("complete"); err != nil {
		return err
	}
	return s.Store.Complete(ctx, c, rec)
}

func (s *flakyStore) Release(ctx context.Context, c idempotency.Claim) error {
	if err := s.flake("release"); err != nil {
		return err
	}
	return s.Store.Release(ctx, c)
}

// landedStore runs the first Complete and then reports it timed out, as a
// call to a stalled store does when the store runs it once it resumes.
type landedStore struct {
	idempotency.Store
	landed bool
}

func (s *landedStore) Complete(ctx context.Context, c idempotency.Claim, rec *idempotency.Record) error {
	err := s.Store.Complete(ctx, c, rec)
	if err != nil || s.landed {
		return err
	}
	s.landed = true
	return fmt.Errorf("landed: %w", context.DeadlineExceeded)
}

// The retry of a Complete whose first try landed finds its own record: the
// lease is recorded, not reported as lost to another request.
func TestSettleRetryAfterLandedComplete(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t)
	eng := idempotency.New(&landedStore{Store: f.store}, idempotency.WithClock(f.clock.Now, f.clock.Sleep), idempotency.WithHooks(rec.hooks()))
	d := eng.Begin(context.Background(), &f.pol, post("k1", orderJSON))
	require.Equal(t, idempotency.Proceed, d.Kind)
	require.NoError(t, d.Lease.Complete(context.Background(), response(201, "ok")))
	_, ops, settled, _ := rec.snapshot()
	assert.Equal(t, []string{"acquire", "complete", "complete"}, ops, "retried once")
	assert.Equal(t, []string{"recorded/2"}, settled)
	r := eng.Begin(context.Background(), &f.pol, post("k1", orderJSON))
	require.Equal(t, idempotency.Replay, r.Kind)
	assert.Equal(t, "ok", string(r.Record.Body))
}

// A transient failure while recording is retried with backoff, within the
// settle's bound, before the outcome is given up.
func TestSettleRetriesTransientFailures(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t)
	flaky := &flakyStore{Store: f.store, fails: 3}
	eng := idempotency.New(flaky, idempotency.WithClock(f.clock.Now, f.clock.Sleep), idempotency.WithHooks(rec.hooks()))
	d := eng.Begin(context.Background(), &f.pol, post("k1", orderJSON))
	require.Equal(t, idempotency.Proceed, d.Kind)
	require.NoError(t, d.Lease.Complete(context.Background(), response(201, "ok")))
	assert.Equal(t, []string{"complete", "complete", "complete", "complete"}, flaky.calls)
	assert.Equal(t, []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}, f.clock.Sleeps())
	assert.Equal(t, idempotency.Replay, eng.Begin(context.Background(), &f.pol, post("k1", orderJSON)).Kind)

	// Release is retried the same way: a failed release would leave an
	// unstored 500 looking like an unknown outcome.
	flaky.fails = 2
	d = eng.Begin(context.Background(), &f.pol, post("k2", orderJSON))
	require.NoError(t, d.Lease.Complete(context.Background(), response(503, "")))
	assert.Equal(t, idempotency.Proceed, eng.Begin(context.Background(), &f.pol, post("k2", orderJSON)).Kind)
	_, _, settled, _ := rec.snapshot()
	assert.Equal(t, []string{"recorded/2", "released/0"}, settled)
}

func TestSettleFailuresAreReported(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, idempotency.WithHooks(rec.hooks()))
	f.pol.Lease = time.Second
	f.pol.UnknownOutcome = idempotency.UnknownRetryAfterLease
	a := f.proceed(t, post("a", orderJSON))
	f.clock.Advance(time.Second)
	f.proceed(t, post("a", orderJSON))
	assert.ErrorIs(t, a.Abandon(context.Background(), false), idempotency.ErrLeaseLost, "cannot release a claim taken over")

	// A store that stays down: the caller waits while its ctx lasts; the
	// retries go on in the background until the settle's bound (two thirds
	// of a 1.5s lease), and then the failure is reported. A real clock:
	// the bound is real time.
	flaky := &flakyStore{Store: f.store, fails: 1 << 30}
	eng := idempotency.New(flaky, idempotency.WithHooks(rec.hooks()))
	pol := f.pol
	pol.Lease = 1500 * time.Millisecond
	d := eng.Begin(context.Background(), &pol, post("b", orderJSON))
	require.Equal(t, idempotency.Proceed, d.Kind)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := d.Lease.Complete(ctx, response(201, "x"))
	assert.ErrorIs(t, err, idempotency.ErrStoreUnavailable)
	assert.Less(t, time.Since(start), 500*time.Millisecond, "returned when its ctx ended, not when the retries did")
	select {
	case <-d.Lease.Saved():
		t.Fatal("Saved closed while the retries go on")
	default:
	}
	select {
	case <-d.Lease.Saved():
	case <-time.After(5 * time.Second):
		t.Fatal("Saved not closed after the settle's bound")
	}
	eng.Wait()
	assert.Less(t, time.Since(start), 3*time.Second, "the retries stop at the settle's bound (1s)")
	flaky.mu.Lock()
	n := len(flaky.calls)
	flaky.mu.Unlock()
	assert.GreaterOrEqual(t, n, 4, "retried in the background (at 0, 50, 150, 350 and 750ms, then the 1s bound)")
	_, _, settled, _ := rec.snapshot()
	assert.Equal(t, []string{"lost/0", "failed/0"}, settled)
}

// The settle is detached from the request: a client gone before the
// response is recorded does not stop the record.
func TestSettleOutlivesTheRequest(t *testing.T) {
	f := newFixture(t)
	d := f.begin(t, post("settle", "a"))
	require.Equal(t, idempotency.Proceed, d.Kind)
	req, cancel := context.WithCancel(context.Background())
	cancel() // the client is gone
	require.NoError(t, d.Lease.Complete(req, response(201, "x")))
	<-d.Lease.Saved() // closed: saved on the first attempt
	r := f.begin(t, post("settle", "a"))
	require.Equal(t, idempotency.Replay, r.Kind)
	assert.Equal(t, "x", string(r.Record.Body))
}

func TestHooks(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, idempotency.WithHooks(rec.hooks()))
	f.pol.MaxResponseBody = 4
	ctx := context.Background()

	f.begin(t, request("POST", "/", "")) // pass
	l := f.proceed(t, post("k1", orderJSON))
	require.NoError(t, l.Renew(ctx))
	require.NoError(t, l.Complete(ctx, response(201, "abc")))
	f.begin(t, post("k1", orderJSON))                                   // replay
	f.begin(t, post("k1", "{}"))                                        // key-reused
	require.NoError(t, f.proceed(t, post("k2", "")).Abandon(ctx, true)) // unknown
	f.begin(t, post("k2", ""))                                          // outcome-unknown
	require.NoError(t, f.proceed(t, post("k3", "")).Complete(ctx, response(200, "too big")))
	require.NoError(t, f.proceed(t, post("k4", "")).Abandon(ctx, false))

	decided, ops, settled, renewals := rec.snapshot()
	assert.Equal(t, []string{"pass", "proceed", "replay", "key-reused", "proceed", "outcome-unknown", "proceed", "proceed"}, decided)
	assert.Equal(t, []string{"acquire", "extend", "complete", "acquire", "acquire", "acquire", "complete", "acquire", "acquire", "complete", "acquire", "release"}, ops)
	assert.Equal(t, []string{"recorded/3", "unknown/0", "too_large/0", "released/0"}, settled)
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
