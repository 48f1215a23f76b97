package e2e

import (
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// TestRouteHeaderMutationsComeAfterExtProc pins down why a header "the
// route sets" cannot select a policy under Envoy Gateway (README,
// Deployment): an HTTPRoute RequestHeaderModifier becomes route-level
// request_headers_to_add, and Envoy's router applies those after every
// HTTP filter. Here the route sets an Idempotency-Key: the upstream sees
// it, gopotency never does, so two identical requests both run.
func TestRouteHeaderMutationsComeAfterExtProc(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	})
	s := startStack(t, stackOptions{upstream: up, tweak: func(cfg []byte) []byte {
		var m map[string]any
		if err := yaml.Unmarshal(cfg, &m); err != nil {
			panic(err)
		}
		hcm := dig(dig(m, "static_resources", "listeners").([]any)[0].(map[string]any), "filter_chains").([]any)[0].(map[string]any)
		tc := dig(hcm["filters"].([]any)[0].(map[string]any), "typed_config").(map[string]any)
		vh := dig(tc, "route_config", "virtual_hosts").([]any)[0].(map[string]any)
		routes := vh["routes"].([]any)
		last := routes[len(routes)-1].(map[string]any) // the catch-all "/" route, default policy
		last["request_headers_to_add"] = []any{map[string]any{
			"header":        map[string]any{"key": "idempotency-key", "value": "set-by-the-route"},
			"append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
		}}
		out, err := yaml.Marshal(m)
		if err != nil {
			panic(err)
		}
		return out
	}})
	for range 2 {
		r := do(t, "POST", s.URL+"/orders", "", `{"item":"book"}`)
		require.Equal(t, 201, r.Status)
		assert.Empty(t, r.Header.Get("Idempotent-Replayed"))
	}
	mu.Lock()
	seen := append([]string(nil), keys...)
	mu.Unlock()
	assert.Equal(t, []string{"set-by-the-route", "set-by-the-route"}, seen, "the upstream sees the route's header, and both requests ran")

	// A key the client sends is seen: the retry replays, and the upstream
	// ran once more in all.
	do(t, "POST", s.URL+"/orders", "sent-by-the-client", `{}`)
	again := do(t, "POST", s.URL+"/orders", "sent-by-the-client", `{}`)
	assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
	mu.Lock()
	assert.Len(t, keys, 3)
	mu.Unlock()
}
