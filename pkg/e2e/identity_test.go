package e2e

import (
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
	"github.com/gopotency/gopotency/pkg/extproc"
)

// Helpers of the caller-identity tests (jwt_test.go, principal_test.go,
// sourceaddr_test.go): they derive Envoy configs from the shipped
// envoy/envoy.yaml, as docs/identity.md tells a user to.

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

// sendIdentity makes the ext_proc filter send the request attributes cfg's
// policies read, as the server's contract (extproc.NewContract) names
// them. On a hand-written headers-first config (no request_attributes yet)
// that is just the transport's facts (the peer, the client address), which
// headers cannot carry; on a config that already sends a body-first
// contract it is the whole contract derived from cfg, as `gopotency
// envoy-config` writes it.
func (e *envoyEdit) sendIdentity(cfg *config.Config) {
	c := extproc.NewContract(&cfg.Default, cfg.Policies, len(cfg.RoutePolicies) > 0)
	f := e.extProc()
	if _, generated := f["request_attributes"]; generated {
		f["request_attributes"] = toAny(c.Attributes)
		return
	}
	var attrs []string
	for _, a := range c.Attributes {
		if !strings.HasPrefix(a, "request.") && a != c.TokenAttribute && a != "xds.route_name" {
			attrs = append(attrs, a)
		}
	}
	if len(attrs) > 0 {
		f["request_attributes"] = toAny(attrs)
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
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
	out, err := yaml.Marshal(m)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "gopotency.yaml")
	require.NoError(t, os.WriteFile(p, out, 0o600))
	return p
}

// identityStack runs the shipped Envoy config changed by edit, and
// gopotency on configPath; the ext_proc filter sends the attributes its
// policies read (sendIdentity).
func identityStack(t *testing.T, up http.Handler, configPath string, edit func(e *envoyEdit)) *stack {
	t.Helper()
	var loaded *config.Config
	return startStack(t, stackOptions{
		upstream:  up,
		config:    configPath,
		configure: func(c *config.Config) { loaded = c },
		tweak: func(cfg []byte) []byte {
			e := editEnvoy(t, cfg)
			e.sendIdentity(loaded)
			edit(e)
			return e.bytes()
		},
	})
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
