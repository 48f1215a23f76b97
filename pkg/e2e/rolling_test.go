package e2e

import (
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// term stops the process as Kubernetes does in a rollout (SIGTERM: drain,
// then a graceful stop) and waits for it to exit.
func (p *process) term(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	_ = p.cmd.Wait()
	p.cmd = nil
}

// TestRollingRestart: two gopotency processes share one Redis behind one
// Envoy. Under a load of keys sent 4 times at once, each is stopped with
// SIGTERM and started again, one after the other. Every key runs exactly
// once; every answer is the run or its replay (201), a 409, or a 503
// problem that ran nothing; retried afterwards, every key replays.
func TestRollingRestart(t *testing.T) {
	url := testenv.Redis(t)
	cfg := writeConfig(t, "drain_delay: 800ms\nshutdown_grace: 10s\next_proc: {max_message_timeout: 30s}\n")
	a, b := startProcess(t, url, cfg), startProcess(t, url, cfg)
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up, gopotency: a.grpc, tweak: func(c []byte) []byte {
		out := string(addEndpoint(t, c, b.grpc))
		// The generated health checks, faster: Envoy sees a draining server
		// (gRPC health NOT_SERVING) within two checks, inside drain_delay.
		// no_traffic_interval must be there: Envoy counts ext_proc streams
		// as no traffic and would otherwise check every 60s, sending new
		// streams to a stopped server (bare 503s).
		hc := "      interval: 1s\n      no_traffic_interval: 1s\n"
		require.Contains(t, out, hc)
		out = strings.Replace(out, hc, "      interval: 0.1s\n      no_traffic_interval: 0.1s\n", 1)
		return []byte(out)
	}})

	const dups = 4
	prefix := "roll-" + itoa(int(time.Now().UnixNano())) + "-"
	var mu sync.Mutex
	answers := map[string]int{} // by kind
	note := func(kind string) { mu.Lock(); answers[kind]++; mu.Unlock() }
	rolled := make(chan struct{})
	go func() {
		defer close(rolled)
		for _, p := range []*process{a, b} {
			time.Sleep(700 * time.Millisecond)
			p.term(t)
			p.start(t)
		}
		time.Sleep(500 * time.Millisecond)
	}()

	var wg sync.WaitGroup
	sem := make(chan struct{}, 48)
	keys := 0
	for ; keys < 3000; keys++ {
		select {
		case <-rolled:
		default:
			key := prefix + itoa(keys)
			for range dups {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					r := do(t, "POST", s.URL+"/orders?sleep=30ms", key, `{"n":1}`)
					switch {
					case r.Status == http.StatusCreated && r.Header.Get("Idempotent-Replayed") == "true":
						note("201 replay")
					case r.Status == http.StatusCreated:
						note("201 run")
					case r.Status == http.StatusConflict && problemType(t, r) == "request-in-progress":
						note("409")
					case r.Status == http.StatusServiceUnavailable && r.Header.Get("Content-Type") == "application/problem+json":
						note("503 problem")
					default:
						note("other")
						t.Errorf("%s: unexpected answer %d %q at %s: %.200s", key, r.Status, r.Header.Get("Content-Type"), time.Now().Format("15:04:05.000"), r.Body)
					}
				}()
			}
			continue
		}
		break
	}
	wg.Wait()
	require.GreaterOrEqual(t, keys, 100, "the load spans the rollout")

	for _, st := range []string{"cluster.gopotency.health_check.failure", "cluster.gopotency.health_check.success", "cluster.gopotency.upstream_cx_connect_fail", "cluster.gopotency.upstream_rq_pending_failure_eject", "cluster.gopotency.upstream_cx_destroy_remote_with_active_rq", "cluster.gopotency.upstream_rq_rx_reset", "http.ingress.ext_proc.streams_failed", "cluster.gopotency.lb_healthy_panic", "cluster.gopotency.upstream_rq_503"} {
		v, _ := s.envoy.Stat(st)
		t.Logf("envoy %s = %d", st, v)
	}
	// Every key ran at most once; retried now, each runs once if nothing
	// ran (every copy got a 503) or replays.
	for k := range keys {
		key := prefix + itoa(k)
		require.LessOrEqual(t, up.count(key), 1, "%s ran twice", key)
		r := do(t, "POST", s.URL+"/orders?sleep=30ms", key, `{"n":1}`)
		require.Equal(t, http.StatusCreated, r.Status, "%s: %.200s", key, r.Body)
		assert.Equal(t, 1, up.count(key), "%s", key)
	}
	t.Logf("rolling restart: %d keys × %d copies; answers %v", keys, dups, answers)
	assert.Zero(t, answers["other"])
	assert.Positive(t, answers["201 run"])
}
