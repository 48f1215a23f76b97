package memstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
	"github.com/gopotency/gopotency/pkg/store/storetest"
)

func record(body int) *idempotency.Record {
	return &idempotency.Record{Status: 201, Headers: []idempotency.Header{{Name: "Location", Value: "/x"}}, Body: make([]byte, body)}
}

func complete(t *testing.T, s *memstore.Store, body int) idempotency.Claim {
	t.Helper()
	c := storetest.NewClaim("fp", time.Minute, time.Hour)
	res, err := s.Acquire(context.Background(), c, idempotency.AcquireOptions{})
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, res.State)
	require.NoError(t, s.Complete(context.Background(), c, record(body)))
	return c
}

func outcome(t *testing.T, s *memstore.Store, c idempotency.Claim) idempotency.AcquireResult {
	t.Helper()
	c.Token = idempotency.NewToken()
	res, err := s.Acquire(context.Background(), c, idempotency.AcquireOptions{})
	require.NoError(t, err)
	return res
}

// Over the byte budget the oldest responses keep only their status: their
// retries are told the operation ran; nothing runs twice.
func TestByteBudgetEvictsOldestResponsesToStatus(t *testing.T) {
	s := memstore.New(memstore.Options{MaxBytes: 100_000})
	defer s.Close()
	var claims []idempotency.Claim
	for range 10 {
		claims = append(claims, complete(t, s, 20_000))
	}
	st := s.Stats()
	assert.LessOrEqual(t, st.Bytes, int64(100_000))
	assert.Positive(t, st.Evicted)
	oldest, newest := outcome(t, s, claims[0]), outcome(t, s, claims[9])
	require.Equal(t, idempotency.Completed, oldest.State, "an evicted key still answers")
	assert.Equal(t, idempotency.MarkEvicted, oldest.Record.Mark)
	assert.Equal(t, 201, oldest.Record.Status)
	assert.Empty(t, oldest.Record.Body)
	assert.Equal(t, idempotency.MarkNone, newest.Record.Mark, "the newest response is still replayable")
	assert.Len(t, newest.Record.Body, 20_000)
}

// Claims and outcome marks are never dropped to make room; a response too
// big for the whole budget is kept as its status.
func TestByteBudgetNeverDropsClaims(t *testing.T) {
	s := memstore.New(memstore.Options{MaxBytes: 50_000})
	defer s.Close()
	var held []idempotency.Claim
	for range 20 {
		c := storetest.NewClaim("fp", time.Minute, time.Hour)
		_, err := s.Acquire(context.Background(), c, idempotency.AcquireOptions{})
		require.NoError(t, err)
		held = append(held, c)
	}
	huge := complete(t, s, 80_000)
	assert.Equal(t, idempotency.MarkEvicted, outcome(t, s, huge).Record.Mark)
	for _, c := range held {
		assert.Equal(t, idempotency.InFlight, outcome(t, s, c).State)
	}
}

func TestEntryBudgetFailsClosed(t *testing.T) {
	s := memstore.New(memstore.Options{MaxEntries: 3})
	defer s.Close()
	for range 3 {
		complete(t, s, 10)
	}
	_, err := s.Acquire(context.Background(), storetest.NewClaim("fp", time.Minute, time.Hour), idempotency.AcquireOptions{})
	require.ErrorIs(t, err, idempotency.ErrStoreUnavailable, "full: a new claim is refused (503), nothing is dropped")
}

func TestSweepDropsExpiredInBatches(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	s := memstore.New(memstore.Options{Now: clock, SweepInterval: time.Hour})
	defer s.Close()
	for i := range 1000 {
		c := storetest.NewClaim(fmt.Sprint(i), time.Second, time.Duration(i+1)*time.Second)
		_, err := s.Acquire(context.Background(), c, idempotency.AcquireOptions{})
		require.NoError(t, err)
	}
	now = now.Add(600*time.Second + time.Millisecond)
	s.Sweep()
	st := s.Stats()
	assert.Equal(t, 400, st.Entries, "entries past their retention are gone, the rest stay")
	now = now.Add(time.Hour)
	s.Sweep()
	assert.Zero(t, s.Stats().Entries)
	assert.Zero(t, s.Stats().Bytes)
}

// Entries past their retention make room at once, before the sweeper
// runs: a full store of dead entries does not refuse new keys.
func TestEntryBudgetCountsOnlyLiveEntries(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := memstore.New(memstore.Options{MaxEntries: 3, Now: func() time.Time { return now }, SweepInterval: time.Hour})
	defer s.Close()
	for range 3 {
		_, err := s.Acquire(context.Background(), storetest.NewClaim("fp", time.Second, time.Minute), idempotency.AcquireOptions{})
		require.NoError(t, err)
	}
	_, err := s.Acquire(context.Background(), storetest.NewClaim("fp", time.Second, time.Minute), idempotency.AcquireOptions{})
	require.ErrorIs(t, err, idempotency.ErrStoreUnavailable)
	now = now.Add(time.Minute)
	res, err := s.Acquire(context.Background(), storetest.NewClaim("fp", time.Second, time.Minute), idempotency.AcquireOptions{})
	require.NoError(t, err, "the expired entries make room")
	assert.Equal(t, idempotency.Acquired, res.State)
}

// Under byte pressure expired entries go first, and a response-incomplete
// mark keeps its mark and headers: only replayable responses are evicted.
func TestByteBudgetKeepsMarksAndDropsExpiredFirst(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := memstore.New(memstore.Options{MaxBytes: 60_000, Now: func() time.Time { return now }, SweepInterval: time.Hour})
	defer s.Close()
	ctx := context.Background()
	inc := storetest.NewClaim("fp", time.Minute, time.Hour)
	_, err := s.Acquire(ctx, inc, idempotency.AcquireOptions{})
	require.NoError(t, err)
	incomplete := &idempotency.Record{Status: 201, Mark: idempotency.MarkIncomplete, Headers: []idempotency.Header{{Name: "Location", Value: "/orders/7"}}}
	require.NoError(t, s.Complete(ctx, inc, incomplete))

	short := storetest.NewClaim("fp", time.Second, time.Second)
	_, err = s.Acquire(ctx, short, idempotency.AcquireOptions{})
	require.NoError(t, err)
	require.NoError(t, s.Complete(ctx, short, record(25_000)))
	kept := complete(t, s, 25_000)
	now = now.Add(2 * time.Second) // short's retention ran out; not swept
	fresh := complete(t, s, 25_000)

	assert.Zero(t, s.Stats().Evicted, "the expired response made room; no live one was evicted")
	assert.Equal(t, idempotency.MarkNone, outcome(t, s, kept).Record.Mark)
	assert.Equal(t, idempotency.MarkNone, outcome(t, s, fresh).Record.Mark)
	for range 5 {
		complete(t, s, 25_000)
	}
	got := outcome(t, s, inc)
	require.Equal(t, idempotency.Completed, got.State)
	assert.Equal(t, idempotency.MarkIncomplete, got.Record.Mark, "a mark is never evicted")
	assert.Equal(t, incomplete.Headers, got.Record.Headers)
}
