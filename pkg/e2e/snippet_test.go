package e2e

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/gopotency/gopotency/internal/envoyrun"
	"github.com/gopotency/gopotency/pkg/envoyconfig"
)

// spliceSnippet adds an envoy-snippet's parts to an Envoy config the way
// its comments tell a user to, and points the config's addresses at the
// test's: its listener and admin, every cluster of its own at app.
func spliceSnippet(t *testing.T, envoyCfg, snippet []byte, a envoyrun.Addrs) []byte {
	var doc, snip map[string]any
	require.NoError(t, yaml.Unmarshal(envoyCfg, &doc))
	require.NoError(t, yaml.Unmarshal(snippet, &snip))
	sock := func(host string, port int) map[string]any {
		return map[string]any{"socket_address": map[string]any{"address": host, "port_value": port}}
	}
	doc["admin"].(map[string]any)["address"] = sock("127.0.0.1", a.Admin)
	appHost, appPort, err := net.SplitHostPort(a.App)
	require.NoError(t, err)
	port, err := strconv.Atoi(appPort)
	require.NoError(t, err)

	sr := doc["static_resources"].(map[string]any)
	var clusters []any
	for _, c := range sr["clusters"].([]any) {
		c := c.(map[string]any)
		c["type"] = "STATIC"
		c["load_assignment"].(map[string]any)["endpoints"] = []any{map[string]any{"lb_endpoints": []any{map[string]any{"endpoint": map[string]any{"address": sock(appHost, port)}}}}}
		clusters = append(clusters, c)
	}
	// Part 3: the gopotency cluster.
	sr["clusters"] = append(clusters, snip["clusters"].([]any)...)

	listeners := sr["listeners"].([]any)
	require.Len(t, listeners, 1)
	l := listeners[0].(map[string]any)
	l["address"] = sock("127.0.0.1", a.Listen)
	// Part 1: the listener's buffer limit.
	for k, v := range snip["listener"].(map[string]any) {
		l[k] = v
	}
	perRoute := snip["routes"].(map[string]any)
	spliced := map[string]bool{}
	for _, fc := range l["filter_chains"].([]any) {
		for _, f := range fc.(map[string]any)["filters"].([]any) {
			hcm := f.(map[string]any)["typed_config"].(map[string]any)
			// Part 2: the filter, before the router.
			var filters []any
			for _, hf := range hcm["http_filters"].([]any) {
				if hf.(map[string]any)["name"] == "envoy.filters.http.router" {
					filters = append(filters, snip["http_filters"].([]any)...)
				}
				filters = append(filters, hf)
			}
			hcm["http_filters"] = filters
			// Part 4: each guarded route's typed_per_filter_config.
			for _, vh := range hcm["route_config"].(map[string]any)["virtual_hosts"].([]any) {
				for _, r := range vh.(map[string]any)["routes"].([]any) {
					r := r.(map[string]any)
					name, _ := r["name"].(string)
					if add, ok := perRoute[name]; ok {
						for k, v := range add.(map[string]any) {
							r[k] = v
						}
						spliced[name] = true
					}
				}
			}
		}
	}
	for name := range perRoute {
		require.True(t, spliced[name], "the front proxy has no route %q for the snippet", name)
	}
	out, err := yaml.Marshal(doc)
	require.NoError(t, err)
	return out
}

// TestEnvoySnippetSplicedIntoAFrontProxy: `gopotency envoy-config
// --target envoy-snippet`, added to a front proxy written the way Envoy's
// examples are (several routes and clusters, no GoPotency), validates and
// passes the rows every deployment form keeps, through the real Envoy.
func TestEnvoySnippetSplicedIntoAFrontProxy(t *testing.T) {
	dir := filepath.Join(root(t), "pkg", "e2e", "testdata", "front-proxy")
	front, err := os.ReadFile(filepath.Join(dir, "envoy.yaml"))
	require.NoError(t, err)
	cfgPath := filepath.Join(dir, "gopotency.yaml")
	up := newCounter()
	s := startStack(t, stackOptions{
		upstream: up, config: cfgPath, extProcStats: "http.ingress_http.ext_proc.",
		bootstrap: func(a envoyrun.Addrs) []byte {
			var snippet bytes.Buffer
			require.NoError(t, envoyconfig.Run([]string{"--config", cfgPath, "--target", "envoy-snippet", "--ext-proc-address", a.GoPotency}, &snippet, io.Discard))
			cfg := spliceSnippet(t, front, snippet.Bytes(), a)
			// What a user runs before reloading their Envoy.
			path := filepath.Join(t.TempDir(), "envoy.yaml")
			require.NoError(t, os.WriteFile(path, cfg, 0o600))
			bin, err := envoyrun.Find()
			require.NoError(t, err)
			out, err := exec.Command(bin, "--mode", "validate", "-c", path).CombinedOutput()
			require.NoError(t, err, "envoy --mode validate:\n%s", out)
			return cfg
		},
	})

	// The key-required route: its policy came through the per-route
	// metadata (the default policy would pass a request without a key).
	t.Run("payments-policy", func(t *testing.T) {
		r := do(t, "POST", s.URL+"/payments", "", `{"a":1}`)
		assert.Equal(t, 400, r.Status, "body: %s", r.Body)
		assert.Zero(t, up.count(""), "nothing ran")
		key := "snippet-pay-" + itoa(int(up.total.Load()))
		first := do(t, "POST", s.URL+"/payments", key, `{"a":1,"b":2}`)
		require.Equal(t, 201, first.Status, "body: %s", first.Body)
		again := do(t, "POST", s.URL+"/payments", key, `{"b":2, "a":1}`) // canonical_json
		assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
		assert.Equal(t, 1, up.count(key))
	})
	// On a guarded route, what no policy guards opens no stream (the
	// filter's matcher), and still reaches the upstream.
	t.Run("unguarded-methods-skip", func(t *testing.T) {
		before := streams(t, s)
		key := "snippet-get-" + itoa(int(up.total.Load()))
		for range 2 {
			require.Equal(t, 201, do(t, "GET", s.URL+"/orders", key, "").Status)
		}
		assert.Equal(t, 2, up.count(key))
		assert.Equal(t, before, streams(t, s))
	})
	// A route the snippet does not name: the filter stays off there.
	t.Run("other-routes-untouched", func(t *testing.T) {
		before := streams(t, s)
		key := "snippet-svc-" + itoa(int(up.total.Load()))
		for range 2 {
			require.Equal(t, 201, do(t, "POST", s.URL+"/service/1", key, `{}`).Status)
		}
		assert.Equal(t, 2, up.count(key))
		assert.Equal(t, before, streams(t, s))
	})
	checkForm(t, form{s: s, up: up, client: hostClient("front-proxy"), guarded: s.URL + "/orders", unguarded: s.URL + "/static/x", maxBody: 1 << 20})
}
