package replaycache_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
	"github.com/gopotency/gopotency/pkg/store/replaycache"
	"github.com/gopotency/gopotency/pkg/store/storetest"
)

// The cache is a Store: it passes the whole conformance suite.
func TestConformance(t *testing.T) {
	storetest.RunSynctest(t, func(t *testing.T) idempotency.Store {
		m := memstore.New(memstore.Options{})
		t.Cleanup(func() { _ = m.Close() })
		return replaycache.New(m, replaycache.Options{})
	})
}

// counting counts the Acquires that reach the store.
type counting struct {
	idempotency.Store
	acquires atomic.Int64
}

func (c *counting) Acquire(ctx context.Context, cl idempotency.Claim, o idempotency.AcquireOptions) (idempotency.AcquireResult, error) {
	c.acquires.Add(1)
	return c.Store.Acquire(ctx, cl, o)
}

func setup(t *testing.T) (*memstore.Store, *counting, *replaycache.Store, *time.Time) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	m := memstore.New(memstore.Options{Now: clock})
	t.Cleanup(func() { _ = m.Close() })
	inner := &counting{Store: m}
	return m, inner, replaycache.New(inner, replaycache.Options{TTL: 5 * time.Second, Now: clock}), &now
}

func TestReplaysComeFromMemoryUntilTheTTL(t *testing.T) {
	_, inner, s, now := setup(t)
	ctx := context.Background()
	c := storetest.NewClaim("fp", time.Minute, time.Hour)
	_, err := s.Acquire(ctx, c, idempotency.AcquireOptions{})
	require.NoError(t, err)
	require.NoError(t, s.Complete(ctx, c, &idempotency.Record{Status: 201, Body: []byte("made")}))
	before := inner.acquires.Load()
	for range 10 {
		res, err := s.Acquire(ctx, retry(c, "fp"), idempotency.AcquireOptions{})
		require.NoError(t, err)
		require.Equal(t, idempotency.Completed, res.State)
		assert.Equal(t, "made", string(res.Record.Body))
	}
	res, err := s.Acquire(ctx, retry(c, "other"), idempotency.AcquireOptions{})
	require.NoError(t, err)
	assert.Equal(t, idempotency.Mismatch, res.State, "the fingerprint is checked from memory too")
	assert.Equal(t, before, inner.acquires.Load(), "no replay reached the store")

	*now = now.Add(5 * time.Second)
	res, err = s.Acquire(ctx, retry(c, "fp"), idempotency.AcquireOptions{})
	require.NoError(t, err)
	assert.Equal(t, idempotency.Completed, res.State)
	assert.Equal(t, before+1, inner.acquires.Load(), "past the TTL the store is asked again")
}

// A purge here evicts at once; a purge on another instance (straight in
// the store) is seen once the TTL ran out.
func TestPurges(t *testing.T) {
	m, _, s, now := setup(t)
	ctx := context.Background()
	c := storetest.NewClaim("fp", time.Minute, time.Hour)
	_, _ = s.Acquire(ctx, c, idempotency.AcquireOptions{})
	require.NoError(t, s.Complete(ctx, c, &idempotency.Record{Status: 201}))
	require.NoError(t, s.Delete(ctx, c.Key, nil))
	res, err := s.Acquire(ctx, retry(c, "fp"), idempotency.AcquireOptions{})
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, res.State, "purged here: runs again at once")

	d := storetest.NewClaim("fp", time.Minute, time.Hour)
	_, _ = s.Acquire(ctx, d, idempotency.AcquireOptions{})
	require.NoError(t, s.Complete(ctx, d, &idempotency.Record{Status: 201}))
	require.NoError(t, m.Delete(ctx, d.Key, nil)) // another instance purged
	res, _ = s.Acquire(ctx, retry(d, "fp"), idempotency.AcquireOptions{})
	assert.Equal(t, idempotency.Completed, res.State, "stale for at most the TTL")
	*now = now.Add(5 * time.Second)
	res, _ = s.Acquire(ctx, retry(d, "fp"), idempotency.AcquireOptions{})
	assert.Equal(t, idempotency.Acquired, res.State)
}

