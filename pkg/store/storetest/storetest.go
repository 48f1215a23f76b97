// Package storetest is the conformance suite every idempotency.Store runs,
// in one line from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) idempotency.Store { return newStore(t) })
//	}
//
// The factory is called once per subtest. Keys are random per subtest, so
// a factory may hand out one shared store. The suite uses real time with
// leases of tens of milliseconds (a store's clock may be a server's, which
// no fake clock reaches), so run it under -race on an idle-ish machine; it
// takes a few seconds. Stores that talk to a server also run RunStalled,
// which checks that a call stuck in network I/O still honours its context.
//
// SQL stores (sqlstore, gormstore) run four more cases, each given the
// store's transactions or table through a callback so this package links
// no database driver: LongTxRace, ReaperRace, Restart and CorruptRecord
// (they were the package sqltest). Bench measures a store's claims per
// second.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
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

var (
	noTakeover = idempotency.AcquireOptions{}
	takeover   = idempotency.AcquireOptions{TakeOverExpired: true}
)

// Run runs every conformance case against stores made by newStore.
func Run(t *testing.T, newStore Factory) { runCases(t, newStore, false) }

// RunSynctest runs the cases each in a testing/synctest bubble, for stores
// whose clock is the process's (memstore): virtual time makes every lease
// window exact, whatever the machine's load. newStore is called inside the
// bubble, and the store's goroutines must end by the subtest's Cleanup.
func RunSynctest(t *testing.T, newStore Factory) { runCases(t, newStore, true) }

func runCases(t *testing.T, newStore Factory, bubble bool) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s idempotency.Store)
	}{
		{"AcquireFresh", testAcquireFresh},
		{"RaceOneWinner", testRaceOneWinner},
		{"CompleteReplaysIdentical", testCompleteReplays},
		{"MismatchInFlight", testMismatchInFlight},
		{"MismatchCompleted", testMismatchCompleted},
		{"MismatchLeaseExpired", testMismatchLeaseExpired},
		{"EmptyFingerprint", testEmptyFingerprint},
		{"InFlightRetryAfter", testInFlightRetryAfter},
		{"ExpiredLeaseIsNotTakenOver", testLeaseExpired},
		{"ExpiredLeaseRaceReportsExpired", testLeaseExpiredRace},
		{"ExpiredLeaseTakeoverFencesOldToken", testTakeover},
		{"TakeoverRaceOneWinner", testTakeoverRace},
		{"ExtendKeepsClaim", testExtend},
		{"ExtendPastRetentionKeepsClaim", testExtendPastRetention},
		{"LeaseLongerThanRetentionKeepsClaim", testLeaseOutlivesRetention},
		{"ExtendRevivesExpiredLease", testExtendExpired},
		{"ExtendRecreatesVanishedClaim", testExtendVanished},
		{"CompleteAfterLeaseExpired", testCompleteExpired},
		{"CompleteRecreatesVanishedClaim", testCompleteVanished},
		{"ClaimKeptForRetention", testClaimRetention},
		{"RetentionExpiry", testRetentionExpiry},
		{"ReleaseIdempotent", testRelease},
		{"ReleaseExpiredOwnClaim", testReleaseExpired},
		{"ReleaseCannotDropRecord", testReleaseCompleted},
		{"CompleteOnce", testCompleteOnce},
		{"CompleteRetriedBySameToken", testCompleteRetried},
		{"LargeBodyRoundTrip", testLargeBody},
		{"MarksRoundTrip", testMarks},
		{"GetAndDelete", testGetDelete},
		{"DeleteSeenDeletesWhatWasRead", testDeleteSeen},
		{"DeleteSeenLeavesAChangedEntry", testDeleteSeenChanged},
		{"KeysIndependent", testKeysIndependent},
		{"InvalidClaimRefused", testInvalidClaim},
		{"ContextCancelled", testContextCancelled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if !bubble {
				c.fn(t, newStore(t))
				return
			}
			synctest.Test(t, func(t *testing.T) { c.fn(t, newStore(t)) })
		})
	}
}

