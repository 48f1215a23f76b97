package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// hangingStore blocks every call until its context ends, like a Redis
// that accepts connections but never answers.
type hangingStore struct{ idempotency.Store }

func (hangingStore) Release(context.Context, idempotency.Claim) error { return nil }

func (hangingStore) Acquire(ctx context.Context, _ idempotency.Claim, _ idempotency.AcquireOptions) (idempotency.AcquireResult, error) {
	<-ctx.Done()
	return idempotency.AcquireResult{}, fmt.Errorf("hang: %w", ctx.Err())
}

func TestStoreTimeoutFailsClosedInTime(t *testing.T) {
	eng := idempotency.New(hangingStore{}, idempotency.WithStoreTimeout(50*time.Millisecond))
	p := idempotency.DefaultPolicy()
	start := time.Now()
	d := eng.Begin(context.Background(), &p, post("k1", orderJSON))
	assert.Less(t, time.Since(start), time.Second, "the store timeout bounds Begin")
	requireReject(t, d, 503, "store-unavailable")
	assert.True(t, errors.Is(d.Err, context.DeadlineExceeded))
	assert.Positive(t, d.Problem.RetryAfter)
}

func TestStoreTimeoutFailOpenPasses(t *testing.T) {
	eng := idempotency.New(hangingStore{}, idempotency.WithStoreTimeout(20*time.Millisecond))
	p := idempotency.DefaultPolicy()
	p.FailOpen = true
	d := eng.Begin(context.Background(), &p, post("k1", orderJSON))
	assert.Equal(t, idempotency.Pass, d.Kind, "fail-open lets the request through when the store is too slow")
	require.Error(t, d.Err)
}

// corruptStore reports an unreadable entry: fail-open must not re-run it.
type corruptStore struct{ idempotency.Store }

func (corruptStore) Acquire(context.Context, idempotency.Claim, idempotency.AcquireOptions) (idempotency.AcquireResult, error) {
	return idempotency.AcquireResult{}, fmt.Errorf("decode: %w", idempotency.ErrCorruptRecord)
}

func TestCorruptRecordNeverFailsOpen(t *testing.T) {
	eng := idempotency.New(corruptStore{})
	p := idempotency.DefaultPolicy()
	p.FailOpen = true
	d := eng.Begin(context.Background(), &p, post("k1", orderJSON))
	require.Equal(t, idempotency.Reject, d.Kind)
	assert.Equal(t, 500, d.Problem.Status)
}

func TestBeforeWaitCalledOnlyWhenWaiting(t *testing.T) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	eng := idempotency.New(s)
	p := idempotency.DefaultPolicy()
	p.WaitInFlight = 30 * time.Millisecond
	var waits []time.Duration
	r := post("k1", orderJSON)
	hook := idempotency.BeforeWait(func(d time.Duration) { waits = append(waits, d) })
	first := eng.Begin(context.Background(), &p, r, hook)
	require.Equal(t, idempotency.Proceed, first.Kind)
	assert.Empty(t, waits, "a request that acquires does not wait")
	dup := eng.Begin(context.Background(), &p, r, hook)
	requireReject(t, dup, 409, "request-in-progress")
	assert.Equal(t, []time.Duration{30 * time.Millisecond}, waits)
}

// lostReplyStore makes the claim and then fails, as a call whose reply was
// lost (or whose ctx ended mid-call) does.
type lostReplyStore struct{ *memstore.Store }

func (s lostReplyStore) Acquire(ctx context.Context, c idempotency.Claim, o idempotency.AcquireOptions) (idempotency.AcquireResult, error) {
	_, _ = s.Store.Acquire(ctx, c, o)
	return idempotency.AcquireResult{}, errDown
}

// A claim made by a call that then failed is taken back: the client was
// told nothing ran, so its retry must not find the key locked (and later
// told outcome-unknown).
func TestFailedAcquireReleasesItsClaim(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	defer mem.Close()
	eng := idempotency.New(lostReplyStore{mem})
	p := idempotency.DefaultPolicy()
	requireReject(t, eng.Begin(context.Background(), &p, post("k1", orderJSON)), 503, "store-unavailable")
	require.Eventually(t, func() bool { return mem.Len() == 0 }, 5*time.Second, time.Millisecond)
	d := idempotency.New(mem).Begin(context.Background(), &p, post("k1", orderJSON))
	assert.Equal(t, idempotency.Proceed, d.Kind)
}
