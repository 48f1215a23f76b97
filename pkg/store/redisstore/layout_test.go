package redisstore

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// One entry is one hash, holding exactly the fields the package doc lists,
// with the deadline as its TTL.
func TestEntryIsOneHash(t *testing.T) {
	ctx := context.Background()
	c := redisClient(t)
	s := newStore(t, c)
	key := "entry"
	held := claim(key)
	_, err := s.Acquire(ctx, held, idempotency.AcquireOptions{})
	require.NoError(t, err)

	keys, err := c.Keys(ctx, s.prefix+":*").Result()
	require.NoError(t, err)
	assert.Equal(t, []string{s.prefix + ":{entry}"}, keys)
	fields, err := c.HGetAll(ctx, s.Key(key)).Result()
	require.NoError(t, err)
	lease, err := strconv.ParseInt(fields["l"], 10, 64)
	require.NoError(t, err, "l is the lease deadline in unix ms")
	assert.InDelta(t, time.Now().Add(time.Minute).UnixMilli(), lease, 5000)
	delete(fields, "l")
	assert.Equal(t, map[string]string{"f": "fp", "t": held.Token}, fields)
	ttl, err := c.PTTL(ctx, s.Key(key)).Result()
	require.NoError(t, err)
	assert.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 5, "a claim is kept for the retention; its lease is the l field")

	require.NoError(t, s.Complete(ctx, held, &idempotency.Record{Status: 201}))
	fields, err = c.HGetAll(ctx, s.Key(key)).Result()
	require.NoError(t, err)
	assert.Len(t, fields, 3)
	assert.Equal(t, "fp", fields["f"])
	assert.Equal(t, held.Token, fields["t"], "a record keeps the token that completed it")
	assert.Contains(t, fields, "r")
	ttl, err = c.PTTL(ctx, s.Key(key)).Result()
	require.NoError(t, err)
	assert.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 5)
	keys, err = c.Keys(ctx, s.prefix+":*").Result()
	require.NoError(t, err)
	assert.Len(t, keys, 1, "completing adds no key")
}

// The hash tag puts an entry in the slot of its storage key alone, whatever
// the prefix, and the entry really lives on the master serving that slot.
func TestClusterHashTag(t *testing.T) {
	ctx := context.Background()
	c := clusterClient(t)
	a, b := newStore(t, c), newStore(t, c)
	slots := map[int64]bool{}
	for _, key := range []string{"k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8"} {
		want, err := c.ClusterKeySlot(ctx, key).Result()
		require.NoError(t, err)
		slots[want] = true
		for _, s := range []*Store{a, b} {
			got, err := c.ClusterKeySlot(ctx, s.Key(key)).Result()
			require.NoError(t, err)
			assert.Equal(t, want, got, "slot of %s", s.Key(key))
		}
		held := claim(key)
		_, err = a.Acquire(ctx, held, idempotency.AcquireOptions{})
		require.NoError(t, err)
		require.NoError(t, a.Complete(ctx, held, &idempotency.Record{Status: 200}))
		node, err := c.MasterForKey(ctx, key)
		require.NoError(t, err)
		n, err := node.Exists(ctx, a.Key(key)).Result()
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "%s is on the master of slot %d", a.Key(key), want)
	}
	assert.Greater(t, len(slots), 1, "the keys spread over several slots")
}

// A record the store cannot decode is reported as ErrCorruptRecord (never
// ErrStoreUnavailable, which fail-open would let through) and logged; it is
// never taken for an absent key that may run again.
func TestCorruptRecordFailsClosed(t *testing.T) {
	ctx := context.Background()
	c := miniClient(t)
	var logs bytes.Buffer
	s, err := New(Options{Client: c, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	require.NoError(t, c.HSet(ctx, s.Key("bad"), "f", "fp", "r", "\x0a\xff").Err())
	_, err = s.Acquire(ctx, claim("bad"), idempotency.AcquireOptions{})
	require.ErrorIs(t, err, idempotency.ErrCorruptRecord)
	assert.NotErrorIs(t, err, idempotency.ErrStoreUnavailable, "a corrupt record must not fail open")
	_, err = s.Get(ctx, "bad")
	require.ErrorIs(t, err, idempotency.ErrCorruptRecord)
	assert.NotErrorIs(t, err, idempotency.ErrStoreUnavailable, "a corrupt record must not fail open")
	assert.Contains(t, logs.String(), "unreadable entry")

	// A key of another type is a server error, not a panic or a claim.
	require.NoError(t, c.Set(ctx, s.Key("str"), "x", 0).Err())
	_, err = s.Acquire(ctx, claim("str"), idempotency.AcquireOptions{})
	require.ErrorIs(t, err, idempotency.ErrStoreUnavailable)
}
