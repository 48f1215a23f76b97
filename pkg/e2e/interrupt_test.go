package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// These tests interrupt a request in each way it can be interrupted,
// through the real Envoy, and count executions at the upstream: each must
// run once, and its retries must be told what happened, never run it again.

// slowBody answers 201 with a head and a first part at once, then the rest
// after a pause, or (reset) cuts the connection instead of finishing.
type slowBody struct {
	up    *counter
	reset bool
}

func (h slowBody) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.up.byKeyAdd(r.Header.Get("Idempotency-Key"))
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Location", "/orders/77")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, strings.Repeat("first part ", 100))
	http.NewResponseController(w).Flush()
	time.Sleep(400 * time.Millisecond)
	if h.reset {
		panic(http.ErrAbortHandler) // net/http closes the connection mid-body
	}
	_, _ = io.WriteString(w, "the rest")
}

// wantIncomplete checks a retry is told the operation ran with status 201.
func wantIncomplete(t *testing.T, r result) {
	t.Helper()
	require.Equal(t, 424, r.Status, "body %s", r.Body)
	require.Equal(t, "response-incomplete", problemType(t, r))
	assertGoldenBody(t, "response-incomplete", r) // original_status 201 included
}

// TestClientGoneMidBody: the client reads the head and hangs up while the
// body streams. The upstream ran and answered: the retry learns its status.
func TestClientGoneMidBody(t *testing.T) {
	up := newCounter()
	s := startStack(t, stackOptions{upstream: slowBody{up: up}, config: shortLeaseConfig(t, "300ms")})
	key := "midbody-" + itoa(int(time.Now().UnixNano()))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+"/orders", strings.NewReader(`{}`))
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	require.NoError(t, err)
	require.Equal(t, 201, resp.StatusCode)
	cancel() // gone after the head, before the rest of the body
	_ = resp.Body.Close()

	require.Eventually(t, func() bool { return do(t, "POST", s.URL+"/orders", key, `{}`).Status == 424 }, 5*time.Second, 50*time.Millisecond)
	for range 3 {
		time.Sleep(300 * time.Millisecond) // past the lease
		wantIncomplete(t, do(t, "POST", s.URL+"/orders", key, `{}`))
	}
	assert.Equal(t, 1, up.count(key), "executions")
	assert.Equal(t, 1.0, metric(t, s, `gopotency_leases_settled_total{how="incomplete"}`))
}

// TestUpstreamResetMidBody: the upstream sends its head and part of the
// body, then resets the connection. It ran; the client got a cut answer.
func TestUpstreamResetMidBody(t *testing.T) {
	up := newCounter()
	s := startStack(t, stackOptions{upstream: slowBody{up: up, reset: true}, config: shortLeaseConfig(t, "300ms")})
	key := "reset-" + itoa(int(time.Now().UnixNano()))
	resp, err := client.Do(postReq(t, s.URL+"/orders", key))
	require.NoError(t, err)
	require.Equal(t, 201, resp.StatusCode)
	_, err = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Error(t, err, "the body was cut")

	require.Eventually(t, func() bool { return do(t, "POST", s.URL+"/orders", key, `{}`).Status == 424 }, 5*time.Second, 50*time.Millisecond)
	time.Sleep(400 * time.Millisecond)
	wantIncomplete(t, do(t, "POST", s.URL+"/orders", key, `{}`))
	assert.Equal(t, 1, up.count(key), "executions")
}

func postReq(t *testing.T, url, key string) *http.Request {
	req, err := http.NewRequest("POST", url, strings.NewReader(`{}`))
	require.NoError(t, err)
	req.Header.Set("Idempotency-Key", key)
	return req
}

// TestRedisRestartMidLoad: 40 requests are running (2s each) on two
// gopotency servers sharing one Redis, with duplicates arriving at both
// all the time, when Redis restarts without persistence: every claim is
// wiped. The servers notice the new run id on reconnecting, re-assert the
// claims they hold and refuse new keys for the restart grace, so no
// duplicate finds a wiped key: every request still runs exactly once.
func TestRedisRestartMidLoad(t *testing.T) {
	rs := testenv.StartRedis(t) // no persistence: a restart loses everything
	cfg := leaseConfig(t, "3s")
	up := newCounter()
	second := &stack{}
	second.startApp(t, stackOptions{store: rs.URL(), config: cfg})
	s := startStack(t, stackOptions{upstream: up, store: rs.URL(), config: cfg, tweak: func(c []byte) []byte {
		return addEndpoint(t, c, second.app.GRPCAddr())
	}})

	const keys = 40
	prefix := fmt.Sprintf("restart-%d-", time.Now().UnixNano())
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	firsts := make([]int, keys)
	for k := range keys {
		wg.Go(func() { firsts[k] = do(t, "POST", s.URL+"/orders?sleep=2s", prefix+itoa(k), `{}`).Status })
	}
	require.Eventually(t, func() bool { return int(up.total.Load()) == keys }, 10*time.Second, 10*time.Millisecond, "all first requests running")

	stop := make(chan struct{})
	for k := range keys {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				st := do(t, "POST", s.URL+"/orders?sleep=2s", prefix+itoa(k), `{}`).Status
				mu.Lock()
				statuses[st]++
				mu.Unlock()
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	rs.Stop()
	require.NoError(t, rs.Start())
	time.Sleep(5 * time.Second) // past the first requests' end and the grace
	close(stop)
	wg.Wait()

	for k := range keys {
		assert.Equal(t, 1, up.count(prefix+itoa(k)), "key %d executions", k)
		assert.Equal(t, 201, firsts[k], "key %d: the running request finished and was recorded", k)
	}
	t.Logf("duplicate statuses across the restart: %v", statuses)
	for st := range statuses {
		assert.Contains(t, []int{201, 409, 503}, st, "replay, in progress, or store unavailable during the restart")
	}
	assert.Positive(t, statuses[201], "replays after the first requests completed")
	// The claims were re-asserted: after the grace duplicates saw 409s.
	assert.Positive(t, statuses[409])
}

// leaseConfig is shortLeaseConfig without debug logs (the restart test is
// chatty enough).
func leaseConfig(t *testing.T, lease string) string {
	return writeConfig(t, "ext_proc: {max_message_timeout: 30s}\ndefault_policy: {lease: "+lease+"}\n")
}
