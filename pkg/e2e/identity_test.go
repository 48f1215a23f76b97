package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/envoyconfig"
)

// Helpers of the caller-identity tests (jwt_test.go, principal_test.go,
// sourceaddr_test.go): they add to the generated Envoy config what
// docs/identity.md tells a user to add.

// envoyEdit is a parsed Envoy bootstrap a test changes.
type envoyEdit struct {
	t *testing.T
	m map[string]any
}

func editEnvoy(t *testing.T, cfg []byte) *envoyEdit {
	t.Helper()
	e := &envoyEdit{t: t}
	require.NoError(t, yaml.Unmarshal(cfg, &e.m))
	return e
}

func (e *envoyEdit) bytes() []byte {
	out, err := yaml.Marshal(e.m)
	require.NoError(e.t, err)
	return out
}

// chain is the listener's (only) filter chain.
func (e *envoyEdit) chain() map[string]any {
	l := dig(e.m, "static_resources", "listeners").([]any)[0].(map[string]any)
	return l["filter_chains"].([]any)[0].(map[string]any)
}

func (e *envoyEdit) hcm() map[string]any {
	return dig(e.chain()["filters"].([]any)[0].(map[string]any), "typed_config").(map[string]any)
}

// extProc is the ext_proc filter's typed_config.
func (e *envoyEdit) extProc() map[string]any {
	for _, f := range e.hcm()["http_filters"].([]any) {
		if f.(map[string]any)["name"] == "envoy.filters.http.ext_proc" {
			return f.(map[string]any)["typed_config"].(map[string]any)
		}
	}
	e.t.Fatal("no ext_proc filter")
	return nil
}

// prependFilters puts HTTP filters first in the chain, as
// envoy/examples/jwt-scope.yaml says.
func (e *envoyEdit) prependFilters(filters []any) {
	hcm := e.hcm()
	hcm["http_filters"] = append(slices.Clone(filters), hcm["http_filters"].([]any)...)
}

// prependRoutes puts routes first in the virtual host.
func (e *envoyEdit) prependRoutes(routes []any) {
	vh := dig(e.hcm(), "route_config", "virtual_hosts").([]any)[0].(map[string]any)
	vh["routes"] = append(slices.Clone(routes), vh["routes"].([]any)...)
}

// example reads envoy/examples/<name> with its /etc/envoy/ paths moved to
// dir, where the test writes the keys and certificates it generates.
func example(t *testing.T, name, dir string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root(t), "envoy", "examples", name))
	require.NoError(t, err)
	require.Contains(t, string(raw), "/etc/envoy/", "%s names its files under /etc/envoy/", name)
	return []byte(strings.ReplaceAll(string(raw), "/etc/envoy/", dir+"/"))
}

// withScope writes envoy/gopotency.yaml with default_policy (and so every
// named policy, which inherits it) changed by set, and returns its path.
func withScope(t *testing.T, set map[string]any) string {
	t.Helper()
	m := readYAML(t, filepath.Join(root(t), "envoy", "gopotency.yaml"))
	def, _ := m["default_policy"].(map[string]any)
	if def == nil {
		def = map[string]any{}
		m["default_policy"] = def
	}
	for k, v := range set {
		def[k] = v
	}
	return writeYAML(t, m)
}

// identityStack runs gopotency on configPath behind the Envoy config
// `gopotency envoy-config` generates from it (the shipped envoy section
// when configPath has none), changed by edit: routes, filters and request
// attributes follow the policies, as they do for a user.
func identityStack(t *testing.T, up http.Handler, configPath string, edit func(e *envoyEdit)) *stack {
	t.Helper()
	configPath = withEnvoySection(t, configPath)
	cfg, err := config.Load([]string{"--config", configPath}, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	generated, err := envoyconfig.Generate(cfg, "the identity tests")
	require.NoError(t, err)
	return startStack(t, stackOptions{
		upstream: up,
		config:   configPath,
		envoy:    generated,
		tweak: func(b []byte) []byte {
			e := editEnvoy(t, b)
			edit(e)
			return e.bytes()
		},
	})
}

// withEnvoySection returns configPath, or a copy of it with
// envoy/gopotency.yaml's envoy section when it has none or one plain
// Envoy cannot run (an Istio or Envoy Gateway overlay's, without
// clusters).
func withEnvoySection(t *testing.T, configPath string) string {
	t.Helper()
	m := readYAML(t, configPath)
	if e, ok := m["envoy"].(map[string]any); ok && e["clusters"] != nil {
		return configPath
	}
	m["envoy"] = readYAML(t, filepath.Join(root(t), "envoy", "gopotency.yaml"))["envoy"]
	require.NotNil(t, m["envoy"], "envoy/gopotency.yaml has an envoy section")
	return writeYAML(t, m)
}

func writeYAML(t *testing.T, m map[string]any) string {
	t.Helper()
	out, err := yaml.Marshal(m)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "gopotency.yaml")
	require.NoError(t, os.WriteFile(p, out, 0o600))
	return p
}

// witness is an upstream that counts executions per key (counter) and
// notes the values of one request header each execution saw.
type witness struct {
	*counter
	header string
	mu     sync.Mutex
	seen   [][]string
}

func newWitness(header string) *witness { return &witness{counter: newCounter(), header: header} }

func (w *witness) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	w.seen = append(w.seen, r.Header.Values(w.header))
	w.mu.Unlock()
	w.counter.ServeHTTP(rw, r)
}

// last is what the latest execution saw of the header.
func (w *witness) last() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.seen) == 0 {
		return nil
	}
	return w.seen[len(w.seen)-1]
}
