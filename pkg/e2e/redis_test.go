package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
	"github.com/gopotency/gopotency/pkg/store/redisstore"
)

// TestBehaviourSuiteRedis runs the whole behaviour table through Envoy with
// gopotency on a real Redis server.
func TestBehaviourSuiteRedis(t *testing.T) {
	rs, err := redisstore.NewFromURL(context.Background(), testenv.Redis(t)+"", redisstore.Options{})
	require.NoError(t, err)
	runBehaviour(t, behaviortest.NewOutageStore(rs), rs.Close)
}

// TestManyInstancesOneRedis: two gopotency servers share one Redis behind
// one Envoy that balances streams across both. Racing duplicates of 200
// keys still execute exactly once per key.
func TestManyInstancesOneRedis(t *testing.T) {
	url := testenv.Redis(t)
	up := newCounter()
	second := &stack{}
	second.startApp(t, stackOptions{store: url, config: shortLeaseConfig(t, "30s")})
	s := startStack(t, stackOptions{upstream: up, store: url, tweak: func(cfg []byte) []byte {
		out := string(addEndpoint(t, cfg, second.app.GRPCAddr()))
		// This test is about correctness across instances, on 2 cores shared
		// with the race detector and parallel test binaries; a starved
		// scheduler must not turn into 504s from the 1s message timeout.
		require.Contains(t, out, "message_timeout: 1s")
		return []byte(strings.Replace(out, "message_timeout: 1s", "message_timeout: 10s", 1))
	}})
	const keys, dups = 200, 10
	prefix := fmt.Sprintf("multi-%d-", time.Now().UnixNano())
	var wg sync.WaitGroup
	statuses := make([][]int, keys)
	bodies := make([][]string, keys)
	sem := make(chan struct{}, 128) // bounded client concurrency
	for k := range keys {
		statuses[k], bodies[k] = make([]int, dups), make([]string, dups)
		for d := range dups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				r := do(t, "POST", s.URL+"/orders?sleep=20ms", prefix+itoa(k), `{"n":1}`)
				statuses[k][d], bodies[k][d] = r.Status, string(r.Body)
			}()
		}
	}
	wg.Wait()
	for _, st := range []string{"message_timeouts", "streams_failed", "spurious_msgs_received", "streams_started"} {
		v, _ := s.envoy.Stat("http.ingress.ext_proc." + st)
		t.Logf("envoy ext_proc %s = %d", st, v)
	}
	for k := range keys {
		require.Equal(t, 1, up.count(prefix+itoa(k)), "key %d ran %d times", k, up.count(prefix+itoa(k)))
		for d := range dups {
			st := statuses[k][d]
			require.True(t, st == http.StatusCreated || st == http.StatusConflict, "key %d: status %d", k, st)
			if st == http.StatusCreated {
				assert.Equal(t, bodies[k][0+firstCreated(statuses[k])], bodies[k][d], "every 2xx answer of key %d is the same", k)
			}
		}
	}
	// Both servers did work (Envoy spread the streams).
	assert.Positive(t, metric(t, s, `gopotency_decisions_total{outcome="proceed"}`)+metric(t, s, `gopotency_decisions_total{outcome="replay"}`))
	assert.Positive(t, metric(t, second, `gopotency_decisions_total{outcome="proceed"}`)+metric(t, second, `gopotency_decisions_total{outcome="replay"}`))
}

func firstCreated(st []int) int {
	for i, s := range st {
		if s == http.StatusCreated {
			return i
		}
	}
	return 0
}

// addEndpoint adds addr as another endpoint of Envoy's gopotency cluster
// (the first lb_endpoints block, whose endpoint is on 127.0.0.1).
func addEndpoint(t *testing.T, cfg []byte, addr string) []byte {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	anchor := "      - lb_endpoints:\n        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: "
	i := strings.Index(string(cfg), anchor)
	require.Positive(t, i, "gopotency endpoint anchor")
	extra := fmt.Sprintf("        - endpoint: {address: {socket_address: {address: %s, port_value: %s}}}\n", host, port)
	j := i + len("      - lb_endpoints:\n")
	return []byte(string(cfg[:j]) + extra + string(cfg[j:]))
}
