package envoyconfig

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

const snippetConfig = `
ext_proc: {max_message_timeout: 30s}
policies: {payments: {key_required: true, max_request_body: 2097152}}
envoy:
  ext_proc_address: gopotency.internal:9002
  routes:
  - {name: orders}
  - {name: payments, policy: payments}
  - {name: static, disabled: true}
`

// TestSnippetMatchesTheBootstrap: the filter and the gopotency cluster a
// snippet adds are the whole bootstrap's, for the same configuration;
// each named route gets the per-route config that turns the filter on
// with its policy, and a disabled one none.
func TestSnippetMatchesTheBootstrap(t *testing.T) {
	out, err := generate(t, snippetConfig, TargetEnvoySnippet, Kube{})
	require.NoError(t, err)
	var snip struct {
		Listener    map[string]any
		HTTPFilters []map[string]any `yaml:"http_filters"`
		Clusters    []map[string]any
		Routes      map[string]map[string]any
	}
	require.NoError(t, yaml.Unmarshal(out, &snip))

	// The same policies and routes as a bootstrap's (routes by prefix,
	// with a cluster).
	boot, err := generate(t, `
ext_proc: {max_message_timeout: 30s}
policies: {payments: {key_required: true, max_request_body: 2097152}}
envoy:
  ext_proc_address: gopotency.internal:9002
  clusters: [{name: app, address: 127.0.0.1:8080}]
  routes: [{prefix: /orders}, {prefix: /payments, policy: payments}, {prefix: /static, disabled: true}]
`, TargetEnvoy, Kube{})
	require.NoError(t, err)
	var b map[string]any
	require.NoError(t, yaml.Unmarshal(boot, &b))
	sr := b["static_resources"].(map[string]any)
	l := sr["listeners"].([]any)[0].(map[string]any)
	hcm := l["filter_chains"].([]any)[0].(map[string]any)["filters"].([]any)[0].(map[string]any)["typed_config"].(map[string]any)
	bootFilter := hcm["http_filters"].([]any)[0].(map[string]any)

	assert.Equal(t, l["per_connection_buffer_limit_bytes"], snip.Listener["per_connection_buffer_limit_bytes"])
	require.Len(t, snip.HTTPFilters, 1)
	assert.Equal(t, true, snip.HTTPFilters[0]["disabled"], "off except on the routes named")
	assert.Equal(t, bootFilter["name"], snip.HTTPFilters[0]["name"])
	wrapped := snip.HTTPFilters[0]["typed_config"].(map[string]any)
	assert.Equal(t, "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher", wrapped["@type"])
	inner := wrapped["extension_config"].(map[string]any)
	assert.Equal(t, bootFilter["name"], inner["name"])
	assert.Equal(t, bootFilter["typed_config"], inner["typed_config"], "the bootstrap's ext_proc filter")
	// payments requires a key: only the methods are skipped, filter-wide.
	assert.Contains(t, string(out), `regex: "PATCH|POST"`)
	assert.NotContains(t, string(out), "key-idempotency-key")
	require.Len(t, snip.Clusters, 1)
	assert.Equal(t, sr["clusters"].([]any)[0], any(snip.Clusters[0]), "the bootstrap's gopotency cluster")

	require.Len(t, snip.Routes, 2, "orders and payments; static needs nothing")
	ext := func(r map[string]any) map[string]any {
		return r["typed_per_filter_config"].(map[string]any)["envoy.filters.http.ext_proc"].(map[string]any)
	}
	assert.Equal(t, map[string]any{}, ext(snip.Routes["orders"])["overrides"])
	assert.Equal(t, map[string]any{"grpc_initial_metadata": []any{map[string]any{"key": "x-gopotency-policy", "value": "payments"}}},
		ext(snip.Routes["payments"])["overrides"])
}

// TestSnippetSkipsKeylessWhenNoRouteRequiresAKey: with every guarded
// route's key optional, requests without the key header are skipped too.
func TestSnippetSkipsKeylessWhenNoRouteRequiresAKey(t *testing.T) {
	out, err := generate(t, "policies: {put: {methods: [PUT]}}\nenvoy:\n  ext_proc_address: gopotency:9002\n  routes: [{name: a}, {name: b, policy: put}]\n", TargetEnvoySnippet, Kube{})
	require.NoError(t, err)
	assert.Contains(t, string(out), `regex: "PATCH|POST|PUT"`)
	assert.Contains(t, string(out), `header_name: "idempotency-key"`)
}

func TestSnippetRefuses(t *testing.T) {
	const addr = "envoy:\n  ext_proc_address: gopotency:9002\n"
	for name, tc := range map[string]struct{ yaml, want string }{
		"body first":    {addr + "  body_first: true\n  routes: [{name: a}]\n", "body_first: not in a snippet"},
		"clusters":      {addr + "  clusters: [{name: app, address: a:1}]\n  routes: [{name: a}]\n", "leave clusters out of a snippet"},
		"no routes":     {addr, "name at least one of your routes"},
		"route timeout": {addr + "  routes: [{name: a, timeout: 5s}]\n", "cluster and timeout are your route's own"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := generate(t, tc.yaml, TargetEnvoySnippet, Kube{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
