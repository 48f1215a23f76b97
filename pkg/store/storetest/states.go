package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// The cases for leases that ran out, claims that vanished, and records
// that are not replayable responses.

func testLeaseExpired(t *testing.T, s idempotency.Store) {
	c := expiredClaim(t, s)
	// The holder stopped renewing: its request may have run, so the key
	// is not up for grabs.
	for range 2 {
		acquire(t, s, another(c, "fp"), noTakeover, idempotency.LeaseExpired)
	}
	e, err := s.Get(ctx(t), c.Key)
	require.NoError(t, err)
	assert.Equal(t, idempotency.LeaseExpired.String(), e.State.String())
	assert.WithinDuration(t, time.Now().Add(retention), e.ExpiresAt, 2*time.Second, "a claim is kept for the retention")
}

func testLeaseExpiredRace(t *testing.T, s idempotency.Store) {
	c := expiredClaim(t, s)
	got := race(t, s, c, noTakeover, 50)
	require.Equal(t, map[idempotency.State]int{idempotency.LeaseExpired: 50}, got)
}

func testTakeover(t *testing.T, s idempotency.Store) {
	old := expiredClaim(t, s)
	cur := another(old, "fp")
	cur.Lease = longLease
	acquire(t, s, cur, takeover, idempotency.Acquired)
	x := ctx(t)
	require.ErrorIs(t, s.Complete(x, old, sampleRecord()), idempotency.ErrLeaseLost)
	require.ErrorIs(t, s.Extend(x, old), idempotency.ErrLeaseLost)
	require.ErrorIs(t, s.Release(x, old), idempotency.ErrLeaseLost)
	// The new owner was not disturbed by any of that.
	acquire(t, s, another(old, "fp"), takeover, idempotency.InFlight)
	require.NoError(t, s.Complete(x, cur, sampleRecord()))
	acquire(t, s, another(old, "fp"), takeover, idempotency.Completed)
}

func testTakeoverRace(t *testing.T, s idempotency.Store) {
	c := expiredClaim(t, s)
	c.Lease = longLease
	got := race(t, s, c, takeover, 50)
	require.Equal(t, map[idempotency.State]int{idempotency.Acquired: 1, idempotency.InFlight: 49}, got, "one taker")
}

func testExtend(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "fp", shortLease, retention)
	for range 5 {
		time.Sleep(shortLease / 3)
		require.NoError(t, s.Extend(ctx(t), c))
	}
	// Total elapsed is well past the original lease.
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.InFlight)
	require.NoError(t, s.Complete(ctx(t), c, sampleRecord()))
	require.ErrorIs(t, s.Extend(ctx(t), c), idempotency.ErrLeaseLost, "a completed key cannot be extended")
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.Completed)
}

func testExtendPastRetention(t *testing.T, s idempotency.Store) {
	// A request running longer than the retention must not lose its
	// claim while it renews it.
	c := claim(t, s, "fp", shortLease, shortLease)
	deadline := time.Now().Add(3 * shortLease)
	for time.Now().Before(deadline) {
		time.Sleep(shortLease / 3)
		require.NoError(t, s.Extend(ctx(t), c))
	}
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.InFlight)
}

func testLeaseOutlivesRetention(t *testing.T, s idempotency.Store) {
	// A claim is kept while its lease runs, even when the retention it
	// was given is shorter (the contract allows it; policies do not).
	c := claim(t, s, "fp", 4*shortLease, shortLease)
	time.Sleep(shortLease + slack)
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.InFlight)
}

func testExtendExpired(t *testing.T, s idempotency.Store) {
	expiredHolderMay(t, s, s.Extend, "nobody took the key over: the holder may renew late", idempotency.InFlight)
}

// expiredHolderMay checks the holder of a claim whose lease ran out, which
// nobody took over, may still act on it (why says why), after which
// another request finds the key in state then.
func expiredHolderMay(t *testing.T, s idempotency.Store, act func(context.Context, idempotency.Claim) error, why string, then idempotency.State) {
	t.Helper()
	c := expiredClaim(t, s)
	require.NoError(t, act(ctx(t), c), why)
	acquire(t, s, another(c, "fp"), noTakeover, then)
}