// NewKey returns a random key shaped like the engine's storage keys.
func NewKey() string {
	return idempotency.StorageKey("storetest", idempotency.NewToken())
}

// NewClaim returns a claim on a new random key with a fresh token.
func NewClaim(fp string, lease, keep time.Duration) idempotency.Claim {
	return idempotency.Claim{Key: NewKey(), Token: idempotency.NewToken(), Fingerprint: fp, Lease: lease, Retention: keep}
}

// another is c presented by another execution (same key, new token).
func another(c idempotency.Claim, fp string) idempotency.Claim {
	c.Token, c.Fingerprint = idempotency.NewToken(), fp
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func acquire(t *testing.T, s idempotency.Store, c idempotency.Claim, o idempotency.AcquireOptions, want idempotency.State) idempotency.AcquireResult {
	t.Helper()
	res, err := s.Acquire(ctx(t), c, o)
	require.NoError(t, err)
	require.Equal(t, want.String(), res.State.String(), "Acquire outcome")
	return res
}

// claim acquires a new claim on a fresh key.
func claim(t *testing.T, s idempotency.Store, fp string, lease, keep time.Duration) idempotency.Claim {
	t.Helper()
	c := NewClaim(fp, lease, keep)
	acquire(t, s, c, noTakeover, idempotency.Acquired)
	return c
}

// expiredClaim acquires a claim of shortLease on a fresh key and lets its
// lease run out.
func expiredClaim(t *testing.T, s idempotency.Store) idempotency.Claim {
	t.Helper()
	c := claim(t, s, "fp", shortLease, retention)
	time.Sleep(shortLease + slack)
	return c
}

// wantForgotten checks c's key is gone (why says why it must be) and a new
// claim with fingerprint fp acquires it.
func wantForgotten(t *testing.T, s idempotency.Store, c idempotency.Claim, fp, why string) {
	t.Helper()
	_, err := s.Get(ctx(t), c.Key)
	require.ErrorIs(t, err, idempotency.ErrNotFound, why)
	acquire(t, s, another(c, fp), noTakeover, idempotency.Acquired)
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
	assert.Equal(t, want.Mark.String(), got.Mark.String())
	assert.True(t, want.CreatedAt.Equal(got.CreatedAt), "created_at %v vs %v", want.CreatedAt, got.CreatedAt)
}

func testAcquireFresh(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "fp", longLease, retention)
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.InFlight)
}

// race runs n Acquires of c's key, each with its own token, at once, and
// returns the outcomes.
func race(t *testing.T, s idempotency.Store, c idempotency.Claim, o idempotency.AcquireOptions, n int) map[idempotency.State]int {
	var wg sync.WaitGroup
	start := make(chan struct{})
	outcomes := make([]idempotency.State, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := s.Acquire(context.Background(), another(c, c.Fingerprint), o)
			outcomes[i], errs[i] = res.State, err
		}()
	}
	close(start)
	wg.Wait()
	got := map[idempotency.State]int{}
	for i := range n {
		require.NoError(t, errs[i])
		got[outcomes[i]]++
	}
	return got
}

func testRaceOneWinner(t *testing.T, s idempotency.Store) {
	got := race(t, s, NewClaim("fp", longLease, retention), noTakeover, 100)
	require.Equal(t, map[idempotency.State]int{idempotency.Acquired: 1, idempotency.InFlight: 99}, got, "exactly one goroutine must acquire")
}

func testCompleteReplays(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "fp", longLease, retention)
	require.NoError(t, s.Complete(ctx(t), c, sampleRecord()))
	for range 2 {
		got := acquire(t, s, another(c, "fp"), noTakeover, idempotency.Completed)
		requireSameRecord(t, sampleRecord(), got.Record)
	}
}

func testMismatchInFlight(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "fp-a", longLease, retention)
	acquire(t, s, another(c, "fp-b"), noTakeover, idempotency.Mismatch)
	// The mismatch changed nothing: the owner can still complete.
	require.NoError(t, s.Complete(ctx(t), c, sampleRecord()))
}

