// Package storetest is the conformance suite every idempotency.Store runs,
// in one line from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) idempotency.Store { return newStore(t) })
//	}
//
// The factory is called once per subtest. Keys are random per subtest, so
// a factory may hand out one shared store. The suite uses real time with
// leases of tens of milliseconds, so run it under -race on an idle-ish
// machine; it takes a few seconds.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Factory returns the store a subtest runs against.
type Factory func(t *testing.T) idempotency.Store

// Short durations keep the suite fast; Slack absorbs scheduling and network
// jitter (a store's clock may be a server's).
const (
	shortLease = 150 * time.Millisecond
	longLease  = 10 * time.Second
	retention  = time.Hour
	slack      = 150 * time.Millisecond
)

// Run runs every conformance case against stores made by newStore.
func Run(t *testing.T, newStore Factory) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s idempotency.Store)
	}{
		{"AcquireFresh", testAcquireFresh},
		{"RaceOneWinner", testRaceOneWinner},
		{"CompleteReplaysIdentical", testCompleteReplays},
		{"MismatchInFlight", testMismatchInFlight},
		{"MismatchCompleted", testMismatchCompleted},
		{"EmptyFingerprint", testEmptyFingerprint},
		{"InFlightRetryAfter", testInFlightRetryAfter},
		{"ExpiredLeaseTakeoverFencesOldToken", testTakeover},
		{"ExtendKeepsClaim", testExtend},
		{"RetentionExpiry", testRetentionExpiry},
		{"ReleaseIdempotent", testRelease},
		{"ReleaseCannotDropRecord", testReleaseCompleted},
		{"CompleteOnce", testCompleteOnce},
		{"LargeBodyRoundTrip", testLargeBody},
		{"TombstoneRoundTrip", testTombstone},
		{"GetAndDelete", testGetDelete},
		{"KeysIndependent", testKeysIndependent},
		{"ContextCancelled", testContextCancelled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, newStore(t))
		})
	}
}

// NewKey returns a random key shaped like the engine's storage keys.
func NewKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return idempotency.StorageKey("storetest", hex.EncodeToString(b[:]))
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func acquire(t *testing.T, s idempotency.Store, key, fp string, lease time.Duration, want idempotency.Outcome) idempotency.AcquireResult {
	t.Helper()
	res, err := s.Acquire(ctx(t), key, fp, lease)
	require.NoError(t, err)
	require.Equal(t, want.String(), res.Outcome.String(), "Acquire outcome")
	return res
}

func sampleRecord() *idempotency.Record {
	return &idempotency.Record{
		Status: 201,
		Headers: []idempotency.Header{
			{Name: "Content-Type", Value: "application/json"},
			{Name: "Location", Value: "/orders/42"},
			{Name: "X-Multi", Value: "one"},
			{Name: "X-Multi", Value: "two, with comma"},
			{Name: "X-Empty", Value: ""},
		},
		Body:      []byte("{\"id\":42}\x00\xff binary"),
		CreatedAt: time.UnixMilli(1798761600123), // fixed, so two samples compare equal
	}
}

func requireSameRecord(t *testing.T, want, got *idempotency.Record) {
	t.Helper()
	require.NotNil(t, got)
	assert.Equal(t, want.Status, got.Status)
	assert.Equal(t, len(want.Headers), len(got.Headers), "header count")
	if len(want.Headers) > 0 || len(got.Headers) > 0 {
		assert.Equal(t, want.Headers, got.Headers)
	}
	assert.True(t, bytes.Equal(want.Body, got.Body), "body differs: %d vs %d bytes", len(want.Body), len(got.Body))
	assert.Equal(t, want.TooLarge, got.TooLarge)
	assert.True(t, want.CreatedAt.Equal(got.CreatedAt), "created_at %v vs %v", want.CreatedAt, got.CreatedAt)
}

