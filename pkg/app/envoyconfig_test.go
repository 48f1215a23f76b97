package app

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/internal/envoyrun"
)

// shippedEnvoy lists the Envoy configurations shipped in envoy/ with the
// arguments that generate them; `make envoy-config` runs the same.
var shippedEnvoy = []struct{ file, args string }{
	{"envoy/envoy.yaml", "--config envoy/gopotency.yaml -o envoy/envoy.yaml"},
	{"envoy/envoy-uds.yaml", "--config envoy/gopotency.yaml --ext-proc-address unix:///run/gopotency/gopotency.sock -o envoy/envoy-uds.yaml"},
}

// TestShippedEnvoyConfigsAreGenerated regenerates every shipped Envoy
// configuration from envoy/gopotency.yaml and fails on any difference.
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
			require.NoError(t, EnvoyConfig(argv, &out, io.Discard))
			// The file names the command that writes it, -o included.
			want := bytes.Replace(out.Bytes(), []byte(strings.Join(argv, " ")+"\n"), []byte(s.args+"\n"), 1)
			if !bytes.Equal(want, shipped) {
				t.Fatalf("%s is not what the generator produces from envoy/gopotency.yaml; refresh it with\n  make envoy-config\nor\n  go run ./cmd/gopotency %s %s", s.file, EnvoyConfigCommand, s.args)
			}
		})
	}
}
