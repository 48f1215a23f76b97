package e2e

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests settle the VERIFY points of the ext_proc research notes
// against the real binary; docs/envoy-verify.md records the answers.

// TestVerifyConnectFailureLocalReply: Envoy's own 503 for an upstream it
// cannot connect to. Envoy 1.40 passes this local reply to the processor
// with response.code_details naming the connection failure, so the key is
// released (the request provably never left) and a retry may run at once.
func TestVerifyConnectFailureLocalReply(t *testing.T) {
	dead := deadPort(t)
	s := startStack(t, stackOptions{upstream: newCounter(), tweak: func(cfg []byte) []byte {
		return pointAppAt(t, cfg, dead)
	}})
	key := "connfail-" + itoa(int(time.Now().UnixNano()))
	r := do(t, "POST", s.URL+"/orders", key, `{}`)
	require.Equal(t, 503, r.Status, "body: %s", r.Body)
	released := metric(t, s, `gopotency_leases_settled_total{how="released"}`)
	unknown := metric(t, s, `gopotency_leases_settled_total{how="unknown"}`)
	t.Logf("connect failure: released=%v unknown=%v", released, unknown)
	assert.Contains(t, s.logs.tail(1<<20), "details=upstream_reset_before_response_started{remote_connection_failure")
	assert.Equal(t, 1.0, released, "the local reply reached the processor and proved the request unsent")
	again := do(t, "POST", s.URL+"/orders", key, `{}`)
	assert.Equal(t, 503, again.Status, "released: the retry runs again (and fails the same way), no 409")
}

// TestVerifyUpstreamTimeoutLocalReply: Envoy's own 504 when the route
// timeout fires. The upstream did get the request, so the outcome is
// unknown, and recorded as such: the retry is told, never run.
func TestVerifyUpstreamTimeoutLocalReply(t *testing.T) {
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up, tweak: func(cfg []byte) []byte {
		out := bytes.ReplaceAll(cfg, []byte("route: {cluster: app, timeout: 30s}"), []byte("route: {cluster: app, timeout: 0.3s}"))
		require.NotEqual(t, string(cfg), string(out), "route timeout anchor missing")
		return out
	}})
	key := "timeout-" + itoa(int(time.Now().UnixNano()))
	r := do(t, "POST", s.URL+"/orders?sleep=1s", key, `{}`)
	require.Equal(t, 504, r.Status, "body: %s", r.Body)
	assert.Contains(t, s.logs.tail(1<<20), "details=response_timeout upstream_may_have_run=true")
	again := do(t, "POST", s.URL+"/orders?sleep=1s", key, `{}`)
	assert.Equal(t, 424, again.Status, "outcome unknown: body %s", again.Body)
	assert.Equal(t, "outcome-unknown", problemType(t, again))
	time.Sleep(1100 * time.Millisecond) // the first attempt has finished upstream
	assert.Equal(t, 424, do(t, "POST", s.URL+"/orders?sleep=1s", key, `{}`).Status)
	assert.Equal(t, 1, up.count(key))
	assert.Equal(t, 1.0, metric(t, s, `gopotency_leases_settled_total{how="unknown"}`))
}

// TestVerifyImmediateResponseAtBodyPhase: a replay decided in the request
// body phase (the fingerprint needs the body) is honoured, and the
// upstream never sees the request, because headers are held while the
// body is buffered for the processor.
func TestVerifyImmediateResponseAtBodyPhase(t *testing.T) {
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up})
	key := "bodyphase-" + itoa(int(time.Now().UnixNano()))
	body := bytes.Repeat([]byte("x"), 300<<10) // several chunks on the wire
	first := do(t, "POST", s.URL+"/orders", key, string(body))
	require.Equal(t, 201, first.Status)
	for range 3 {
		r := do(t, "POST", s.URL+"/orders", key, string(body))
		require.Equal(t, http.StatusCreated, r.Status)
		require.Equal(t, "true", r.Header.Get("Idempotent-Replayed"))
		require.Equal(t, first.Body, r.Body)
	}
	r := do(t, "POST", s.URL+"/orders", key, string(body[1:]))
	require.Equal(t, 422, r.Status)
	assert.Equal(t, 1, up.count(key), "neither replays nor the mismatch reached the upstream")
}

func pointAppAt(t *testing.T, cfg []byte, port int) []byte {
	t.Helper()
	// The app cluster is the last socket_address in the file.
	i := bytes.LastIndex(cfg, []byte("port_value: "))
	require.Positive(t, i)
	j := bytes.IndexByte(cfg[i:], '}')
	return append(append(append([]byte{}, cfg[:i]...), []byte("port_value: "+itoa(port))...), cfg[i+j:]...)
}
