package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// TestEveryStoreURLThroughEnvoy starts the server with each kind of --store
// URL, as an operator would, and checks first request, replay and
// mismatch through Envoy. The full behaviour table runs on memory and
// Redis (behaviour_test.go, redis_test.go); the SQL stores pass the same
// conformance suite in their packages.
func TestEveryStoreURLThroughEnvoy(t *testing.T) {
	stores := map[string]func(t testing.TB) string{
		"memory":   func(testing.TB) string { return "memory://" },
		"redis":    testenv.Redis,
		"postgres": testenv.Postgres,
		"sqlite":   func(t testing.TB) string { return "sqlite://" + filepath.Join(t.TempDir(), "gopotency.db") },
		"redis+cluster": func(t testing.TB) string {
			addrs := testenv.RedisCluster(t)
			u := "redis+cluster://"
			for i, a := range addrs {
				if i > 0 {
					u += ","
				}
				u += a
			}
			return u
		},
	}
	for name, url := range stores {
		t.Run(name, func(t *testing.T) {
			up := newCounter()
			s := startStack(t, stackOptions{upstream: up, store: url(t)})
			key := name + "-" + itoa(int(time.Now().UnixNano()))
			first := do(t, "POST", s.URL+"/orders", key, `{"n":1}`)
			require.Equal(t, 201, first.Status, "body: %s", first.Body)
			again := do(t, "POST", s.URL+"/orders", key, `{"n":1}`)
			require.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
			assert.Equal(t, first.Body, again.Body)
			assert.Equal(t, 422, do(t, "POST", s.URL+"/orders", key, `{"n":2}`).Status)
			assert.Equal(t, 1, up.count(key))
		})
	}
}
