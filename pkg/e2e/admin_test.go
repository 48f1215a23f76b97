package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/admin"
	"github.com/gopotency/gopotency/pkg/config"
)

const e2eAdminToken = "e2e-admin-token-0123456789abcdef"

// adminPost calls an admin route of s and decodes its JSON answer.
func adminPost(t *testing.T, s *stack, route string, body map[string]any) (int, map[string]any) {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, "http://"+s.app.AdminAddr()+route, bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e2eAdminToken)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := map[string]any{}
	require.NoError(t, json.Unmarshal(b, &out), string(b))
	return resp.StatusCode, out
}

// TestOperatorResolvesOutcomeUnknown is the runbook of docs/admin.md
// through the real Envoy: a client times out while the upstream runs, its
// retries are told outcome-unknown; the operator finds the key from what
// the client sent (its key and Authorization), checks the resource, purges
// the key, and the client's next retry runs: two executions in all, the
// second one on purpose, and no third.
func TestOperatorResolvesOutcomeUnknown(t *testing.T) {
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up, configure: func(c *config.Config) { c.Admin = config.AdminAPI{Token: e2eAdminToken} }})
	key := "admin-" + itoa(int(time.Now().UnixNano()))
	auth := []string{"Authorization", "Bearer alice"}
	url := s.URL + "/orders?sleep=800ms"

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewBufferString(`{}`))
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set(auth[0], auth[1])
	_, err := client.Do(req)
	require.Error(t, err, "the client must time out")

	body := map[string]any{"key": key, "headers": map[string]string{"Authorization": "Bearer alice"}}
	var got map[string]any
	require.Eventually(t, func() bool { _, got = adminPost(t, s, admin.RouteInspect, body); return got["mark"] == "unknown" }, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, "completed", got["state"])
	r := do(t, "POST", url, key, `{}`, auth...)
	require.Equal(t, 424, r.Status, "body %s", r.Body)

	code, _ := adminPost(t, s, admin.RouteInspect, map[string]any{"key": key, "headers": map[string]string{"Authorization": "Bearer bob"}})
	require.Equal(t, 404, code, "another caller's scope names another key")

	// The operator checked the resource: the order was not created.
	body["reason"] = "e2e: order not found; let the client retry"
	code, got = adminPost(t, s, admin.RoutePurge, body)
	require.Equal(t, 200, code, got)
	require.Eventually(t, func() bool { return up.count(key) == 1 }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(600 * time.Millisecond) // the first execution finishes

	r = do(t, "POST", s.URL+"/orders", key, `{}`, auth...)
	require.Equal(t, 201, r.Status, "body %s", r.Body)
	r = do(t, "POST", s.URL+"/orders", key, `{}`, auth...)
	require.Equal(t, 201, r.Status)
	require.Equal(t, "true", r.Header.Get("Idempotent-Replayed"), "the retry that ran is recorded again")
	assert.Equal(t, 2, up.count(key), "executions: the first, and the retry the operator allowed")
	assert.Equal(t, 1.0, metric(t, s, `gopotency_admin_purges_total{mark="unknown",state="completed"}`))
	for _, secret := range []string{e2eAdminToken, "Bearer alice", key} {
		assert.NotContains(t, s.logs.tail(1<<20), secret)
	}
}

// TestPurgeOfARunningRequestIsRefused: while the upstream runs, the key is
// in flight and a purge without force is refused; the request completes
// and records as usual.
func TestPurgeOfARunningRequestIsRefused(t *testing.T) {
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up, configure: func(c *config.Config) { c.Admin = config.AdminAPI{Token: e2eAdminToken} }})
	key := "admin-live-" + itoa(int(time.Now().UnixNano()))
	done := make(chan result, 1)
	go func() { done <- do(t, "POST", s.URL+"/orders?sleep=1s", key, `{}`) }()
	require.Eventually(t, func() bool { return up.count(key) == 1 }, 5*time.Second, 5*time.Millisecond)

	body := map[string]any{"key": key}
	code, got := adminPost(t, s, admin.RouteInspect, body)
	require.Equal(t, 200, code, got)
	require.Equal(t, "in_flight", got["state"])
	require.Equal(t, "request-in-progress", got["retry"].(map[string]any)["type"].(string)[len("https://gopotency.dev/problems/"):])
	code, got = adminPost(t, s, admin.RoutePurge, body)
	require.Equal(t, 409, code, got)
	require.Equal(t, "https://gopotency.dev/problems/admin-purge-refused", got["type"])

	require.Equal(t, 201, (<-done).Status)
	_, got = adminPost(t, s, admin.RouteInspect, body)
	require.Equal(t, "completed", got["state"])
	require.EqualValues(t, 201, got["status"])
	assert.Equal(t, 1, up.count(key))
}