func testExtendVanished(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "fp", longLease, retention)
	require.NoError(t, s.Delete(ctx(t), c.Key, nil)) // as a restart without persistence would
	require.NoError(t, s.Extend(ctx(t), c), "a vanished claim is re-created")
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.InFlight)
	acquire(t, s, another(c, "other"), noTakeover, idempotency.Mismatch)
	e, err := s.Get(ctx(t), c.Key)
	require.NoError(t, err)
	assert.Equal(t, idempotency.InFlight.String(), e.State.String())
	require.NoError(t, s.Complete(ctx(t), c, sampleRecord()), "the re-created claim is the holder's")
}

func testCompleteExpired(t *testing.T, s idempotency.Store) {
	c := expiredClaim(t, s)
	require.NoError(t, s.Complete(ctx(t), c, sampleRecord()))
	got := acquire(t, s, another(c, "fp"), noTakeover, idempotency.Completed)
	requireSameRecord(t, sampleRecord(), got.Record)
}

func testCompleteVanished(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "fp", longLease, retention)
	require.NoError(t, s.Delete(ctx(t), c.Key, nil))
	require.NoError(t, s.Complete(ctx(t), c, sampleRecord()))
	got := acquire(t, s, another(c, "fp"), noTakeover, idempotency.Completed)
	requireSameRecord(t, sampleRecord(), got.Record)
	acquire(t, s, another(c, "other"), noTakeover, idempotency.Mismatch)
}

func testClaimRetention(t *testing.T, s idempotency.Store) {
	c := claim(t, s, "fp", shortLease/3, shortLease*2)
	time.Sleep(shortLease/3 + slack/2)
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.LeaseExpired)
	time.Sleep(2*shortLease + slack)
	wantForgotten(t, s, c, "fp", "a dead claim is forgotten after its retention")
}

func testReleaseExpired(t *testing.T, s idempotency.Store) {
	expiredHolderMay(t, s, s.Release, "the holder of an expired claim may still release it", idempotency.Acquired)
}

func testMarks(t *testing.T, s idempotency.Store) {
	created := time.UnixMilli(time.Now().UnixMilli())
	for _, rec := range []*idempotency.Record{
		{Status: 200, Mark: idempotency.MarkTooLarge, CreatedAt: created},
		{Status: 201, Mark: idempotency.MarkIncomplete, Headers: []idempotency.Header{{Name: "Location", Value: "/orders/7"}}, CreatedAt: created},
		{Mark: idempotency.MarkUnknown, CreatedAt: created},
		{Status: 202, Mark: idempotency.MarkEvicted, CreatedAt: created},
	} {
		c := claim(t, s, "fp", longLease, retention)
		require.NoError(t, s.Complete(ctx(t), c, rec), rec.Mark.String())
		got := acquire(t, s, another(c, "fp"), noTakeover, idempotency.Completed)
		requireSameRecord(t, rec, got.Record)
		e, err := s.Get(ctx(t), c.Key)
		require.NoError(t, err)
		requireSameRecord(t, rec, e.Record)
	}
}

func testGetDelete(t *testing.T, s idempotency.Store) {
	x := ctx(t)
	c := NewClaim("fp", longLease, retention)
	_, err := s.Get(x, c.Key)
	require.ErrorIs(t, err, idempotency.ErrNotFound)
	acquire(t, s, c, noTakeover, idempotency.Acquired)
	e, err := s.Get(x, c.Key)
	require.NoError(t, err)
	assert.Equal(t, idempotency.InFlight.String(), e.State.String())
	assert.Equal(t, "fp", e.Fingerprint)
	assert.WithinDuration(t, time.Now().Add(longLease), e.LeaseExpiresAt, 2*time.Second)
	assert.WithinDuration(t, time.Now().Add(retention), e.ExpiresAt, 2*time.Second)
	require.NoError(t, s.Complete(x, c, sampleRecord()))
	e, err = s.Get(x, c.Key)
	require.NoError(t, err)
	assert.Equal(t, idempotency.Completed.String(), e.State.String())
	requireSameRecord(t, sampleRecord(), e.Record)
	assert.WithinDuration(t, time.Now().Add(retention), e.ExpiresAt, 2*time.Second)
	require.NoError(t, s.Delete(x, c.Key, nil))
	_, err = s.Get(x, c.Key)
	require.ErrorIs(t, err, idempotency.ErrNotFound)
	require.NoError(t, s.Delete(x, c.Key, nil), "deleting an absent key is a no-op")
	acquire(t, s, another(c, "new-fp"), noTakeover, idempotency.Acquired)
}

