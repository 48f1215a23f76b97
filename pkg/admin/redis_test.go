package admin_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
	"github.com/gopotency/gopotency/pkg/store/redisstore"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestAgainstRedis runs inspect and purge over the real Redis store: its
// deadlines come from the server's clock, a corrupt entry is a real hash
// the store cannot decode, and a purge is a real DEL.
func TestAgainstRedis(t *testing.T) {
	ctx := context.Background()
	o, err := redis.ParseURL(testenv.Redis(t))
	require.NoError(t, err)
	o.ContextTimeoutEnabled = true
	client := redis.NewClient(o)
	t.Cleanup(func() { _ = client.Close() })
	var b [6]byte
	_, _ = rand.Read(b[:])
	// As the server opens it: with the restart watch on its connections.
	rs, err := redisstore.NewFromURL(ctx, testenv.Redis(t)+"?prefix=gopotency-admin-test-"+hex.EncodeToString(b[:]), redisstore.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rs.Close() })

	short := idempotency.DefaultPolicy()
	short.Lease = 300 * time.Millisecond
	f := newFixture(t, setup{store: rs, named: map[string]*idempotency.Policy{"short": &short}})
	f.eng = idempotency.New(rs)

	t.Run("lease expired", func(t *testing.T) {
		d := f.eng.Begin(ctx, &short, request("redis-expired"))
		require.Equal(t, idempotency.Proceed, d.Kind)
		body := keyBody("key", "redis-expired", "policy", "short")
		require.Eventually(t, func() bool { return f.inspect(t, "", body).str("state") == "lease_expired" }, 5*time.Second, 50*time.Millisecond)
		require.Equal(t, "outcome-unknown", f.inspect(t, "", body).str("retry.type")[len(idempotency.ProblemTypeBase):])
		a := f.purge(t, "", body)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, "lease_expired", a.str("previous.state"))
		require.Equal(t, idempotency.Proceed, f.eng.Begin(ctx, &short, request("redis-expired")).Kind, "the retry runs")
	})

	t.Run("outcome unknown", func(t *testing.T) {
		l := f.begin(t, "redis-unknown")
		require.NoError(t, l.Abandon(ctx, true))
		body := keyBody("key", "redis-unknown")
		a := f.inspect(t, "", body)
		require.Equal(t, "unknown", a.str("mark"))
		require.NotEmpty(t, a.str("recorded_at"))
		require.Equal(t, http.StatusOK, f.purge(t, "", body).status)
		d := f.eng.Begin(ctx, f.pol, request("redis-unknown"))
		require.Equal(t, idempotency.Proceed, d.Kind, "the retry runs")
		require.NoError(t, d.Lease.Abandon(ctx, false))
	})

	t.Run("corrupt record", func(t *testing.T) {
		l := f.begin(t, "redis-corrupt")
		require.NoError(t, l.Complete(ctx, &idempotency.Record{Status: 201, Body: []byte("x")}))
		require.NoError(t, client.HSet(ctx, rs.Key(l.StorageKey()), "r", "\x00not a record").Err())
		_, err := rs.Get(ctx, l.StorageKey())
		require.ErrorIs(t, err, idempotency.ErrCorruptRecord)

		body := keyBody("key", "redis-corrupt")
		a := f.inspect(t, "", body)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, "corrupt", a.str("state"))
		a = f.purge(t, "", body)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, "corrupt", a.str("previous.state"))
		n, err := client.Exists(ctx, rs.Key(l.StorageKey())).Result()
		require.NoError(t, err)
		require.Zero(t, n)
		requireProblem(t, f.inspect(t, "", body), http.StatusNotFound, "admin-key-not-found")
	})
	t.Run("in flight: refused, then forced", func(t *testing.T) {
		l := f.begin(t, "redis-in-flight")
		held := claimOf(t, rs, f.pol, l)
		before := time.Now()
		body := keyBody("key", "redis-in-flight")
		a := f.inspect(t, "", body)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, "in_flight", a.str("state"))
		lease, err := time.Parse(time.RFC3339Nano, a.str("lease_expires_at"))
		require.NoError(t, err)
		require.WithinDuration(t, before.Add(f.pol.Lease), lease, 2*time.Second, "the server's lease deadline, on this machine's clock")
		requireProblem(t, f.purge(t, "", body), http.StatusConflict, "admin-purge-refused")
		a = f.purge(t, "?force=true", body)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, true, a.get("forced"))
		n, err := client.Exists(ctx, rs.Key(l.StorageKey())).Result()
		require.NoError(t, err)
		require.Zero(t, n, "deleted from Redis")
		require.NoError(t, rs.Extend(ctx, held), "the holder re-creates its claim at its next renewal")
		require.Equal(t, "in_flight", f.inspect(t, "", body).str("state"))
		// The store watches its server for restarts, so a lone vanished
		// claim is taken for a purge, not lost data: new keys still run.
		d := f.eng.Begin(ctx, f.pol, request("redis-after-forced-purge"))
		require.Equal(t, idempotency.Proceed, d.Kind, "%v", d.Err)
		require.NoError(t, d.Lease.Abandon(ctx, false))
		require.NoError(t, l.Abandon(ctx, false))
	})

	require.EqualValues(t, 4, f.counter(t, "gopotency_admin_purges_total", "state", "in_flight", "mark", "-")+
		f.counter(t, "gopotency_admin_purges_total", "state", "lease_expired", "mark", "-")+
		f.counter(t, "gopotency_admin_purges_total", "state", "completed", "mark", "unknown")+
		f.counter(t, "gopotency_admin_purges_total", "state", "corrupt", "mark", "-"))
	f.requireNoSecrets(t)
}
