package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// counter is a small upstream: it counts executions per key and answers
// 201 with a body naming the execution, two cookies and a Location.
type counter struct {
	mu    sync.Mutex
	byKey map[string]int
	total atomic.Int64
}

func newCounter() *counter { return &counter{byKey: map[string]int{}} }

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := c.total.Add(1)
	key := r.Header.Get("Idempotency-Key")
	c.mu.Lock()
	c.byKey[key]++
	c.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
		time.Sleep(d)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/orders/"+itoa(int(n)))
	w.Header().Add("Set-Cookie", "a=1")
	w.Header().Add("Set-Cookie", "b=2")
	w.Header().Add("X-Multi", "one")
	w.Header().Add("X-Multi", "two")
	w.WriteHeader(http.StatusCreated)
	if r.URL.Query().Has("brief") {
		body = nil // an answer small enough to store whatever the request's size
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"execution": n, "echo": string(body)})
}

// byKeyAdd counts an execution of key (for other handlers that count).
func (c *counter) byKeyAdd(key string) {
	c.total.Add(1)
	c.mu.Lock()
	c.byKey[key]++
	c.mu.Unlock()
}

func (c *counter) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[key]
}

func problemType(t *testing.T, r result) string {
	t.Helper()
	require.Equal(t, []string{"application/problem+json"}, r.Header.Values("Content-Type"), "exactly one content-type (Envoy's text/plain replaced); body: %s", r.Body)
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &p), "body: %s", r.Body)
	assert.Equal(t, r.Status, p.Status)
	return strings.TrimPrefix(p.Type, "https://gopotency.dev/problems/")
}

// TestShippedConfig walks the main rows through envoy/envoy.yaml and
// envoy/gopotency.yaml as shipped.
func TestShippedConfig(t *testing.T) {
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up})
	key := "smoke-" + itoa(int(time.Now().UnixNano()))

	first := do(t, "POST", s.URL+"/orders", key, `{"item":"book"}`)
	require.Equal(t, 201, first.Status, "body: %s", first.Body)
	assert.Empty(t, first.Header.Get("Idempotent-Replayed"))
	assert.Len(t, first.Header.Values("Set-Cookie"), 2, "the live answer keeps its cookies")
	assert.NotEmpty(t, first.Header.Get("Content-Length"), "allow_content_length_header keeps the recorded response's length")

	again := do(t, "POST", s.URL+"/orders", key, `{"item":"book"}`)
	require.Equal(t, 201, again.Status)
	assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
	assert.Equal(t, string(first.Body), string(again.Body))
	assert.Equal(t, first.Header.Get("Location"), again.Header.Get("Location"))
	assert.Equal(t, []string{"one", "two"}, again.Header.Values("X-Multi"), "repeated headers replay apart and in order")
	assert.Empty(t, again.Header.Values("Set-Cookie"), "Set-Cookie is on the replay denylist")
	assert.Equal(t, []string{"application/json"}, again.Header.Values("Content-Type"))
	assert.Equal(t, 1, up.count(key))

	changed := do(t, "POST", s.URL+"/orders", key, `{"item":"car"}`)
	require.Equal(t, 422, changed.Status, "body: %s", changed.Body)
	assert.Equal(t, "key-reused", problemType(t, changed))
	assertGoldenBody(t, "key-reused", changed)
	assert.Equal(t, 1, up.count(key), "a mismatch never reaches the upstream")

	bad := do(t, "POST", s.URL+"/orders", `"unterminated`, `{}`)
	require.Equal(t, 400, bad.Status)
	assert.Equal(t, "key-malformed", problemType(t, bad))

	missing := do(t, "POST", s.URL+"/payments", "", `{}`)
	require.Equal(t, 400, missing.Status)
	assert.Equal(t, "key-missing", problemType(t, missing))
	assertGoldenBody(t, "key-missing", missing)

	unkeyed := up.total.Load()
	do(t, "POST", s.URL+"/orders", "", `{}`)
	do(t, "POST", s.URL+"/static/x", key, `{}`)
	do(t, "POST", s.URL+"/static/x", key, `{}`)
	assert.Equal(t, unkeyed+3, up.total.Load(), "unkeyed and filter-disabled routes pass through")
}

// TestInFlightDuplicateGets409 sends a duplicate while the first request
// is still running upstream.
func TestInFlightDuplicateGets409(t *testing.T) {
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up})
	key := "inflight-" + itoa(int(time.Now().UnixNano()))
	done := make(chan result, 1)
	go func() { done <- do(t, "POST", s.URL+"/orders?sleep=700ms", key, `{}`) }()
	require.Eventually(t, func() bool { return up.count(key) == 1 }, 5*time.Second, 5*time.Millisecond)
	dup := do(t, "POST", s.URL+"/orders?sleep=700ms", key, `{}`)
	require.Equal(t, 409, dup.Status, "body: %s", dup.Body)
	assert.Equal(t, "request-in-progress", problemType(t, dup))
	assert.NotEmpty(t, dup.Header.Get("Retry-After"))
	first := <-done
	require.Equal(t, 201, first.Status)
	replay := do(t, "POST", s.URL+"/orders?sleep=700ms", key, `{}`)
	assert.Equal(t, "true", replay.Header.Get("Idempotent-Replayed"))
	assert.Equal(t, 1, up.count(key))
}

// assertGoldenBody checks that Envoy delivered the problem body exactly as
// testdata/problems pins it.
func assertGoldenBody(t *testing.T, slug string, r result) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root(t), "testdata", "problems", slug+".json"))
	require.NoError(t, err)
	var golden struct {
		Body json.RawMessage `json:"body"`
	}
	require.NoError(t, json.Unmarshal(raw, &golden))
	assert.JSONEq(t, string(golden.Body), string(r.Body))
}