func testAcquireFresh(t *testing.T, s idempotency.Store) {
	res := acquire(t, s, NewKey(), "fp", longLease, idempotency.Acquired)
	assert.GreaterOrEqual(t, len(res.Token), 16, "token must be unguessable")
}

func testRaceOneWinner(t *testing.T, s idempotency.Store) {
	key := NewKey()
	const n = 100
	var wg sync.WaitGroup
	start := make(chan struct{})
	outcomes := make([]idempotency.Outcome, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := s.Acquire(context.Background(), key, "fp", longLease)
			outcomes[i], errs[i] = res.Outcome, err
		}()
	}
	close(start)
	wg.Wait()
	won := 0
	for i := range n {
		require.NoError(t, errs[i])
		switch outcomes[i] {
		case idempotency.Acquired:
			won++
		case idempotency.InFlight:
		default:
			t.Fatalf("goroutine %d got %v", i, outcomes[i])
		}
	}
	require.Equal(t, 1, won, "exactly one goroutine must acquire")
}

func testCompleteReplays(t *testing.T, s idempotency.Store) {
	key := NewKey()
	res := acquire(t, s, key, "fp", longLease, idempotency.Acquired)
	rec := sampleRecord()
	require.NoError(t, s.Complete(ctx(t), key, res.Token, rec, retention))
	for range 2 {
		got := acquire(t, s, key, "fp", longLease, idempotency.Completed)
		requireSameRecord(t, sampleRecord(), got.Record)
	}
}

func testMismatchInFlight(t *testing.T, s idempotency.Store) {
	key := NewKey()
	res := acquire(t, s, key, "fp-a", longLease, idempotency.Acquired)
	acquire(t, s, key, "fp-b", longLease, idempotency.Mismatch)
	// The mismatch changed nothing: the owner can still complete.
	require.NoError(t, s.Complete(ctx(t), key, res.Token, sampleRecord(), retention))
}

func testMismatchCompleted(t *testing.T, s idempotency.Store) {
	key := NewKey()
	res := acquire(t, s, key, "fp-a", longLease, idempotency.Acquired)
	require.NoError(t, s.Complete(ctx(t), key, res.Token, sampleRecord(), retention))
	acquire(t, s, key, "fp-b", longLease, idempotency.Mismatch)
	got := acquire(t, s, key, "fp-a", longLease, idempotency.Completed)
	requireSameRecord(t, sampleRecord(), got.Record)
}

func testEmptyFingerprint(t *testing.T, s idempotency.Store) {
	key := NewKey()
	acquire(t, s, key, "", longLease, idempotency.Acquired)
	acquire(t, s, key, "", longLease, idempotency.InFlight)
	acquire(t, s, key, "x", longLease, idempotency.Mismatch)
}

func testInFlightRetryAfter(t *testing.T, s idempotency.Store) {
	key := NewKey()
	acquire(t, s, key, "fp", longLease, idempotency.Acquired)
	res := acquire(t, s, key, "fp", longLease, idempotency.InFlight)
	assert.Greater(t, res.RetryAfter, longLease-2*time.Second)
	assert.LessOrEqual(t, res.RetryAfter, longLease)
	assert.Empty(t, res.Token, "a loser must not get a token")
}

func testTakeover(t *testing.T, s idempotency.Store) {
	key := NewKey()
	old := acquire(t, s, key, "fp", shortLease, idempotency.Acquired)
	time.Sleep(shortLease + slack)
	cur := acquire(t, s, key, "fp", longLease, idempotency.Acquired)
	require.NotEqual(t, old.Token, cur.Token)
	c := ctx(t)
	require.ErrorIs(t, s.Complete(c, key, old.Token, sampleRecord(), retention), idempotency.ErrLeaseLost)
	require.ErrorIs(t, s.Extend(c, key, old.Token, longLease), idempotency.ErrLeaseLost)
	require.ErrorIs(t, s.Release(c, key, old.Token), idempotency.ErrLeaseLost)
	// The new owner was not disturbed by any of that.
	acquire(t, s, key, "fp", longLease, idempotency.InFlight)
	require.NoError(t, s.Complete(c, key, cur.Token, sampleRecord(), retention))
	acquire(t, s, key, "fp", longLease, idempotency.Completed)
}

