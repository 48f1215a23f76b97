package admin_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// racyStore runs meanwhile once, right after the first Get has read the
// entry: the key changes between a purge's inspection and its deletion.
// meanwhile runs on the API's goroutine, so it asserts, never requires.
type racyStore struct {
	idempotency.Store
	mu        sync.Mutex
	meanwhile func()
	always    bool // after every Get, not only the first
}

func (s *racyStore) Get(ctx context.Context, key string) (*idempotency.Entry, error) {
	e, err := s.Store.Get(ctx, key)
	s.mu.Lock()
	f := s.meanwhile
	if !s.always {
		s.meanwhile = nil
	}
	s.mu.Unlock()
	if f != nil {
		f()
	}
	return e, err
}

// racyFixture is an API over a racyStore and an engine on the same
// memstore and clock; the engine's lease on rawKey is returned.
func racyFixture(t *testing.T) (*fixture, *racyStore, *idempotency.Lease) {
	c := &clock{now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	ms := memstore.New(memstore.Options{Now: c.Now})
	t.Cleanup(func() { _ = ms.Close() })
	rs := &racyStore{Store: ms}
	f := newFixture(t, setup{store: rs})
	f.clock = c
	f.eng = idempotency.New(ms, idempotency.WithClock(c.Now, func(context.Context, time.Duration) error { return nil }))
	return f, rs, f.begin(t, rawKey)
}

func (f *fixture) requireState(t *testing.T, l *idempotency.Lease, want idempotency.State) {
	t.Helper()
	e, err := f.store.Get(context.Background(), l.StorageKey())
	require.NoError(t, err)
	require.Equal(t, want.String(), e.State.String())
}

func (f *fixture) requirePurgeAudit(t *testing.T, results ...string) {
	t.Helper()
	var got []string
	for _, rec := range f.logs.records(t, "admin: purge") {
		got = append(got, rec["result"].(string))
	}
	require.Equal(t, results, got, "one audit record per purge, for what it did")
}

// A claim seen with its lease run out is renewed by its holder before the
// delete: it is running again, so the purge without force is refused.
func TestPurgeRaceRenewedClaimIsRefused(t *testing.T) {
	f, rs, l := racyFixture(t)
	f.clock.Advance(f.pol.Lease + time.Second)
	f.requireState(t, l, idempotency.LeaseExpired)
	held := claimOf(t, rs.Store, f.pol, l)
	rs.meanwhile = func() { assert.NoError(t, rs.Store.Extend(context.Background(), held)) } // the holder's renewal

	a := f.purge(t, "", keyBody())
	requireProblem(t, a, http.StatusConflict, "admin-purge-refused")
	require.Equal(t, "in_flight", a.str("state"))
	f.requireState(t, l, idempotency.InFlight)
	f.requirePurgeAudit(t, "refused")
	require.Zero(t, f.counter(t, "gopotency_admin_purges_total"))
}

// A record seen is replaced by a new request's claim (purged elsewhere, or
// its retention ran out) before the delete: the new claim is live, so the
// purge without force is refused and the new claim stays.
func TestPurgeRaceNewClaimIsRefused(t *testing.T) {
	f, rs, l := racyFixture(t)
	require.NoError(t, l.Complete(context.Background(), &idempotency.Record{Status: 201, Body: []byte(`{"id":7}`)}))
	var mu sync.Mutex // meanwhile runs on the API's goroutine
	var next *idempotency.Lease
	rs.meanwhile = func() {
		assert.NoError(t, rs.Store.Delete(context.Background(), l.StorageKey(), nil))
		mu.Lock()
		next = f.eng.Begin(context.Background(), f.pol, request(rawKey)).Lease
		mu.Unlock()
	}

	a := f.purge(t, "", keyBody())
	requireProblem(t, a, http.StatusConflict, "admin-purge-refused")
	mu.Lock()
	defer mu.Unlock()
	require.NotNil(t, next, "the new request claimed the key")
	f.requireState(t, next, idempotency.InFlight)
	require.NoError(t, next.Complete(context.Background(), &idempotency.Record{Status: 201}), "the new claim is still its holder's")
	f.requirePurgeAudit(t, "refused")
}

// A claim seen in flight completes before the delete: a forced purge
// deletes the record, and says it deleted a record, not a running claim.
func TestPurgeRaceCompletedClaimIsReportedAsARecord(t *testing.T) {
	f, rs, l := racyFixture(t)
	rs.meanwhile = func() {
		assert.NoError(t, l.Complete(context.Background(), &idempotency.Record{Status: 201, Body: []byte(`{"id":7}`)}))
	}

	a := f.purge(t, "?force=true", keyBody())
	require.Equal(t, http.StatusOK, a.status, a.raw)
	require.Equal(t, true, a.get("purged"))
	require.Equal(t, "completed", a.str("previous.state"))
	require.Nil(t, a.get("forced"), "force did not matter: no running claim was purged")
	require.Empty(t, a.str("warning"))
	_, err := f.store.Get(context.Background(), l.StorageKey())
	require.ErrorIs(t, err, idempotency.ErrNotFound)
	f.requirePurgeAudit(t, "purged")
	audit := f.logs.records(t, "admin: purge")
	require.Equal(t, "completed", audit[0]["previous_state"])
	require.Equal(t, "INFO", audit[0]["level"])
	require.EqualValues(t, 1, f.counter(t, "gopotency_admin_purges_total", "state", "completed", "mark", "none"))
}

// A key that changes after every inspection is not purged at all: the
// purge gives up after a few rounds with a 503, having deleted nothing.
func TestPurgeRaceGivesUpOnAChurningKey(t *testing.T) {
	f, rs, l := racyFixture(t)
	var mu sync.Mutex // meanwhile runs on the API's goroutine
	last, rounds := l, 0
	rs.always = true
	rs.meanwhile = func() {
		assert.NoError(t, rs.Store.Delete(context.Background(), l.StorageKey(), nil))
		mu.Lock()
		defer mu.Unlock()
		rounds++
		last = f.eng.Begin(context.Background(), f.pol, request(rawKey)).Lease
	}

	a := f.purge(t, "?force=true", keyBody())
	requireProblem(t, a, http.StatusServiceUnavailable, "store-unavailable")
	rs.mu.Lock()
	rs.meanwhile = nil // the checks below read the key too
	rs.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 5, rounds)
	require.NotNil(t, last)
	f.requireState(t, last, idempotency.InFlight)
	require.NoError(t, last.Complete(context.Background(), &idempotency.Record{Status: 201}), "the last claim is untouched")
	f.requirePurgeAudit(t, "failed")
	require.Zero(t, f.counter(t, "gopotency_admin_purges_total"))
}
