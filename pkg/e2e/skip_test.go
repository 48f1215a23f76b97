package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/envoyconfig"
)

// extProcStat is one of Envoy's ext_proc counters.
func extProcStat(t *testing.T, s *stack, name string) int64 {
	t.Helper()
	n, err := s.envoy.Stat(s.extProcStats + name)
	require.NoError(t, err)
	return n
}

// streams is how many ext_proc streams Envoy opened so far.
func streams(t *testing.T, s *stack) int64 { return extProcStat(t, s, "streams_started") }

// messages is how many ext_proc messages Envoy sent so far.
func messages(t *testing.T, s *stack) int64 { return extProcStat(t, s, "stream_msgs_sent") }

// TestShippedConfigSkipsWhatCannotNeedGoPotency: with envoy/envoy.yaml as
// generated, requests no policy guards and un-keyed requests where the key
// is optional open no ext_proc stream; a key-required route still reaches
// GoPotency without a key, which answers 400.
func TestShippedConfigSkipsWhatCannotNeedGoPotency(t *testing.T) {
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up})
	key := "skip-" + itoa(int(time.Now().UnixNano()))
	before := streams(t, s)
	for _, r := range []struct{ method, path, key string }{
		{"GET", "/orders", key},
		{"POST", "/orders", ""},
		{"PUT", "/orders", key},
		{"GET", "/payments", ""},
		{"POST", "/static/x", key},
	} {
		res := do(t, r.method, s.URL+r.path, r.key, `{}`)
		assert.Equal(t, 201, res.Status, "%s %s", r.method, r.path)
	}
	assert.Equal(t, before, streams(t, s), "no stream for requests GoPotency cannot guard")

	missing := do(t, "POST", s.URL+"/payments", "", `{}`)
	assert.Equal(t, 400, missing.Status)
	keyed := do(t, "POST", s.URL+"/orders", key, `{}`)
	assert.Equal(t, 201, keyed.Status)
	assert.Equal(t, before+2, streams(t, s), "a key-required route without a key, and a keyed request, reach GoPotency")
}

// TestShippedConfigOverUnixSocket runs GoPotency on a unix socket and
// Envoy's gopotency cluster on a pipe to it (what envoy/envoy-uds.yaml
// ships): first request, replay, mismatch.
func TestShippedConfigOverUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "gp-e2e-") // short: sun_path is 108 bytes
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "gopotency.sock")
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up, configure: func(c *config.Config) { c.GRPCAddr = "unix://" + sock }})
	require.Equal(t, "unix://"+sock, s.app.GRPCAddr())
	key := "uds-" + itoa(int(time.Now().UnixNano()))
	first := do(t, "POST", s.URL+"/orders", key, `{"item":"book"}`)
	require.Equal(t, 201, first.Status, "body: %s", first.Body)
	again := do(t, "POST", s.URL+"/orders", key, `{"item":"book"}`)
	assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
	assert.Equal(t, 422, do(t, "POST", s.URL+"/orders", key, `{"item":"car"}`).Status)
	assert.Equal(t, 1, up.count(key))
}

// shippedLayout is envoy/envoy.yaml as the generator writes it with
// envoy.body_first set to bodyFirst.
func shippedLayout(t *testing.T, bodyFirst bool) []byte {
	t.Helper()
	cfg, err := config.Load([]string{"--config", filepath.Join(root(t), "envoy", "gopotency.yaml")}, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	e, err := cfg.RequireEnvoy()
	require.NoError(t, err)
	e.BodyFirst = bodyFirst
	out, err := envoyconfig.Generate(cfg, "the shipped layout")
	require.NoError(t, err)
	return out
}

// TestBodyFirstLayout: with envoy.body_first, a replay is one ext_proc
// message and a first request three; requests without a body or chunked
// still work headers-first; the upstream runs once per key.
func TestBodyFirstLayout(t *testing.T) {
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up, envoy: shippedLayout(t, true)})
	key := "bf-" + itoa(int(time.Now().UnixNano()))

	m0 := messages(t, s)
	first := do(t, "POST", s.URL+"/orders", key, `{"item":"book"}`)
	require.Equal(t, 201, first.Status, "body: %s", first.Body)
	m1 := messages(t, s)
	assert.EqualValues(t, 3, m1-m0, "first request: request body, response headers, response body")
	again := do(t, "POST", s.URL+"/orders", key, `{"item":"book"}`)
	require.Equal(t, 201, again.Status)
	assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
	assert.Equal(t, string(first.Body), string(again.Body))
	assert.EqualValues(t, 1, messages(t, s)-m1, "a replay is one message")
	assert.Equal(t, 422, do(t, "POST", s.URL+"/orders", key, `{"item":"car"}`).Status)
	assert.Equal(t, 1, up.count(key))

	// Headers-first classes of the same layout.
	assert.Equal(t, 400, do(t, "POST", s.URL+"/payments", "", `{}`).Status, "key required")
	empty := "bf-empty-" + itoa(int(time.Now().UnixNano()))
	require.Equal(t, 201, do(t, "POST", s.URL+"/orders", empty, "").Status)
	assert.Equal(t, "true", do(t, "POST", s.URL+"/orders", empty, "").Header.Get("Idempotent-Replayed"))
	chunked := "bf-chunked-" + itoa(int(time.Now().UnixNano()))
	for range 2 {
		req, err := http.NewRequest("POST", s.URL+"/orders", io.MultiReader(strings.NewReader(`{"item":"book"}`)))
		require.NoError(t, err)
		req.Header.Set("Idempotency-Key", chunked)
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, 201, resp.StatusCode)
	}
	assert.Equal(t, 1, up.count(chunked), "a chunked body is judged headers-first, once")
	// A body-first key and the same request sent chunked are one request.
	assert.Equal(t, "true", do(t, "POST", s.URL+"/orders", chunked, `{"item":"book"}`).Header.Get("Idempotent-Replayed"))
}