func testExtend(t *testing.T, s idempotency.Store) {
	key := NewKey()
	res := acquire(t, s, key, "fp", shortLease, idempotency.Acquired)
	for range 5 {
		time.Sleep(shortLease / 3)
		require.NoError(t, s.Extend(ctx(t), key, res.Token, shortLease))
	}
	// Total elapsed is well past the original lease.
	acquire(t, s, key, "fp", longLease, idempotency.InFlight)
	require.NoError(t, s.Complete(ctx(t), key, res.Token, sampleRecord(), retention))
	// Extend only applies to in-flight claims.
	require.ErrorIs(t, s.Extend(ctx(t), key, res.Token, shortLease), idempotency.ErrLeaseLost)
}

func testRetentionExpiry(t *testing.T, s idempotency.Store) {
	key := NewKey()
	res := acquire(t, s, key, "fp", longLease, idempotency.Acquired)
	require.NoError(t, s.Complete(ctx(t), key, res.Token, sampleRecord(), shortLease))
	acquire(t, s, key, "fp", longLease, idempotency.Completed)
	time.Sleep(shortLease + slack)
	_, err := s.Get(ctx(t), key)
	require.ErrorIs(t, err, idempotency.ErrNotFound, "expired records are absent on read")
	acquire(t, s, key, "other-fp", longLease, idempotency.Acquired)
}

func testRelease(t *testing.T, s idempotency.Store) {
	key := NewKey()
	res := acquire(t, s, key, "fp", longLease, idempotency.Acquired)
	c := ctx(t)
	require.NoError(t, s.Release(c, key, res.Token))
	require.NoError(t, s.Release(c, key, res.Token), "second release is a no-op")
	require.NoError(t, s.Release(c, NewKey(), "no-such-token"), "releasing an absent key is a no-op")
	next := acquire(t, s, key, "other-fp", longLease, idempotency.Acquired)
	require.ErrorIs(t, s.Release(c, key, res.Token), idempotency.ErrLeaseLost, "old token cannot release the new claim")
	acquire(t, s, key, "other-fp", longLease, idempotency.InFlight)
	require.NoError(t, s.Release(c, key, next.Token))
}

func testReleaseCompleted(t *testing.T, s idempotency.Store) {
	key := NewKey()
	res := acquire(t, s, key, "fp", longLease, idempotency.Acquired)
	require.NoError(t, s.Complete(ctx(t), key, res.Token, sampleRecord(), retention))
	require.ErrorIs(t, s.Release(ctx(t), key, res.Token), idempotency.ErrLeaseLost)
	acquire(t, s, key, "fp", longLease, idempotency.Completed)
}

func testCompleteOnce(t *testing.T, s idempotency.Store) {
	key := NewKey()
	res := acquire(t, s, key, "fp", longLease, idempotency.Acquired)
	require.NoError(t, s.Complete(ctx(t), key, res.Token, sampleRecord(), retention))
	other := sampleRecord()
	other.Status = 500
	require.ErrorIs(t, s.Complete(ctx(t), key, res.Token, other, retention), idempotency.ErrLeaseLost)
	require.ErrorIs(t, s.Complete(ctx(t), NewKey(), res.Token, other, retention), idempotency.ErrLeaseLost, "completing an absent key")
	got := acquire(t, s, key, "fp", longLease, idempotency.Completed)
	requireSameRecord(t, sampleRecord(), got.Record)
}

func testLargeBody(t *testing.T, s idempotency.Store) {
	key := NewKey()
	rec := sampleRecord()
	rec.Body = make([]byte, idempotency.DefaultMaxResponseBody)
	_, _ = rand.Read(rec.Body)
	res := acquire(t, s, key, "fp", longLease, idempotency.Acquired)
	require.NoError(t, s.Complete(ctx(t), key, res.Token, rec, retention))
	got := acquire(t, s, key, "fp", longLease, idempotency.Completed)
	requireSameRecord(t, rec, got.Record)
}

