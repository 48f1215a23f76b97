package testenv

import (
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/gopotency/gopotency/internal/redisserver"
)

// sharedRedis starts the binary's shared redis-server on first use.
var sharedRedis = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "gopotency-redis-")
	if err != nil {
		return "", err
	}
	s, err := redisserver.Start(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	OnCleanup(func() { s.Stop(); _ = os.RemoveAll(dir) })
	return s.URL(), nil
})

// Redis returns the URL of a Redis server: GOPOTENCY_TEST_REDIS_URL, or a
// redis-server this test binary starts once, on a free loopback port, and
// stops at Cleanup. Tests share it, so they must use keys of their own.
func Redis(t testing.TB) string {
	t.Helper()
	SkipShort(t, "Redis")
	if u := os.Getenv("GOPOTENCY_TEST_REDIS_URL"); u != "" {
		return u
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		Unavailable(t, "GOPOTENCY_TEST_REDIS_URL is unset and redis-server is not installed")
	}
	url, err := sharedRedis()
	if err != nil {
		t.Fatalf("testenv: start redis-server: %v", err)
	}
	return url
}

// RedisServer is a redis-server process owned by one test, for fault tests:
// Stop it to make the store unreachable, Start it again on the same port.
type RedisServer = redisserver.Server

// StartRedis starts a private redis-server (it does not honour
// GOPOTENCY_TEST_REDIS_URL: the test needs to control the process). extra
// are more redis-server arguments. t.Cleanup stops it.
func StartRedis(t testing.TB, extra ...string) *RedisServer {
	t.Helper()
	SkipShort(t, "a redis-server")
	if _, err := exec.LookPath("redis-server"); err != nil {
		Unavailable(t, "redis-server is not installed")
	}
	s, err := redisserver.Start(t.TempDir(), extra...)
	if err != nil {
		t.Fatalf("testenv: start redis-server: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}
