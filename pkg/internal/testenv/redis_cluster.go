package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopotency/gopotency/internal/proc"

	"github.com/gopotency/gopotency/internal/redisserver"
)

// sharedCluster starts the binary's shared cluster on first use.
var sharedCluster = sync.OnceValues(startCluster)

// RedisCluster returns the seed addresses of a Redis Cluster:
// GOPOTENCY_TEST_REDIS_CLUSTER_ADDRS (comma separated), or a three-master
// cluster (no replicas) this test binary starts once on loopback ports and
// stops at Cleanup.
func RedisCluster(t testing.TB) []string {
	t.Helper()
	SkipShort(t, "a Redis Cluster")
	if v := os.Getenv("GOPOTENCY_TEST_REDIS_CLUSTER_ADDRS"); v != "" {
		var addrs []string
		for a := range strings.SplitSeq(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		return addrs
	}
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			Unavailable(t, "GOPOTENCY_TEST_REDIS_CLUSTER_ADDRS is unset and %s is not installed", bin)
		}
	}
	addrs, err := sharedCluster()
	if err != nil {
		t.Fatalf("testenv: start Redis Cluster: %v", err)
	}
	return addrs
}

const clusterMasters = 3

func startCluster() (addrs []string, err error) {
	dir, err := os.MkdirTemp("", "gopotency-redis-cluster-")
	if err != nil {
		return nil, err
	}
	var nodes []*RedisServer
	stop := func() {
		for _, n := range nodes {
			n.Stop()
		}
		_ = os.RemoveAll(dir)
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	// A node needs two ports: clients and the cluster bus.
	ports, err := proc.FreePorts(2 * clusterMasters)
	if err != nil {
		return nil, err
	}
	for i := range clusterMasters {
		port, bus := strconv.Itoa(ports[2*i]), strconv.Itoa(ports[2*i+1])
		n := redisserver.New(net.JoinHostPort("127.0.0.1", port), dir,
			"--port", port, "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--logfile", dir+"/redis-"+port+".log",
			"--cluster-enabled", "yes", "--cluster-port", bus,
			"--cluster-config-file", "nodes-"+port+".conf",
			"--cluster-node-timeout", "5000",
		)
		if err := n.Start(); err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
		addrs = append(addrs, n.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %w: %s", err, out)
	}
	for _, a := range addrs {
		if err := redisserver.Wait(a, nil, "CLUSTER INFO", "cluster_state:ok"); err != nil {
			return nil, err
		}
	}
	OnCleanup(stop)
	return addrs, nil
}
