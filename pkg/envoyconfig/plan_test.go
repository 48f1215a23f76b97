package envoyconfig

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/extproc"
)

// envoySection is a small envoy section; tests append routes and flags.
const envoySection = `
envoy:
  listen: 127.0.0.1:10000
  admin: 127.0.0.1:9901
  ext_proc_address: 127.0.0.1:9002
  clusters: [{name: app, address: "127.0.0.1:8080"}]
`

func load(t *testing.T, yaml string) (*config.Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gopotency.yaml")
	require.NoError(t, os.WriteFile(p, []byte(yaml), 0o600))
	return config.Load([]string{"--config", p}, func(string) string { return "" }, io.Discard)
}

func plan(t *testing.T, yaml string) *Plan {
	t.Helper()
	c, err := load(t, yaml)
	require.NoError(t, err)
	p, err := NewPlan(c)
	require.NoError(t, err)
	return p
}

// summary is a class in a line: name action methods key max-length policy.
func summary(p *Plan) []string {
	var out []string
	for _, k := range p.Classes {
		s := k.Name + " " + k.Action.String()
		if k.Methods != nil {
			s += " " + strings.Join(k.Methods, "|")
		}
		if k.KeyHeader != "" {
			s += " key=" + k.KeyHeader
		}
		if k.MaxContentLength > 0 {
			s += " len<=" + itoa(k.MaxContentLength)
		}
		if k.Policy != "" {
			s += " policy=" + k.Policy
		}
		out = append(out, s)
	}
	return out
}

const policies = `
default_policy: {methods: [POST], max_request_body: 1000}
policies:
  pay: {key_required: true, key_header: X-Pay-Key, max_request_body: 5000}
  auto: {auto_key: {body: true, headers: [Authorization]}}
  nobody: {fingerprint: headers-only}
`

const routes = `  routes:
  - {prefix: /pay, policy: pay}
  - {prefix: /auto, policy: auto}
  - {prefix: /nobody, policy: nobody}
  - {prefix: /static, disabled: true}
  - {prefix: /, timeout: 10s}
`

func TestClassesHeadersFirst(t *testing.T) {
	p := plan(t, policies+envoySection+routes)
	assert.Equal(t, []string{
		"pay:guarded headers-first POST policy=pay",
		"pay:skip skip",
		"auto:guarded headers-first POST policy=auto",
		"auto:skip skip",
		"nobody:keyed headers-first POST key=idempotency-key policy=nobody",
		"nobody:skip skip",
		"static:skip skip",
		"root:keyed headers-first POST key=idempotency-key",
		"root:skip skip",
	}, summary(p))
	assert.False(t, p.BodyFirst)
	assert.Empty(t, p.RequestAttributes, "headers-first streams read the headers; no CEL needed")
	assert.Equal(t, extproc.ResponseAttributes, p.ResponseAttributes)
	assert.EqualValues(t, 5000+BufferMargin, p.BufferLimit, "the largest cap of a guarded route, plus the margin")
}

func TestClassesBodyFirst(t *testing.T) {
	p := plan(t, policies+envoySection+"  body_first: true\n"+routes)
	assert.Equal(t, []string{
		"pay:body-first body-first POST key=x-pay-key len<=5000 policy=pay",
		"pay:guarded headers-first POST policy=pay",
		"pay:skip skip",
		"auto:body-first body-first POST key=idempotency-key len<=1000 policy=auto",
		"auto:guarded headers-first POST policy=auto",
		"auto:skip skip",
		// headers-only fingerprint: the body is never needed, so
		// buffering it in Envoy would only add latency.
		"nobody:keyed headers-first POST key=idempotency-key policy=nobody",
		"nobody:skip skip",
		"static:skip skip",
		"root:body-first body-first POST key=idempotency-key len<=1000",
		"root:keyed headers-first POST key=idempotency-key",
		"root:skip skip",
	}, summary(p))
	c, err := load(t, policies+envoySection+"  body_first: true\n"+routes)
	require.NoError(t, err)
	want := extproc.NewContract(&c.Default, c.Policies, false)
	assert.Equal(t, want.Attributes, p.RequestAttributes, "exactly the contract the server checks")
	assert.Equal(t, want.Token, p.Contract.Token)
}

