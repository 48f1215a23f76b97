package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// mtlsCluster is envoy/gopotency-cluster-mtls.yaml.
func mtlsCluster(t *testing.T) map[string]any {
	return readYAML(t, filepath.Join(root(t), "envoy", "gopotency-cluster-mtls.yaml"))
}

// clusterNamed returns the cluster of an Envoy config by name.
func clusterNamed(t *testing.T, cfg map[string]any, name string) (int, map[string]any) {
	t.Helper()
	for i, c := range dig(cfg, "static_resources", "clusters").([]any) {
		if c.(map[string]any)["name"] == name {
			return i, c.(map[string]any)
		}
	}
	t.Fatalf("no cluster %q", name)
	return 0, nil
}

// TestMTLSClusterIsEnvoyYAMLsPlusTLS: the shipped mTLS cluster differs from
// envoy.yaml's gopotency cluster by its transport_socket only, so the two
// cannot drift apart.
func TestMTLSClusterIsEnvoyYAMLsPlusTLS(t *testing.T) {
	_, plain := clusterNamed(t, readYAML(t, filepath.Join(root(t), "envoy", "envoy.yaml")), "gopotency")
	withTLS := mtlsCluster(t)
	require.Contains(t, withTLS, "transport_socket")
	delete(withTLS, "transport_socket")
	assert.Equal(t, plain, withTLS)
}

// TestMTLSThroughEnvoy runs the shipped Envoy config with its gopotency
// cluster replaced by envoy/gopotency-cluster-mtls.yaml, against a
// gopotency serving mTLS with throwaway certificates: Envoy's health checks
// and every ext_proc stream go over mTLS, and deduplication works.
func TestMTLSThroughEnvoy(t *testing.T) {
	ca := testenv.NewCA(t, "gopotency e2e CA")
	dir := t.TempDir()
	serverCert, serverKey := ca.Server(t, "gopotency").Write(t, dir, "server.crt", "server.key")
	ca.Client(t, "envoy").Write(t, dir, "client.crt", "client.key")
	caFile := testenv.WriteFile(t, dir, "ca.crt", ca.PEM)

	raw, err := os.ReadFile(filepath.Join(root(t), "envoy", "gopotency-cluster-mtls.yaml"))
	require.NoError(t, err)
	require.Contains(t, string(raw), "/etc/envoy/tls/")
	var tlsCluster map[string]any
	require.NoError(t, yaml.Unmarshal(bytes.ReplaceAll(raw, []byte("/etc/envoy/tls/"), []byte(dir+"/")), &tlsCluster))

	up := newCounter()
	s := startStack(t, stackOptions{
		upstream: up,
		configure: func(c *config.Config) {
			c.GRPCTLS = config.TLS{CertFile: serverCert, KeyFile: serverKey, ClientCAFile: caFile, ReloadInterval: time.Minute}
		},
		tweak: func(cfg []byte) []byte {
			var m map[string]any
			if err := yaml.Unmarshal(cfg, &m); err != nil {
				panic(err)
			}
			i, plain := clusterNamed(t, m, "gopotency")
			// Keep the loopback address and type the harness rewrote.
			tlsCluster["type"], tlsCluster["load_assignment"] = plain["type"], plain["load_assignment"]
			dig(m, "static_resources", "clusters").([]any)[i] = tlsCluster
			out, err := yaml.Marshal(m)
			if err != nil {
				panic(err)
			}
			return out
		},
	})
	require.Contains(t, s.logs.tail(100000), "grpc_tls=mtls")

	key := "mtls-" + itoa(int(time.Now().UnixNano()))
	first := do(t, "POST", s.URL+"/orders", key, `{"item":"book"}`)
	require.Equal(t, 201, first.Status, "body: %s", first.Body)
	again := do(t, "POST", s.URL+"/orders", key, `{"item":"book"}`)
	require.Equal(t, 201, again.Status, "body: %s", again.Body)
	assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
	assert.Equal(t, string(first.Body), string(again.Body))
	assert.Equal(t, 1, up.count(key))

	// The streams really went over TLS: Envoy counts handshakes on the cluster.
	n, err := s.envoy.Stat("cluster.gopotency.ssl.handshake")
	require.NoError(t, err)
	assert.Positive(t, n)
	assert.False(t, strings.Contains(s.envoy.Log(), "TLS_error"), "envoy log: %s", s.envoy.Log())
}
