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
	// The precedence of every setting: flag, environment, file.
	on := writeYAML(t, "pprof: true\n")
	c, err = load(t, nil, "--pprof=false", "--config", on)
	require.NoError(t, err)
	require.False(t, c.Pprof, "the flag wins over the file")
	c, err = load(t, map[string]string{"GOPOTENCY_PPROF": "0"}, "--config", on)
	require.NoError(t, err)
	require.False(t, c.Pprof, "the environment wins over the file")
}

// TestEnvoySectionForIstioAndEnvoyGateway: targets that route with their
// own objects need neither clusters nor prefixes; routes are then named.
func TestEnvoySectionForIstioAndEnvoyGateway(t *testing.T) {
	c, err := load(t, nil, "--config", writeYAML(t, `
policies: {pay: {key_required: true}}
envoy:
  ext_proc_address: gopotency.gopotency.svc.cluster.local:9002
  routes: [{name: payments, policy: pay}, {name: static, disabled: true}]
`))
	require.NoError(t, err)
	require.Equal(t, []EnvoyRoute{{Name: "payments", Policy: "pay"}, {Name: "static", Disabled: true}}, c.Envoy.Routes)
	require.Equal(t, "payments", c.Envoy.Routes[0].RouteName())
	require.Equal(t, "root", EnvoyRoute{Prefix: "/"}.RouteName())
	require.Equal(t, "api/v1", EnvoyRoute{Prefix: "/api/v1/"}.RouteName())

	_, err = load(t, nil, "--config", writeYAML(t, "envoy: {ext_proc_address: \"gp:9002\"}\n"))
	require.NoError(t, err, "an envoy section with only what Envoy Gateway reads")

	for yaml, want := range map[string]string{
		"routes: [{policy: pay}]":                                                      "a route needs a prefix (plain Envoy) or a name",
		"routes: [{name: a}, {name: a}]":                                               `a second route named "a"`,
		"routes: [{prefix: /a}, {prefix: /b, name: a}]":                                `a second route named "a"`,
		"routes: [{name: 'a b'}]":                                                      `name "a b"`,
		"routes: [{name: a, cluster: app}]":                                            `cluster "app" is not among envoy.clusters`,
		"clusters: [{name: app, address: a:1}]\n  routes: [{prefix: /}, {prefix: /x}]": "never matched",
	} {
		_, err := load(t, nil, "--config", writeYAML(t, "policies: {pay: {}}\nenvoy:\n  ext_proc_address: gp:9002\n  "+yaml+"\n"))
		requireErrorMentions(t, err, want)
	}
}