func testTombstone(t *testing.T, s idempotency.Store) {
	key := NewKey()
	rec := &idempotency.Record{Status: 200, TooLarge: true, CreatedAt: time.UnixMilli(time.Now().UnixMilli())}
	res := acquire(t, s, key, "fp", longLease, idempotency.Acquired)
	require.NoError(t, s.Complete(ctx(t), key, res.Token, rec, retention))
	got := acquire(t, s, key, "fp", longLease, idempotency.Completed)
	requireSameRecord(t, rec, got.Record)
}

func testGetDelete(t *testing.T, s idempotency.Store) {
	c := ctx(t)
	key := NewKey()
	_, err := s.Get(c, key)
	require.ErrorIs(t, err, idempotency.ErrNotFound)
	res := acquire(t, s, key, "fp", longLease, idempotency.Acquired)
	e, err := s.Get(c, key)
	require.NoError(t, err)
	assert.Equal(t, idempotency.StateInFlight, e.State)
	assert.Equal(t, "fp", e.Fingerprint)
	assert.WithinDuration(t, time.Now().Add(longLease), e.ExpiresAt, 2*time.Second)
	require.NoError(t, s.Complete(c, key, res.Token, sampleRecord(), retention))
	e, err = s.Get(c, key)
	require.NoError(t, err)
	assert.Equal(t, idempotency.StateCompleted, e.State)
	requireSameRecord(t, sampleRecord(), e.Record)
	assert.WithinDuration(t, time.Now().Add(retention), e.ExpiresAt, 2*time.Second)
	require.NoError(t, s.Delete(c, key))
	_, err = s.Get(c, key)
	require.ErrorIs(t, err, idempotency.ErrNotFound)
	require.NoError(t, s.Delete(c, key), "deleting an absent key is a no-op")
	acquire(t, s, key, "new-fp", longLease, idempotency.Acquired)

	// An expired claim is absent too.
	key2 := NewKey()
	acquire(t, s, key2, "fp", shortLease, idempotency.Acquired)
	time.Sleep(shortLease + slack)
	_, err = s.Get(c, key2)
	require.ErrorIs(t, err, idempotency.ErrNotFound)
}

func testKeysIndependent(t *testing.T, s idempotency.Store) {
	a, b := NewKey(), NewKey()
	ra := acquire(t, s, a, "fp", longLease, idempotency.Acquired)
	acquire(t, s, b, "fp", longLease, idempotency.Acquired)
	require.NoError(t, s.Complete(ctx(t), a, ra.Token, sampleRecord(), retention))
	acquire(t, s, b, "fp", longLease, idempotency.InFlight)
}

func testContextCancelled(t *testing.T, s idempotency.Store) {
	key := NewKey()
	res := acquire(t, s, key, "fp", longLease, idempotency.Acquired)
	c, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]func() error{
		"Acquire":  func() error { _, err := s.Acquire(c, NewKey(), "fp", longLease); return err },
		"Complete": func() error { return s.Complete(c, key, res.Token, sampleRecord(), retention) },
		"Release":  func() error { return s.Release(c, key, res.Token) },
		"Extend":   func() error { return s.Extend(c, key, res.Token, longLease) },
		"Get":      func() error { _, err := s.Get(c, key); return err },
		"Delete":   func() error { return s.Delete(c, key) },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		require.Error(t, err, name)
		assert.True(t, errors.Is(err, context.Canceled), "%s: %v does not wrap context.Canceled", name, err)
		assert.Less(t, time.Since(start), time.Second, "%s must return promptly", name)
	}
	// Nothing above took effect.
	acquire(t, s, key, "fp", longLease, idempotency.InFlight)
}
