package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// TestRealRedisOutage stops a real redis-server under a running stack. The
// store timeout (800ms) answers before Envoy's message_timeout (1s), so the
// client gets GoPotency's 503 problem with Retry-After, not Envoy's bare
// 504; the /payments policy opts into fail_open and passes through. The
// server persists every write (AOF, fsync always), so records survive its
// restart; its new run id still makes new keys wait out the restart grace.
func TestRealRedisOutage(t *testing.T) {
	rs := testenv.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	cfg := filepath.Join(t.TempDir(), "gopotency.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("ext_proc: {max_message_timeout: 30s}\npolicies:\n  payments: {fail_open: true}\n"), 0o600))
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up, store: rs.URL(), config: cfg})
	key := "outage-" + itoa(int(time.Now().UnixNano()))
	require.Equal(t, 201, do(t, "POST", s.URL+"/orders", key, `{}`).Status)

	rs.Stop()
	start := time.Now()
	r := do(t, "POST", s.URL+"/orders", key+"-2", `{}`)
	assert.Less(t, time.Since(start), 2*time.Second)
	require.Equal(t, 503, r.Status, "body: %s", r.Body)
	assert.Equal(t, "store-unavailable", problemType(t, r))
	assert.Equal(t, "1", r.Header.Get("Retry-After"))
	assert.Equal(t, 0, up.count(key+"-2"), "fail closed: the upstream never ran")

	open := do(t, "POST", s.URL+"/payments", key+"-3", `{}`)
	assert.Equal(t, 201, open.Status, "fail_open passes the request through; body: %s", open.Body)
	assert.Equal(t, 1, up.count(key+"-3"))
	assert.Positive(t, metric(t, s, `gopotency_decisions_total{outcome="pass"}`))

	ready := func() int {
		resp, err := http.Get("http://" + s.app.AdminAddr() + "/readyz")
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, 503, ready(), "unready while the store is down")

	// Redis back on the same port: the persisted record replays; a new key
	// waits out the grace in which running instances re-assert claims.
	require.NoError(t, rs.Start())
	require.Eventually(t, func() bool { return ready() == 200 }, 5*time.Second, 20*time.Millisecond)
	for range 20 { // ready stays ready: no flapping once the store answers
		require.Equal(t, 200, ready())
		time.Sleep(50 * time.Millisecond)
	}
	require.Eventually(t, func() bool {
		return do(t, "POST", s.URL+"/orders", key, `{}`).Header.Get("Idempotent-Replayed") == "true"
	}, 10*time.Second, 200*time.Millisecond)
	fresh := do(t, "POST", s.URL+"/orders", key+"-4", `{}`)
	assert.Equal(t, 503, fresh.Status, "a new key right after a restart: body %s", fresh.Body)
	assert.Equal(t, 1, up.count(key), "the completed key ran once, never again")
	assert.Equal(t, 1, up.count(key+"-3")+up.count(key+"-2"), "only the fail-open request ran")
}
