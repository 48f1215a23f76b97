package envoyconfig

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/internal/envoyrun"
)

// shippedEnvoy lists the generated files shipped in envoy/ and deploy/
// with the arguments that generate them; `make envoy-config` runs the
// same (TestMakeEnvoyConfigRunsEveryLine).
var shippedEnvoy = []struct{ file, args string }{
	{"envoy/envoy.yaml", "--config envoy/gopotency.yaml -o envoy/envoy.yaml"},
	{"envoy/envoy-uds.yaml", "--config envoy/gopotency.yaml --ext-proc-address unix:///run/gopotency/gopotency.sock -o envoy/envoy-uds.yaml"},
	{"deploy/overlays/istio-sidecar/envoyfilter.yaml", "--config deploy/overlays/istio-sidecar/gopotency.yaml --target istio-sidecar --namespace shop --selector app=orders --port 8080 -o deploy/overlays/istio-sidecar/envoyfilter.yaml"},
	{"deploy/overlays/istio-gateway/envoyfilter.yaml", "--config deploy/overlays/istio-gateway/gopotency.yaml --target istio-gateway --namespace istio-system --selector istio=ingressgateway --virtual-service deploy/overlays/istio-gateway/gateway.yaml -o deploy/overlays/istio-gateway/envoyfilter.yaml"},
	{"deploy/overlays/envoy-gateway/extensionpolicy.yaml", "--config deploy/overlays/envoy-gateway/gopotency.yaml --target envoy-gateway --namespace shop --http-route orders --gateway shop -o deploy/overlays/envoy-gateway/extensionpolicy.yaml"},
}

// TestShippedEnvoyConfigsAreGenerated regenerates every shipped Envoy
// configuration, EnvoyFilter and EnvoyExtensionPolicy from its GoPotency
// configuration and fails on any difference.
func TestShippedEnvoyConfigsAreGenerated(t *testing.T) {
	root, err := envoyrun.ModuleRoot()
	require.NoError(t, err)
	t.Chdir(root)
	for _, s := range shippedEnvoy {
		t.Run(s.file, func(t *testing.T) {
			shipped, err := os.ReadFile(s.file)
			require.NoError(t, err)
			var out bytes.Buffer
			argv := strings.Fields(strings.TrimSuffix(s.args, " -o "+s.file))
			require.NoError(t, Run(argv, &out, io.Discard))
			// The file names the command that writes it, -o included.
			want := bytes.Replace(out.Bytes(), []byte(strings.Join(argv, " ")+"\n"), []byte(s.args+"\n"), 1)
			if !bytes.Equal(want, shipped) {
				t.Fatalf("%s is not what the generator produces from %s; refresh it with\n  make envoy-config\nor\n  go run ./cmd/gopotency %s %s", s.file, argv[1], Command, s.args)
			}
		})
	}
}

// TestMakeEnvoyConfigRunsEveryLine: `make envoy-config` regenerates
// exactly the files the test above checks, with the same arguments.
func TestMakeEnvoyConfigRunsEveryLine(t *testing.T) {
	root, err := envoyrun.ModuleRoot()
	require.NoError(t, err)
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	require.NoError(t, err)
	var got, want []string
	in := false
	for _, l := range strings.Split(string(mk), "\n") {
		switch {
		case strings.HasPrefix(l, "envoy-config:"):
			in = true
		case in && strings.HasPrefix(l, "\t"):
			_, args, ok := strings.Cut(l, " envoy-config ")
			require.True(t, ok, "an envoy-config recipe line that does not run the generator: %q", l)
			got = append(got, args)
		case in:
			in = false
		}
	}
	for _, s := range shippedEnvoy {
		want = append(want, s.args)
	}
	require.Equal(t, want, got, "the Makefile's envoy-config recipe and shippedEnvoy list the same commands")
}

func TestEnvoyConfigFlags(t *testing.T) {
	root, err := envoyrun.ModuleRoot()
	require.NoError(t, err)
	t.Chdir(root)
	sidecar := "--config deploy/overlays/istio-sidecar/gopotency.yaml --target istio-sidecar --namespace shop"
	for args, want := range map[string]string{
		sidecar + " --selector app":         `"app": want label=value`,
		sidecar + " --selector app=a,app=b": "label app given twice",
		sidecar:                             "a workload selector is required",
		"--config envoy/gopotency.yaml --target consul":                                                `--target "consul": want one of`,
		"--config envoy/gopotency.yaml --namespace shop --port 1":                                      "[--namespace --port] name a Kubernetes object",
		"--config pkg/e2e/testdata/front-proxy/gopotency.yaml --target envoy-snippet --namespace shop": "[--namespace] name a Kubernetes object; --target envoy-snippet",
		"--config envoy/gopotency.yaml --ext-proc-address unix://run/gp.sock":                          "a socket is unix:///absolute/path",
		"--config envoy/gopotency.yaml --ext-proc-address gopotency":                                   "not host:port",
	} {
		err := Run(strings.Fields(args), io.Discard, io.Discard)
		require.ErrorContains(t, err, want, args)
	}
	require.NoError(t, Run([]string{"--help"}, io.Discard, io.Discard), "help is not an error")
	var out bytes.Buffer
	require.NoError(t, Run(strings.Fields(sidecar+" --selector app=orders,tier=api --name gp"), &out, io.Discard))
	require.Contains(t, out.String(), "  name: gp\n  namespace: shop\n")
	require.Contains(t, out.String(), "      app: orders\n      tier: api\n")
}
