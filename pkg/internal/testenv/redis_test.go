package testenv

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gopotency/gopotency/internal/redisserver"
)

func TestRedisShared(t *testing.T) {
	u := Redis(t)
	if Redis(t) != u {
		t.Fatal("a second call must return the same server")
	}
	// go-redis, not the raw helper: GOPOTENCY_TEST_REDIS_URL may carry
	// credentials, TLS or a database number.
	o, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("bad URL %q: %v", u, err)
	}
	c := redis.NewClient(o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if reply, err := c.Ping(ctx).Result(); err != nil || reply != "PONG" {
		t.Fatalf("PING %s: %q %v", o.Addr, reply, err)
	}
}

func TestStartRedisStopStart(t *testing.T) {
	s := StartRedis(t)
	if host, _, _ := net.SplitHostPort(s.Addr); host != "127.0.0.1" {
		t.Fatalf("not loopback: %s", s.Addr)
	}
	if _, err := redisserver.Command(s.Addr, "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if _, err := redisserver.Command(s.Addr, "PING"); err == nil {
		t.Fatal("a stopped server still answers")
	}
	s.Stop() // no-op
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if reply, err := redisserver.Command(s.Addr, "PING"); err != nil || reply != "PONG" {
		t.Fatalf("after restart: %q %v", reply, err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("starting a running server must fail")
	}
}

func TestRedisCluster(t *testing.T) {
	addrs := RedisCluster(t)
	if len(addrs) < 3 {
		t.Fatalf("want at least 3 nodes, got %v", addrs)
	}
	// GOPOTENCY_TEST_REDIS_CLUSTER_ADDRS carries no credentials, so the
	// stores' tests reach the cluster without any: neither can this.
	info, err := redisserver.Command(addrs[0], "CLUSTER", "INFO")
	if err != nil {
		t.Fatalf("CLUSTER INFO on %s: %v", addrs[0], err)
	}
	for _, want := range []string{"cluster_state:ok", "cluster_slots_assigned:16384"} {
		if !strings.Contains(info, want) {
			t.Errorf("CLUSTER INFO lacks %q:\n%s", want, info)
		}
	}
	nodes, err := redisserver.Command(addrs[0], "CLUSTER", "NODES")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(nodes, "master"); n < 3 {
		t.Errorf("want 3 masters, CLUSTER NODES shows %d:\n%s", n, nodes)
	}
}

func TestCleanupRunsInReverseOnce(t *testing.T) {
	// Cleanup drains the whole registry, so isolate it from services
	// registered by other tests and restore them afterwards.
	cleanupMu.Lock()
	saved := cleanups
	cleanups = nil
	cleanupMu.Unlock()
	t.Cleanup(func() {
		cleanupMu.Lock()
		cleanups = append(saved, cleanups...)
		cleanupMu.Unlock()
	})
	var order []int
	OnCleanup(func() { order = append(order, 1) })
	OnCleanup(func() { order = append(order, 2) })
	Cleanup()
	Cleanup()
	if len(order) != 2 || order[0] != 2 || order[1] != 1 {
		t.Fatalf("order %v, want [2 1]", order)
	}
}

func TestStartRedisSentinel(t *testing.T) {
	rs := StartRedisSentinel(t)
	if reply, err := redisserver.Command(rs.Sentinel.Addr, "PING"); err != nil || reply != "PONG" {
		t.Fatalf("sentinel PING: %q %v", reply, err)
	}
	info, err := redisserver.Command(rs.Sentinel.Addr, "INFO", "sentinel")
	if err != nil {
		t.Fatal(err)
	}
	if want := "name=" + rs.MasterName + ",status=ok,address=" + rs.Master.Addr; !strings.Contains(info, want) {
		t.Fatalf("INFO sentinel lacks %q:\n%s", want, info)
	}
}

func TestRedisPauseResumeKill(t *testing.T) {
	s := StartRedis(t)
	s.Pause()
	if _, err := redisserver.Command(s.Addr, "PING"); err == nil {
		t.Fatal("a paused server answered")
	}
	s.Resume()
	if reply, err := redisserver.Command(s.Addr, "PING"); err != nil || reply != "PONG" {
		t.Fatalf("after Resume: %q %v", reply, err)
	}
	s.Pause()
	s.Stop() // must not hang on a paused server
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if _, err := redisserver.Command(s.Addr, "PING"); err == nil {
		t.Fatal("a killed server still answers")
	}
	s.Kill() // no-op
}

// TestStartRedisFailover: a write made after CutReplica is on the master
// only, and is gone once the Sentinel has promoted the replica.
func TestStartRedisFailover(t *testing.T) {
	rs := StartRedisFailover(t)
	if _, err := redisserver.Command(rs.Master.Addr, "SET", "before", "1"); err != nil {
		t.Fatal(err)
	}
	rs.WaitReplicated(t)
	rs.CutReplica(t)
	if _, err := redisserver.Command(rs.Master.Addr, "SET", "after", "1"); err != nil {
		t.Fatal(err)
	}
	rs.Failover(t)
	if v, err := redisserver.Command(rs.Replica.Addr, "GET", "before"); err != nil || v != "1" {
		t.Fatalf("a replicated write is lost: %q %v", v, err)
	}
	if v, err := redisserver.Command(rs.Replica.Addr, "EXISTS", "after"); err != nil || v != "0" {
		t.Fatalf("a write made during the cut reached the replica: EXISTS %q %v", v, err)
	}
	if !strings.HasPrefix(rs.URL(), "redis+sentinel://"+rs.Sentinel.Addr+"/") {
		t.Fatal(rs.URL())
	}
}
