package behaviortest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/gopotency/gopotency/pkg/internal/testenv"
	"github.com/gopotency/gopotency/pkg/store/memstore"
	"github.com/gopotency/gopotency/pkg/store/redisstore"
)

// ForEachStore runs a front end's tests over each store this module checks
// the behaviour contract on (this was the package storesuite): it calls
// test in a subtest per store, "memory" (memstore) and "redis" (a real
// Redis, under a key prefix of its own), each wrapped in an OutageStore so
// the test can take it down.
//
// The Redis is GOPOTENCY_TEST_REDIS_URL, or else a redis-server the test
// binary starts on a free loopback port; without either the subtest is
// skipped, and under GOPOTENCY_REQUIRE_SERVICES=1 it fails. A package of
// this module using it has testenv.Main as its TestMain, which stops that
// server after the tests; outside this module, set
// GOPOTENCY_TEST_REDIS_URL (a started server is otherwise left to the
// kernel to kill with the test binary, on Linux only).
func ForEachStore(t *testing.T, test func(t *testing.T, store *OutageStore)) {
	t.Run("memory", func(t *testing.T) {
		mem := memstore.New(memstore.Options{})
		t.Cleanup(func() { _ = mem.Close() })
		test(t, NewOutageStore(mem))
	})
	t.Run("redis", func(t *testing.T) {
		test(t, NewOutageStore(redisStore(t)))
	})
}

// redisStore returns a store on the shared test Redis under a prefix of
// its own, so runs never see each other's keys.
func redisStore(t testing.TB) *redisstore.Store {
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
