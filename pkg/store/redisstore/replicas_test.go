package redisstore

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
	"github.com/gopotency/gopotency/pkg/store/storetest"
)

// replicaOf makes r a replica of master and waits until it is in sync.
func replicaOf(t testing.TB, r, master *testenv.RedisServer) {
	t.Helper()
	host, port, _ := net.SplitHostPort(master.Addr)
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	require.NoError(t, c.ReplicaOf(context.Background(), host, port).Err())
	require.Eventually(t, func() bool {
		info, _ := c.Info(context.Background(), "replication").Result()
		return infoFields(info)["master_link_status"] == "up"
	}, 10*time.Second, 20*time.Millisecond)
}

// A claim is acquired only once a replica holds it: read straight from the
// replica after Acquire returns, it is there. With the replica detached,
// Acquire answers ErrStoreUnavailable within the call's deadline and the
// claim is gone from the master (nothing ran, a retry may run).
func TestReplicasConfirmClaims(t *testing.T) {
	master, replica := testenv.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always"), testenv.StartRedis(t)
	replicaOf(t, replica, master)
	s, err := NewFromURL(context.Background(), master.URL()+"?replicas=1", Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	summary, ok := s.Durability()
	assert.True(t, ok, summary)
	assert.Contains(t, summary, "confirmed on 1 of its 1 replicas")
	assert.Contains(t, summary, "appendfsync always")

	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	t.Cleanup(func() { _ = rc.Close() })
	for range 20 {
		c := storetest.NewClaim("fp", 30*time.Second, time.Hour)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res, err := s.Acquire(ctx, c, idempotency.AcquireOptions{})
		cancel()
		require.NoError(t, err)
		require.Equal(t, idempotency.Acquired, res.State)
		tok, err := rc.HGet(context.Background(), s.Key(c.Key), "t").Result()
		require.NoError(t, err, "the claim is on the replica when Acquire returns")
		require.Equal(t, c.Token, tok)
	}

	// Detached: no replica can confirm.
	require.NoError(t, rc.ReplicaOf(context.Background(), "no", "one").Err())
	c := storetest.NewClaim("fp", 30*time.Second, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Acquire(ctx, c, idempotency.AcquireOptions{})
	require.ErrorIs(t, err, idempotency.ErrStoreUnavailable)
	require.ErrorIs(t, err, errUnconfirmed)
	assert.Less(t, time.Since(start), 400*time.Millisecond, "answered within the call's deadline")
	// The engine gives an unconfirmed claim back (releaseOrphan), off the
	// request's path; the claim's token still owns it.
	require.NoError(t, s.Release(context.Background(), c))
	_, err = s.Get(context.Background(), c.Key)
	require.ErrorIs(t, err, idempotency.ErrNotFound)

	// Attached again: claims are confirmed again.
	replicaOf(t, replica, master)
	res, err := s.Acquire(context.Background(), c, idempotency.AcquireOptions{})
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, res.State)
}

// What the store says at start about failovers and restarts, and the
// replicas option's parsing and default.
func TestDurabilityAtStart(t *testing.T) {
	lone := testenv.StartRedis(t)
	s, err := NewFromURL(context.Background(), lone.URL(), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	summary, ok := s.Durability()
	assert.False(t, ok)
	assert.Contains(t, summary, "no replicas; no AOF: a restart of the master loses the records")

	everysec := testenv.StartRedis(t, "--appendonly", "yes")
	s, err = NewFromURL(context.Background(), everysec.URL(), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	summary, ok = s.Durability()
	assert.False(t, ok, summary)
	assert.Contains(t, summary, "appendfsync everysec: a crash of the master can lose about the last second")

	aof := testenv.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	s, err = NewFromURL(context.Background(), aof.URL(), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	summary, ok = s.Durability()
	assert.True(t, ok, summary)
	assert.Contains(t, summary, "no replicas; AOF with appendfsync always")

	replica := testenv.StartRedis(t)
	replicaOf(t, replica, lone)
	s, err = NewFromURL(context.Background(), lone.URL(), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	summary, ok = s.Durability()
	assert.False(t, ok)
	assert.Contains(t, summary, "set replicas=1")

	s, err = NewFromURL(context.Background(), aof.URL()+"?replicas=1", Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	summary, ok = s.Durability()
	assert.False(t, ok)
	assert.Contains(t, summary, "replicas=1 but 0 replicas are connected")

	for raw, want := range map[string]int{
		"redis://h/?replicas=2":                        2,
		"redis://h/":                                   0,
		"redis+cluster://a:1,b:2":                      0,
		"redis+sentinel://s:26379/mymaster":            1,
		"redis+sentinel://s:26379/mymaster?replicas=0": 0,
	} {
		_, ex, err := parseURLExtras(raw)
		require.NoError(t, err, raw)
		assert.Equal(t, want, ex.replicas, raw)
	}
	for _, bad := range []string{"redis://h/?replicas=-1", "redis://h/?replicas=one"} {
		_, _, err := parseURLExtras(bad)
		require.ErrorContains(t, err, "replicas", bad)
	}
}

// go-redis sends a pipeline again when its connection drops: the acquire
// script then meets its own claim and must answer acquired (re-writing
// it, so a WAIT on the new connection has a write to confirm), not in
// flight, which would leave a claim nobody owns.
func TestAcquireSentAgainIsAcquired(t *testing.T) {
	s := newStore(t, redisClient(t))
	c := storetest.NewClaim("fp", 30*time.Second, time.Hour)
	for range 2 {
		res, err := s.Acquire(context.Background(), c, idempotency.AcquireOptions{})
		require.NoError(t, err)
		require.Equal(t, idempotency.Acquired, res.State)
	}
	other := c
	other.Token = idempotency.NewToken()
	res, err := s.Acquire(context.Background(), other, idempotency.AcquireOptions{})
	require.NoError(t, err)
	require.Equal(t, idempotency.InFlight, res.State, "another token still waits")
}
