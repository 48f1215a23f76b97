package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestGRPCTLSFromYAMLEnvAndFlags(t *testing.T) {
	c, err := load(t, nil)
	require.NoError(t, err)
	require.False(t, c.GRPCTLS.Enabled(), "TLS is off by default")
	require.Equal(t, DefaultTLSReloadInterval, c.GRPCTLS.ReloadInterval)

	file := writeYAML(t, `
grpc_tls:
  cert_file: /yaml/tls.crt
  key_file: /yaml/tls.key
  client_ca_file: /yaml/ca.crt
  reload_interval: 30s
`)
	c, err = load(t, nil, "--config", file)
	require.NoError(t, err)
	require.Equal(t, TLS{CertFile: "/yaml/tls.crt", KeyFile: "/yaml/tls.key", ClientCAFile: "/yaml/ca.crt", ReloadInterval: 30 * time.Second}, c.GRPCTLS)
	require.True(t, c.GRPCTLS.Enabled())

	env := map[string]string{"GOPOTENCY_GRPC_TLS_CERT": "/env/tls.crt", "GOPOTENCY_GRPC_TLS_KEY": "/env/tls.key", "GOPOTENCY_GRPC_TLS_CLIENT_CA": "/env/ca.crt"}
	c, err = load(t, env, "--config", file, "--grpc-tls-key", "/flag/tls.key")
	require.NoError(t, err)
	require.Equal(t, "/env/tls.crt", c.GRPCTLS.CertFile, "env beats YAML")
	require.Equal(t, "/flag/tls.key", c.GRPCTLS.KeyFile, "flag beats env")
	require.Equal(t, "/env/ca.crt", c.GRPCTLS.ClientCAFile)
}

func TestGRPCTLSProblemsAreReported(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--grpc-tls-cert", "/c"}, "grpc_tls: cert_file is set but key_file is not"},
		{[]string{"--grpc-tls-key", "/k"}, "grpc_tls: key_file is set but cert_file is not"},
		{[]string{"--grpc-tls-client-ca", "/ca"}, "grpc_tls: client_ca_file needs cert_file and key_file"},
		{[]string{"--config", writeYAML(t, "grpc_tls: {cert_file: /c, key_file: /k, reload_interval: 10ms}\n")}, "reload_interval 10ms: must be at least 1s"},
		{[]string{"--config", writeYAML(t, "grpc_tls: {certfile: /c}\n")}, "certfile"},
	} {
		_, err := load(t, nil, append(c.args, "--log-level", "loud")...)
		requireErrorMentions(t, err, c.want, `log level: "loud"`) // reported with the others
	}
}

func TestStoreDefaulted(t *testing.T) {
	c, err := load(t, nil)
	require.NoError(t, err)
	require.True(t, c.StoreDefaulted)
	require.Equal(t, DefaultStore, c.Store)
	for _, args := range [][]string{{"--store", "memory://"}, {"--config", writeYAML(t, "store: memory://\n")}} {
		c, err := load(t, nil, args...)
		require.NoError(t, err)
		require.False(t, c.StoreDefaulted, "%v: memory:// chosen on purpose", args)
	}
	c, err = load(t, map[string]string{"GOPOTENCY_STORE": "redis://r:6379/0"})
	require.NoError(t, err)
	require.False(t, c.StoreDefaulted)
}

func TestVersionFlagSkipsValidation(t *testing.T) {
	// --version answers even where the rest of the configuration would
	// not load, so `docker run image --version` always works.
	c, err := load(t, map[string]string{"GOPOTENCY_STORE": "not a url"}, "--version", "--config", "/does/not/exist")
	require.NoError(t, err)
	require.True(t, c.ShowVersion)
}
