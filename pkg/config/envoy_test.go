package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestEnvoySectionDefaults(t *testing.T) {
	c, err := load(t, nil, "--config", writeYAML(t, `
policies: {pay: {key_required: true}}
envoy:
  ext_proc_address: gopotency:9002
  clusters: [{name: app, address: "app:8080"}]
  routes:
  - {prefix: /pay, policy: pay, timeout: 30s}
  - {prefix: /}
`))
	require.NoError(t, err)
	require.Equal(t, &Envoy{
		Listen: DefaultEnvoyListen, Admin: DefaultEnvoyAdmin, ExtProcAddress: "gopotency:9002", MessageTimeout: DefaultMessageTimeout,
		Clusters: []EnvoyCluster{{Name: "app", Address: "app:8080"}},
		Routes:   []EnvoyRoute{{Prefix: "/pay", Policy: "pay", Cluster: "app", Timeout: 30 * time.Second}, {Prefix: "/", Cluster: "app"}},
	}, c.Envoy)
}

func TestNoEnvoySection(t *testing.T) {
	c, err := load(t, nil)
	require.NoError(t, err)
	require.Nil(t, c.Envoy)
	_, err = c.RequireEnvoy()
	require.ErrorContains(t, err, "no envoy section")
}

func TestEnvoySectionNeedsAClusterPerRouteWhenThereAreSeveral(t *testing.T) {
	_, err := load(t, nil, "--config", writeYAML(t, `
envoy:
  ext_proc_address: gopotency:9002
  clusters: [{name: a, address: "a:1"}, {name: b, address: "b:1"}]
  routes: [{prefix: /}]
`))
	requireErrorMentions(t, err, `envoy.routes[0] (/): cluster "" is not among envoy.clusters`)
}

func TestUnixGRPCAddr(t *testing.T) {
	c, err := load(t, nil, "--grpc-addr", "unix:///run/gopotency/gp.sock")
	require.NoError(t, err)
	require.Equal(t, "unix:///run/gopotency/gp.sock", c.GRPCAddr)
	require.Equal(t, DefaultGRPCSocketMode, c.GRPCSocketMode)
	for _, bad := range []string{"unix://relative.sock", "unix:/x.sock", "unix:///a/../b.sock", "unix:///" + strings.Repeat("a", 120)} {
		_, err := load(t, nil, "--grpc-addr", bad)
		requireErrorMentions(t, err, "grpc_addr")
	}
}

func TestGRPCSocketMode(t *testing.T) {
	c, err := load(t, nil, "--config", writeYAML(t, "grpc_socket: {mode: \"0666\"}\n"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o666), c.GRPCSocketMode)
	for _, bad := range []string{"rw", "0999", "01777", "0060"} {
		_, err := load(t, nil, "--config", writeYAML(t, "grpc_socket: {mode: \""+bad+"\"}\n"))
		requireErrorMentions(t, err, "grpc_socket.mode")
	}
}

func TestPprofIsOffByDefault(t *testing.T) {
	c, err := load(t, nil)
	require.NoError(t, err)
	require.False(t, c.Pprof)
	for _, on := range [][]string{{"--pprof"}, {"--config", writeYAML(t, "pprof: true\n")}} {
		c, err = load(t, nil, on...)
		require.NoError(t, err)
		require.True(t, c.Pprof, "%v", on)
	}
	c, err = load(t, map[string]string{"GOPOTENCY_PPROF": "1"})
	require.NoError(t, err)
	require.True(t, c.Pprof)
}
