// Package storesuite runs a front end's tests over each store the
// behaviour contract is checked on: the memory store and a real Redis
// (started by testenv; skipped on a laptop without redis-server, failing
// under GOPOTENCY_REQUIRE_SERVICES=1). A package using it needs
// testenv.Main as its TestMain, so the Redis it starts is stopped.
package storesuite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
	"github.com/gopotency/gopotency/pkg/store/memstore"
	"github.com/gopotency/gopotency/pkg/store/redisstore"
)

// Run calls test in a subtest per store, each store wrapped so the test can
// take it down (behaviortest.OutageStore).
func Run(t *testing.T, test func(t *testing.T, store *behaviortest.OutageStore)) {
	t.Run("memory", func(t *testing.T) {
		mem := memstore.New(memstore.Options{})
		t.Cleanup(func() { _ = mem.Close() })
		test(t, behaviortest.NewOutageStore(mem))
	})
	t.Run("redis", func(t *testing.T) {
		test(t, behaviortest.NewOutageStore(Redis(t)))
	})
}

// Redis returns a store on the shared test Redis under a prefix of its
// own, so runs never see each other's keys.
func Redis(t testing.TB) *redisstore.Store {
	o, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	o.ContextTimeoutEnabled = true
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis: %v", err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	s, err := redisstore.New(redisstore.Options{Client: c, Prefix: "gpt" + hex.EncodeToString(b[:])})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