// get reads key's entry, which must be there.
func get(t *testing.T, s idempotency.Store, key string) *idempotency.Entry {
	t.Helper()
	e, err := s.Get(ctx(t), key)
	require.NoError(t, err)
	return e
}

// An admin purge hands Delete the entry it inspected: in every state, that
// entry is deleted, and Get names its token so it can be told apart.
func testDeleteSeen(t *testing.T, s idempotency.Store) {
	x := ctx(t)
	c := claim(t, s, "fp", longLease, retention)
	seen := get(t, s, c.Key)
	assert.Equal(t, c.Token, seen.Token, "a claim's token")
	require.NoError(t, s.Delete(x, c.Key, seen), "in flight")
	_, err := s.Get(x, c.Key)
	require.ErrorIs(t, err, idempotency.ErrNotFound)

	c = claim(t, s, "fp", longLease, retention)
	require.NoError(t, s.Complete(x, c, sampleRecord()))
	seen = get(t, s, c.Key)
	assert.Equal(t, c.Token, seen.Token, "a record keeps its claim's token")
	require.NoError(t, s.Delete(x, c.Key, seen), "completed")
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.Acquired)

	c = expiredClaim(t, s)
	seen = get(t, s, c.Key)
	require.Equal(t, idempotency.LeaseExpired.String(), seen.State.String())
	require.NoError(t, s.Delete(x, c.Key, seen), "lease expired")
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.Acquired)
}

// Between an inspection and its Delete the key can change; Delete then
// deletes nothing it was not shown and says the entry seen is gone.
func testDeleteSeenChanged(t *testing.T, s idempotency.Store) {
	x := ctx(t)
	gone := func(key string, seen *idempotency.Entry, msg string) {
		t.Helper()
		require.ErrorIs(t, s.Delete(x, key, seen), idempotency.ErrNotFound, msg)
	}

	// The claim completed: its record stays.
	c := claim(t, s, "fp", longLease, retention)
	seen := get(t, s, c.Key)
	require.NoError(t, s.Complete(x, c, sampleRecord()))
	gone(c.Key, seen, "a claim that completed since")
	requireSameRecord(t, sampleRecord(), acquire(t, s, another(c, "fp"), noTakeover, idempotency.Completed).Record)

	// The record was purged and a new request claimed the key.
	seen = get(t, s, c.Key)
	require.NoError(t, s.Delete(x, c.Key, nil))
	next := another(c, "fp")
	acquire(t, s, next, noTakeover, idempotency.Acquired)
	gone(c.Key, seen, "a record replaced by a new claim")
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.InFlight)

	// The key is absent.
	require.NoError(t, s.Release(x, next))
	gone(c.Key, seen, "an absent key")

	// A claim whose lease ran out was renewed by its holder, or taken over.
	c = expiredClaim(t, s)
	seen = get(t, s, c.Key)
	require.NoError(t, s.Extend(x, c))
	gone(c.Key, seen, "an expired claim renewed since")
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.InFlight)
	time.Sleep(shortLease + slack)
	seen = get(t, s, c.Key)
	taker := another(c, "fp")
	taker.Lease = longLease
	acquire(t, s, taker, takeover, idempotency.Acquired)
	gone(c.Key, seen, "an expired claim taken over since")
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.InFlight)

	// A claim seen in flight whose lease has run out since is not the
	// entry seen either (the caller looks again).
	c = claim(t, s, "fp", shortLease, retention)
	seen = get(t, s, c.Key)
	time.Sleep(shortLease + slack)
	gone(c.Key, seen, "a claim whose lease ran out since")
	acquire(t, s, another(c, "fp"), noTakeover, idempotency.LeaseExpired)
}
