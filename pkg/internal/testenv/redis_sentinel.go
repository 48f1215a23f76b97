package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// RedisSentinel is a private Redis master watched by one Sentinel.
type RedisSentinel struct {
	Master     *RedisServer
	Sentinel   *RedisServer // a redis-server in sentinel mode
	MasterName string
}

// StartRedisSentinel starts a master and a Sentinel monitoring it (quorum 1)
// on loopback ports; t.Cleanup stops both. There is no environment variable
// for it: Sentinel deployments are exercised only where redis-server is
// installed.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	SkipShort(t, "Redis Sentinel")
	master := StartRedis(t)
	dir := t.TempDir()
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ports[0])
	conf := filepath.Join(dir, "sentinel.conf")
	host, mport, _ := net.SplitHostPort(master.Addr)
	body := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor mymaster %s %s 1\n",
		port, dir, filepath.Join(dir, "redis-"+port+".log"), host, mport)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &RedisServer{Addr: net.JoinHostPort("127.0.0.1", port), dir: dir, args: []string{conf, "--sentinel"}}
	if err := s.Start(); err != nil {
		t.Fatalf("testenv: start sentinel: %v", err)
	}
	t.Cleanup(s.Stop)
	return &RedisSentinel{Master: master, Sentinel: s, MasterName: "mymaster"}
}
