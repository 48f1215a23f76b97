package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/gopotency/gopotency/internal/envoyrun"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// No Docker engine runs here, so the compose file is checked by reading it:
// every address Envoy dials must be a compose service listening there.
// deploy/check (make compose-check) also loads it with compose-go.

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &m), path)
	return m
}

func root(t *testing.T) string {
	r, err := envoyrun.ModuleRoot()
	require.NoError(t, err)
	return r
}

// envoyClusters maps cluster name to "host:port" from envoy.yaml.
func envoyClusters(t *testing.T, cfg map[string]any) map[string]string {
	out := map[string]string{}
	for _, c := range dig(cfg, "static_resources", "clusters").([]any) {
		cm := c.(map[string]any)
		ep := dig(cm, "load_assignment", "endpoints").([]any)[0]
		lb := dig(ep.(map[string]any), "lb_endpoints").([]any)[0]
		sa := dig(lb.(map[string]any), "endpoint", "address", "socket_address").(map[string]any)
		out[cm["name"].(string)] = net.JoinHostPort(sa["address"].(string), itoa(sa["port_value"].(int)))
	}
	return out
}

func dig(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		cur = cur.(map[string]any)[p]
	}
	return cur
}

func TestComposeMatchesEnvoyConfig(t *testing.T) {
	r := root(t)
	compose := readYAML(t, filepath.Join(r, "docker-compose.yml"))
	envoy := readYAML(t, filepath.Join(r, "envoy", "envoy.yaml"))
	gp := readYAML(t, filepath.Join(r, "envoy", "gopotency.yaml"))
	dockerfile, err := os.ReadFile(filepath.Join(r, "Dockerfile"))
	require.NoError(t, err)
	services := compose["services"].(map[string]any)
	clusters := envoyClusters(t, envoy)

	// The ext_proc cluster is the gopotency service on its gRPC port.
	require.Equal(t, "gopotency:9002", clusters["gopotency"])
	_, grpcPort, _ := net.SplitHostPort(gp["grpc_addr"].(string))
	assert.Equal(t, "9002", grpcPort, "gopotency.yaml grpc_addr must match the Envoy cluster")
	// The app cluster is the demo upstream on 8080.
	require.Equal(t, "app:8080", clusters["app"])
	assert.Contains(t, string(dockerfile), `ENTRYPOINT ["/demo-upstream", "--addr", ":8080"]`)

	for _, c := range clusters {
		host, _, _ := net.SplitHostPort(c)
		assert.Contains(t, services, host, "Envoy dials %s, which must be a compose service", c)
	}
	// Every build target exists in the Dockerfile.
	for name, s := range services {
		if b, ok := s.(map[string]any)["build"].(map[string]any); ok {
			assert.Regexp(t, regexp.MustCompile(`(?m)^FROM .* AS `+b["target"].(string)+`$`), string(dockerfile), "service %s", name)
		}
	}
	// Envoy runs the shipped file and publishes its listener and admin ports.
	ev := services["envoy"].(map[string]any)
	assert.Contains(t, ev["volumes"], "./envoy/envoy.yaml:/etc/envoy/envoy.yaml:ro")
	assert.Contains(t, strings.Join(toStrings(ev["command"]), " "), "-c /etc/envoy/envoy.yaml")
	listenerPort := itoa(dig(envoy, "static_resources", "listeners").([]any)[0].(map[string]any)["address"].(map[string]any)["socket_address"].(map[string]any)["port_value"].(int))
	assert.Contains(t, toStrings(ev["ports"]), listenerPort+":"+listenerPort)
	assert.Contains(t, ev["image"], "v1.40", "the Envoy image matches the tested version")
	// gopotency's store URL names a compose service.
	storeURL := services["gopotency"].(map[string]any)["environment"].(map[string]any)["GOPOTENCY_STORE"].(string)
	host := strings.Split(strings.TrimPrefix(storeURL, "redis://"), ":")[0]
	assert.Contains(t, services, host)
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// TestShippedEnvoyConfigsValidate runs `envoy --mode validate` on every
// Envoy config shipped.
func TestShippedEnvoyConfigsValidate(t *testing.T) {
	testenv.SkipShort(t, "the Envoy binary")
	bin, err := envoyrun.Find()
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	for _, f := range []string{"envoy.yaml", "envoy-uds.yaml"} {
		out, err := exec.Command(bin, "--mode", "validate", "-c", filepath.Join(root(t), "envoy", f)).CombinedOutput()
		require.NoError(t, err, "%s: %s", f, out)
		assert.Contains(t, string(out), "OK", f)
	}
}

// The Kubernetes manifests (deploy/) are validated by the deploy/check
// module (make test-deploy): strict decoding, CRD schemas, kustomize, and
// the Istio filter configs through envoy --mode validate.