func testMismatchCompleted(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "fp-a", longLease, retention)
	require.NoError(t, s.Complete(ctx(t), c, sampleRecord()))
	acquire(t, s, another(c, "fp-b"), noTakeover, idempotency.Mismatch)
	got := acquire(t, s, another(c, "fp-a"), noTakeover, idempotency.Completed)
	requireSameRecord(t, sampleRecord(), got.Record)
}

func testMismatchLeaseExpired(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "fp-a", shortLease, retention)
	time.Sleep(shortLease + slack)
	acquire(t, s, another(c, "fp-b"), takeover, idempotency.Mismatch)
	acquire(t, s, another(c, "fp-a"), noTakeover, idempotency.LeaseExpired)
}

func testEmptyFingerprint(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "", longLease, retention)
	acquire(t, s, another(c, ""), noTakeover, idempotency.InFlight)
	acquire(t, s, another(c, "x"), noTakeover, idempotency.Mismatch)
}

func testInFlightRetryAfter(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "fp", longLease, retention)
	res := acquire(t, s, another(c, "fp"), noTakeover, idempotency.InFlight)
	assert.Greater(t, res.RetryAfter, longLease-2*time.Second)
	assert.LessOrEqual(t, res.RetryAfter, longLease)
	assert.Nil(t, res.Record)
}

func testRetentionExpiry(t *testing.T, s idempotency.Store) {
	c := NewClaim("fp", longLease, shortLease)
	c.Lease = shortLease / 2
	acquire(t, s, c, noTakeover, idempotency.Acquired)
	require.NoError(t, s.Complete(ctx(t), c, sampleRecord()))
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.Completed)
	time.Sleep(shortLease + slack)
	wantForgotten(t, s, c, "other-fp", "expired records are absent on read")
}

func testRelease(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "fp", longLease, retention)
	x := ctx(t)
	require.NoError(t, s.Release(x, c))
	require.NoError(t, s.Release(x, c), "second release is a no-op")
	require.NoError(t, s.Release(x, NewClaim("fp", longLease, retention)), "releasing an absent key is a no-op")
	next := another(c, "other-fp")
	acquire(t, s, next, noTakeover, idempotency.Acquired)
	require.ErrorIs(t, s.Release(x, c), idempotency.ErrLeaseLost, "old token cannot release the new claim")
	acquire(t, s, another(c, "other-fp"), noTakeover, idempotency.InFlight)
	require.NoError(t, s.Release(x, next))
}

func testReleaseCompleted(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "fp", longLease, retention)
	require.NoError(t, s.Complete(ctx(t), c, sampleRecord()))
	require.ErrorIs(t, s.Release(ctx(t), c), idempotency.ErrLeaseLost)
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.Completed)
}

func testCompleteOnce(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "fp", longLease, retention)
	require.NoError(t, s.Complete(ctx(t), c, sampleRecord()))
	other := sampleRecord()
	other.Status = 500
	require.NoError(t, s.Complete(ctx(t), c, other), "the token that completed the key is told it did")
	require.ErrorIs(t, s.Complete(ctx(t), another(c, "fp"), other), idempotency.ErrLeaseLost, "another token cannot complete it")
	got := acquire(t, s, another(c, "fp"), noTakeover, idempotency.Completed)
	requireSameRecord(t, sampleRecord(), got.Record) // a completed key is never overwritten
}