// Records fetched from the store are remembered only until their
// retention, whatever the TTL.
func TestRetentionBoundsTheCache(t *testing.T) {
	m, _, s, now := setup(t)
	ctx := context.Background()
	c := storetest.NewClaim("fp", time.Second, 2*time.Second)
	_, _ = m.Acquire(ctx, c, idempotency.AcquireOptions{})
	require.NoError(t, m.Complete(ctx, c, &idempotency.Record{Status: 201, CreatedAt: *now}))
	res, _ := s.Acquire(ctx, retry(c, "fp"), idempotency.AcquireOptions{})
	require.Equal(t, idempotency.Completed, res.State)
	*now = now.Add(2 * time.Second)
	res, _ = s.Acquire(ctx, retry(c, "fp"), idempotency.AcquireOptions{})
	assert.Equal(t, idempotency.Acquired, res.State, "expired with its retention")
}

func TestBytesAreBounded(t *testing.T) {
	m := memstore.New(memstore.Options{})
	defer m.Close()
	s := replaycache.New(m, replaycache.Options{MaxBytes: 100_000})
	ctx := context.Background()
	for range 100 {
		c := storetest.NewClaim("fp", time.Minute, time.Hour)
		_, _ = s.Acquire(ctx, c, idempotency.AcquireOptions{})
		require.NoError(t, s.Complete(ctx, c, &idempotency.Record{Status: 200, Body: make([]byte, 10_000)}))
	}
	entries, bytes, _ := s.Stats()
	assert.LessOrEqual(t, bytes, int64(100_000))
	assert.Positive(t, entries)
}

func retry(c idempotency.Claim, fp string) idempotency.Claim {
	c.Token, c.Fingerprint = idempotency.NewToken(), fp
	return c
}

// stalling holds an Acquire after the store answered, until released.
type stalling struct {
	idempotency.Store
	answered, release chan struct{}
}

func (s *stalling) Acquire(ctx context.Context, c idempotency.Claim, o idempotency.AcquireOptions) (idempotency.AcquireResult, error) {
	res, err := s.Store.Acquire(ctx, c, o)
	if s.answered != nil {
		s.answered <- struct{}{}
		<-s.release
	}
	return res, err
}

// A replay that read the record before this instance purged it does not
// put it back in the cache after the purge.
func TestPurgeWinsOverARacingFill(t *testing.T) {
	m := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = m.Close() })
	inner := &stalling{Store: m}
	s := replaycache.New(inner, replaycache.Options{})
	ctx := context.Background()
	c := storetest.NewClaim("fp", time.Minute, time.Hour)
	_, err := m.Acquire(ctx, c, idempotency.AcquireOptions{})
	require.NoError(t, err)
	require.NoError(t, m.Complete(ctx, c, &idempotency.Record{Status: 201, Body: []byte("made")})) // behind the cache

	inner.answered, inner.release = make(chan struct{}), make(chan struct{})
	done := make(chan idempotency.AcquireResult)
	go func() {
		res, _ := s.Acquire(ctx, retry(c, "fp"), idempotency.AcquireOptions{})
		done <- res
	}()
	<-inner.answered // the fill has the record
	require.NoError(t, s.Delete(ctx, c.Key, nil))
	close(inner.release)
	require.Equal(t, idempotency.Completed, (<-done).State, "the racing replay itself was answered")
	inner.answered = nil

	res, err := s.Acquire(ctx, retry(c, "fp"), idempotency.AcquireOptions{})
	require.NoError(t, err)
	assert.Equal(t, idempotency.Acquired, res.State, "the purged record is not served from the cache")
}

// Expired records do not pile up until MaxBytes: a steady stream of new
// records keeps about a TTL's worth of them.
func TestExpiredRecordsDoNotPileUp(t *testing.T) {
	_, _, s, now := setup(t)
	ctx := context.Background()
	for range 1000 { // 10 a second for 100 s, a TTL of 5 s
		c := storetest.NewClaim("fp", time.Minute, time.Hour)
		_, err := s.Acquire(ctx, c, idempotency.AcquireOptions{})
		require.NoError(t, err)
		require.NoError(t, s.Complete(ctx, c, &idempotency.Record{Status: 201, Body: []byte("x")}))
		*now = now.Add(100 * time.Millisecond)
	}
	entries, _, _ := s.Stats()
	assert.LessOrEqual(t, entries, 51, "about 5 s worth of records (50), not all 1000")
}
