package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
	"github.com/gopotency/gopotency/pkg/store/storetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Each subtest gets a miniredis of its own: miniredis runs every command
// under one lock, and the suite's parallel 1 MiB-body script, slow under
// -race, would otherwise stall the lease-timing cases.
func TestConformanceMiniredis(t *testing.T) {
	storetest.Run(t, func(t *testing.T) idempotency.Store { return newStore(t, miniClient(t)) })
}

func TestConformanceRedis(t *testing.T) {
	storetest.Run(t, factory(redisClient(t)))
}

func TestConformanceCluster(t *testing.T) {
	storetest.Run(t, factory(clusterClient(t)))
}

// factory hands each subtest a store with a prefix of its own, so runs
// against a shared server never see each other's keys.
func factory(c redis.UniversalClient) storetest.Factory {
	return func(t *testing.T) idempotency.Store { return newStore(t, c) }
}

func newStore(t testing.TB, c redis.UniversalClient) *Store {
	t.Helper()
	s, err := New(Options{Client: c, Prefix: testPrefix()})
	require.NoError(t, err)
	return s
}

func testPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "gopotency-test-" + hex.EncodeToString(b[:])
}

// miniClient is an in-process miniredis whose TTLs follow the wall clock,
// as the suite's real-time leases need.
func miniClient(t testing.TB) *redis.Client {
	mr := miniredis.RunT(t)
	mr.ClockTTL(true)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func redisClient(t testing.TB) *redis.Client {
	o, err := redis.ParseURL(testenv.Redis(t))
	require.NoError(t, err)
	o.ContextTimeoutEnabled = true
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Ping(context.Background()).Err())
	return c
}

func clusterClient(t testing.TB) *redis.ClusterClient {
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testenv.RedisCluster(t), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Ping(context.Background()).Err())
	return c
}

func TestStalledServer(t *testing.T) {
	storetest.RunStalled(t, func(t *testing.T) storetest.Stalled {
		o, err := redis.ParseURL(testenv.Redis(t))
		require.NoError(t, err)
		proxy := testenv.StartStallProxy(t, o.Addr)
		o.Addr, o.ContextTimeoutEnabled = proxy.Addr, true
		c := redis.NewClient(o)
		t.Cleanup(func() { _ = c.Close() })
		return storetest.Stalled{Store: newStore(t, c), Stall: proxy.Stall, Resume: proxy.Resume}
	})
}