// A Complete whose reply was lost (a timeout while the store stalled, the
// call landing once it resumed) is retried with the same claim and record:
// the retry must succeed, not report the key as another request's, and a
// Release by that token must not drop the record.
func testCompleteRetried(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "fp", longLease, retention)
	x := ctx(t)
	require.NoError(t, s.Complete(x, c, sampleRecord()))
	require.NoError(t, s.Complete(x, c, sampleRecord()), "the retry of a Complete that landed")
	e, err := s.Get(x, c.Key)
	require.NoError(t, err)
	assert.Equal(t, idempotency.Completed.String(), e.State.String())
	requireSameRecord(t, sampleRecord(), e.Record)
	require.ErrorIs(t, s.Complete(x, another(c, "fp"), sampleRecord()), idempotency.ErrLeaseLost, "another token")
	require.ErrorIs(t, s.Release(x, c), idempotency.ErrLeaseLost, "a record is never released, even by its own token")
	require.ErrorIs(t, s.Extend(x, c), idempotency.ErrLeaseLost, "nor turned back into a claim")
	got := acquire(t, s, another(c, "fp"), noTakeover, idempotency.Completed)
	requireSameRecord(t, sampleRecord(), got.Record)

	// The same after the claim vanished: the record Complete re-creates
	// keeps the token too.
	v := claim(t, s, "fp", longLease, retention)
	require.NoError(t, s.Delete(x, v.Key, nil))
	require.NoError(t, s.Complete(x, v, sampleRecord()))
	require.NoError(t, s.Complete(x, v, sampleRecord()))
	require.ErrorIs(t, s.Complete(x, another(v, "fp"), sampleRecord()), idempotency.ErrLeaseLost)
}

func testLargeBody(t *testing.T, s idempotency.Store) {
	rec := sampleRecord()
	rec.Body = make([]byte, idempotency.DefaultPolicy().MaxResponseBody)
	_, _ = rand.Read(rec.Body)
	c := claim(t, s, "fp", longLease, retention)
	require.NoError(t, s.Complete(ctx(t), c, rec))
	got := acquire(t, s, another(c, "fp"), noTakeover, idempotency.Completed)
	requireSameRecord(t, rec, got.Record)
}

func testKeysIndependent(t *testing.T, s idempotency.Store) {
	a, b := claim(t, s, "fp", longLease, retention), claim(t, s, "fp", longLease, retention)
	require.NoError(t, s.Complete(ctx(t), a, sampleRecord()))
	acquire(t, s, another(b, "fp"), noTakeover, idempotency.InFlight)
}

func testInvalidClaim(t *testing.T, s idempotency.Store) {
	for name, mutate := range map[string]func(*idempotency.Claim){
		"zero lease":     func(c *idempotency.Claim) { c.Lease = 0 },
		"negative lease": func(c *idempotency.Claim) { c.Lease = -time.Second },
		"zero retention": func(c *idempotency.Claim) { c.Retention = 0 },
		"empty token":    func(c *idempotency.Claim) { c.Token = "" },
	} {
		c := NewClaim("fp", longLease, retention)
		mutate(&c)
		_, err := s.Acquire(ctx(t), c, noTakeover)
		require.ErrorIs(t, err, idempotency.ErrInvalidClaim, name)
		require.ErrorIs(t, s.Extend(ctx(t), c), idempotency.ErrInvalidClaim, name)
		require.ErrorIs(t, s.Complete(ctx(t), c, sampleRecord()), idempotency.ErrInvalidClaim, name)
		_, err = s.Get(ctx(t), c.Key)
		require.ErrorIs(t, err, idempotency.ErrNotFound, "%s: nothing was stored", name)
	}
}

func testContextCancelled(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "fp", longLease, retention)
	x, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]func() error{
		"Acquire":  func() error { _, err := s.Acquire(x, NewClaim("fp", longLease, retention), noTakeover); return err },
		"Complete": func() error { return s.Complete(x, c, sampleRecord()) },
		"Release":  func() error { return s.Release(x, c) },
		"Extend":   func() error { return s.Extend(x, c) },
		"Get":      func() error { _, err := s.Get(x, c.Key); return err },
		"Delete":   func() error { return s.Delete(x, c.Key, nil) },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		require.Error(t, err, name)
		assert.True(t, errors.Is(err, context.Canceled), "%s: %v does not wrap context.Canceled", name, err)
		assert.Less(t, time.Since(start), time.Second, "%s must return promptly", name)
	}
	// Nothing above took effect.
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.InFlight)
}