// TestClassesGRPC: routes to a gRPC upstream get a gRPC class first, for
// every call where the key is required or derived, for keyed calls
// otherwise; the rest keeps its classes (a gRPC call without a key skips
// the filter like any unkeyed request).
func TestClassesGRPC(t *testing.T) {
	section := strings.Replace(envoySection, `"127.0.0.1:8080"}`, `"127.0.0.1:8080", grpc: true}`, 1)
	p := plan(t, policies+section+routes)
	assert.Equal(t, []string{
		"pay:grpc grpc POST policy=pay",
		"pay:guarded headers-first POST policy=pay",
		"pay:skip skip",
		"auto:grpc grpc POST policy=auto",
		"auto:guarded headers-first POST policy=auto",
		"auto:skip skip",
		"nobody:grpc grpc POST key=idempotency-key policy=nobody",
		"nobody:keyed headers-first POST key=idempotency-key policy=nobody",
		"nobody:skip skip",
		"static:skip skip",
		"root:grpc grpc POST key=idempotency-key",
		"root:keyed headers-first POST key=idempotency-key",
		"root:skip skip",
	}, summary(p))
	for _, k := range p.Classes {
		assert.Equal(t, k.Action == GRPCCall, k.GRPC, k.Name)
	}
	out, err := p.Envoy("test")
	require.NoError(t, err)
	assert.Equal(t, 4, strings.Count(string(out), "request_body_mode: FULL_DUPLEX_STREAMED"), "one static full-duplex mode per gRPC route")
	assert.Equal(t, 4, strings.Count(string(out), "{name: content-type, string_match: {prefix: application/grpc}}"))
	assert.Equal(t, 1, strings.Count(string(out), "http2_protocol_options: {}"), "the gRPC upstream speaks HTTP/2")

	plain := plan(t, policies+envoySection+routes)
	assert.NotContains(t, summary(plain), "root:grpc grpc POST key=idempotency-key", "no gRPC classes without a gRPC upstream")
}

func TestHeadersFirstAttributesAreWhatHeadersCannotCarry(t *testing.T) {
	c, err := load(t, "default_policy: {scope_principal: true, auto_key: {body: true}}\n"+envoySection+"  routes: [{prefix: /}]\n")
	require.NoError(t, err)
	p, err := NewPlan(c)
	require.NoError(t, err)
	assert.Equal(t, []string{"connection.mtls", "connection.uri_san_peer_certificate", "connection.subject_peer_certificate"}, p.RequestAttributes)
	c.Default.AutoKey.SourceAddress = true
	p, err = NewPlan(c)
	require.NoError(t, err)
	assert.Equal(t, []string{"connection.mtls", "connection.uri_san_peer_certificate", "connection.subject_peer_certificate", "source.address"}, p.RequestAttributes)
}

func TestDisabledRoutesDoNotRaiseTheBufferLimit(t *testing.T) {
	p := plan(t, `
policies: {huge: {max_request_body: 50000000}}
`+envoySection+"  routes: [{prefix: /}]\n")
	assert.EqualValues(t, 1<<20+BufferMargin, p.BufferLimit, "only policies of routes count")
	p = plan(t, `
policies: {huge: {max_request_body: 5000000}}
ext_proc: {route_policies: {uploads: huge}}
`+envoySection+"  routes: [{prefix: /}]\n")
	assert.EqualValues(t, 5000000+BufferMargin, p.BufferLimit, "a policy route_policies may choose counts")
	p = plan(t, `
default_policy: {max_request_body: 3000000}
envoy: {ext_proc_address: "gopotency.gopotency.svc:9002"}
`)
	assert.EqualValues(t, 3000000+BufferMargin, p.BufferLimit, "without routes of its own (Istio, Envoy Gateway) the default policy guards what is targeted")
}

