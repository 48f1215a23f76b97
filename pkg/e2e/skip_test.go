package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/config"
)

// streams is Envoy's count of ext_proc streams opened so far.
func streams(t *testing.T, s *stack) int64 {
	t.Helper()
	n, err := s.envoy.Stat("http.ingress.ext_proc.streams_started")
	require.NoError(t, err)
	return n
}

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
