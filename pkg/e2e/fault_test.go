package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// shortLeaseConfig writes a gopotency config whose default lease is lease.
func shortLeaseConfig(t *testing.T, lease string) string {
	return writeConfig(t, "ext_proc: {max_message_timeout: 30s}\ndefault_policy: {lease: "+lease+"}\nlog: {level: debug}\n")
}

// writeConfig writes a gopotency YAML file and returns its path.
func writeConfig(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "gopotency.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func metric(t *testing.T, s *stack, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.app.AdminAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			_, _ = fmtSscan(v, &f)
			return f
		}
	}
	return 0
}

// TestServerDownFailsClosed: with gopotency gone, Envoy answers
// status_on_error (503) and the upstream never runs.
func TestServerDownFailsClosed(t *testing.T) {
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up})
	require.Equal(t, 201, do(t, "POST", s.URL+"/orders", "k-"+itoa(int(time.Now().UnixNano())), `{}`).Status)
	s.stop()
	before := up.total.Load()
	for _, r := range []struct{ path, key string }{{"/orders", "down-1"}, {"/payments", ""}} {
		res := do(t, "POST", s.URL+r.path, r.key, `{}`)
		assert.Equal(t, 503, res.Status, "%s key %q: body %s", r.path, r.key, res.Body)
	}
	assert.Equal(t, before, up.total.Load(), "fail closed: nothing reaches the upstream")
	// Without a key on a key-optional route, or with a method no policy
	// guards, Envoy leaves the filter off (envoy/envoy.yaml as generated):
	// it passes, up or down.
	assert.Equal(t, 201, do(t, "POST", s.URL+"/orders", "", `{}`).Status)
	assert.Equal(t, 201, do(t, "GET", s.URL+"/orders", "down-1", "").Status)
}

// TestSlowUpstreamPastLease: the lease (300ms) is much shorter than the
// upstream (1.5s); renewal keeps duplicates out the whole time.
func TestSlowUpstreamPastLease(t *testing.T) {
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up, config: shortLeaseConfig(t, "300ms")})
	key := "slow-" + itoa(int(time.Now().UnixNano()))
	done := make(chan result, 1)
	go func() { done <- do(t, "POST", s.URL+"/orders?sleep=1500ms", key, `{}`) }()
	require.Eventually(t, func() bool { return up.count(key) == 1 }, 5*time.Second, 5*time.Millisecond)
	for range 4 { // duplicates at ~0.3s, 0.6s, 0.9s, 1.2s: all past the original lease
		time.Sleep(300 * time.Millisecond)
		r := do(t, "POST", s.URL+"/orders?sleep=1500ms", key, `{}`)
		require.Equal(t, 409, r.Status, "body: %s", r.Body)
	}
	require.Equal(t, 201, (<-done).Status)
	assert.Equal(t, 1, up.count(key), "renewal kept the duplicate out")
	assert.GreaterOrEqual(t, metric(t, s, `gopotency_lease_renewals_total{result="ok"}`), 3.0)
}

// TestClientDisconnect: the client gives up (times out) while the upstream
// runs, and retries, again and again, long past the lease. Envoy resets the
// upstream request; the upstream ran anyway. The outcome is unknown, and
// every retry is told so: it never runs a second time.
func TestClientDisconnect(t *testing.T) {
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up, config: shortLeaseConfig(t, "300ms")})
	key := "gone-" + itoa(int(time.Now().UnixNano()))
	url := s.URL + "/orders?sleep=800ms"
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewBufferString(`{}`))
	req.Header.Set("Idempotency-Key", key)
	_, err := client.Do(req)
	require.Error(t, err, "the client must time out")
	require.Equal(t, 1, up.count(key))

	// Until Envoy has reset the stream and the server settled it, the
	// attempt still counts as in progress (409); then the outcome is
	// unknown for good.
	require.Eventually(t, func() bool {
		r := do(t, "POST", url, key, `{}`)
		require.Contains(t, []int{409, 424}, r.Status, "body %s", r.Body)
		return r.Status == 424
	}, 5*time.Second, 20*time.Millisecond)
	for range 5 { // over 1.5s: five leases' worth, and past the upstream's end
		r := do(t, "POST", url, key, `{}`)
		require.Equal(t, 424, r.Status, "body %s", r.Body)
		require.Equal(t, "outcome-unknown", problemType(t, r))
		assertGoldenBody(t, "outcome-unknown", r)
		time.Sleep(300 * time.Millisecond)
	}
	assert.Equal(t, 1, up.count(key), "executions")
	assert.Equal(t, 1.0, metric(t, s, `gopotency_leases_settled_total{how="unknown"}`))
}

// TestUpstream5xxNotStored: a 500 from the upstream releases the key.
func TestUpstream5xxNotStored(t *testing.T) {
	calls := 0
	s := startStack(t, stackOptions{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls == 1 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})})
	key := "5xx-" + itoa(int(time.Now().UnixNano()))
	before, err := s.envoy.Stat("http.ingress.ext_proc.stream_msgs_sent")
	require.NoError(t, err)
	assert.Equal(t, 500, do(t, "POST", s.URL+"/orders", key, `{}`).Status)
	after, err := s.envoy.Stat("http.ingress.ext_proc.stream_msgs_sent")
	require.NoError(t, err)
	// request body (body-first), response headers: the key is released at
	// the response headers, whose answer turns the body phase off (Envoy
	// honours mode overrides on response headers answers too).
	assert.EqualValues(t, 2, after-before, "messages for an unstored 500")
	assert.Equal(t, 201, do(t, "POST", s.URL+"/orders", key, `{}`).Status, "the retry runs")
	r := do(t, "POST", s.URL+"/orders", key, `{}`)
	assert.Equal(t, "true", r.Header.Get("Idempotent-Replayed"))
	assert.Equal(t, 2, calls)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