func TestRefusals(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"no envoy section": {"grpc_addr: :9002\n", "no envoy section"},
		"no ext_proc address": {`
envoy:
  clusters: [{name: app, address: "a:1"}]
  routes: [{prefix: /}]
`, "ext_proc_address: required"},
		"buffer over 32 bits": {"default_policy: {max_request_body: 4294967295}\next_proc: {max_buffered_bytes: 9000000000}\n" + envoySection + "  routes: [{prefix: /}]\n", "32-bit"},
		"listener host name":  {strings.Replace(envoySection, "listen: 127.0.0.1:10000", "listen: envoy:10000", 1) + "  routes: [{prefix: /}]\n", `envoy.listen: "envoy": Envoy binds IP addresses only`},
		"port zero":           {strings.Replace(envoySection, "127.0.0.1:9002", "127.0.0.1:0", 1) + "  routes: [{prefix: /}]\n", "port must be 1 to 65535"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := load(t, tc.yaml)
			require.NoError(t, err)
			_, err = NewPlan(c)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestConfigRefusesWhatNoEnvoyCanRoute(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown field":                       {envoySection + "  routes: [{prefix: /, polcy: x}]\n", "field polcy not found"},
		"unknown policy":                      {envoySection + "  routes: [{prefix: /, policy: nope}]\n", `policy "nope" is not among policies`},
		"shadowed route":                      {envoySection + "  routes: [{prefix: /}, {prefix: /pay}]\n", `never matched, the earlier prefix "/"`},
		"relative prefix":                     {envoySection + "  routes: [{prefix: pay}]\n", "prefix must start with /"},
		"unknown cluster":                     {envoySection + "  routes: [{prefix: /, cluster: db}]\n", `cluster "db" is not among`},
		"disabled with policy":                {"policies: {p: {}}\n" + envoySection + "  routes: [{prefix: /, policy: p, disabled: true}]\n", "a disabled route names no policy"},
		"message timeout under store timeout": {"store_timeout: 2s\n" + envoySection + "  routes: [{prefix: /}]\n", "must be above store_timeout"},
		"cluster name":                        {strings.Replace(envoySection, "name: app", "name: 'a b'", 1) + "  routes: [{prefix: /, cluster: 'a b'}]\n", "use letters, digits"},
		"reserved cluster":                    {strings.Replace(envoySection, "name: app", "name: gopotency", 1) + "  routes: [{prefix: /}]\n", "taken by the ext_proc cluster"},
		"socket path":                         {strings.Replace(envoySection, "127.0.0.1:9002", "unix://run/x.sock", 1) + "  routes: [{prefix: /}]\n", "unix:///absolute/path"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, tc.yaml)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestSocketBesideEnvoyByDefault(t *testing.T) {
	p := plan(t, "grpc_addr: unix:///run/gp/gp.sock\n"+strings.Replace(envoySection, "  ext_proc_address: 127.0.0.1:9002\n", "", 1)+"  routes: [{prefix: /}]\n")
	assert.Equal(t, Endpoint{Pipe: "/run/gp/gp.sock"}, p.ExtProc)
	assert.False(t, p.ExtProc.NeedsDNS())
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// A route without a policy of its own is cut into classes for the default
// policy; a route_policies entry that can choose another one for it at run
// time would guard requests those classes pass with the filter off, so the
// generator refuses it and names the fix.
func TestRoutePoliciesOverAPlainRouteAreRefused(t *testing.T) {
	c, err := load(t, `
default_policy: {methods: [PUT]}
policies: {pay: {methods: [POST]}}
ext_proc: {route_policies: {orders: pay}}
`+envoySection+"  routes: [{prefix: /orders, cluster: app}]\n")
	require.NoError(t, err)
	_, err = NewPlan(c)
	require.ErrorContains(t, err, "set policy: pay on the route")

	c.Envoy.Routes[0].Policy = "pay"
	_, err = NewPlan(c)
	require.NoError(t, err, "a route naming its policy is cut for that policy")
}
