package config

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// load runs Load with args and an environment given as a map.
func load(t *testing.T, env map[string]string, args ...string) (*Config, error) {
	t.Helper()
	return Load(args, func(k string) string { return env[k] }, io.Discard)
}

// writeYAML writes a config file and returns its path.
func writeYAML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gopotency.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

// requireErrorMentions checks err is one error naming every fragment.
func requireErrorMentions(t *testing.T, err error, fragments ...string) {
	t.Helper()
	require.Error(t, err)
	for _, f := range fragments {
		require.Contains(t, err.Error(), f)
	}
}

func TestDefaults(t *testing.T) {
	for name, args := range map[string][]string{
		"no config":           nil,
		"empty --config":      {"--config", ""},
		"empty file":          {"--config", writeYAML(t, "")},
		"comment-only file":   {"--config", writeYAML(t, "# nothing set\n")},
		"empty policies list": {"--config", writeYAML(t, "policies: {}\n")},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := load(t, nil, args...)
			require.NoError(t, err)
			require.Equal(t, DefaultGRPCAddr, c.GRPCAddr)
			require.Equal(t, DefaultAdminAddr, c.AdminAddr)
			require.Equal(t, DefaultStore, c.Store)
			require.Equal(t, DefaultLogLevel, c.LogLevel)
			require.Equal(t, DefaultLogFormat, c.LogFormat)
			require.Equal(t, "x-gopotency-policy", c.PolicyHeader)
			require.Equal(t, 30*time.Second, c.ShutdownGrace)
			require.Equal(t, DefaultDrainDelay, c.DrainDelay)
			require.Equal(t, DefaultStoreTimeout, c.StoreTimeout)
			require.Zero(t, c.MaxMessageTimeout)
			require.Equal(t, idempotency.DefaultPolicy(), c.Default)
			require.Empty(t, c.Policies)
		})
	}
}

// TestPrecedence: flags override env, env overrides YAML, YAML overrides
// defaults, setting by setting.
func TestPrecedence(t *testing.T) {
	file := writeYAML(t, `
grpc_addr: "127.0.0.1:1001"
admin_addr: "127.0.0.1:2001"
store: "memory://yaml"
log: {level: warn, format: text}
`)
	env := map[string]string{
		"GOPOTENCY_CONFIG":     file,
		"GOPOTENCY_GRPC_ADDR":  "127.0.0.1:1002",
		"GOPOTENCY_STORE":      "memory://env",
		"GOPOTENCY_LOG_LEVEL":  "error",
		"GOPOTENCY_ADMIN_ADDR": "",
	}
	c, err := load(t, env, "--grpc-addr", "127.0.0.1:1003", "--log-level", "debug")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:1003", c.GRPCAddr, "flag beats env and YAML")
	require.Equal(t, "debug", c.LogLevel, "flag beats env and YAML")
	require.Equal(t, "memory://env", c.Store, "env beats YAML")
	require.Equal(t, "127.0.0.1:2001", c.AdminAddr, "YAML beats the default (empty env is unset)")
	require.Equal(t, "text", c.LogFormat)

	c, err = load(t, env)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:1002", c.GRPCAddr, "env beats YAML")
	require.Equal(t, "error", c.LogLevel)

	// --config beats GOPOTENCY_CONFIG.
	other := writeYAML(t, "grpc_addr: \"127.0.0.1:1004\"\n")
	c, err = load(t, map[string]string{"GOPOTENCY_CONFIG": file}, "--config", other)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:1004", c.GRPCAddr)
	require.Equal(t, DefaultAdminAddr, c.AdminAddr, "the env's file is not read at all")
}

func TestUnknownFieldsAreNamed(t *testing.T) {
	for _, c := range []struct{ yaml, field string }{
		{"grpc_adr: \":1\"\n", "grpc_adr"},
		{"default_policy:\n  retenion: 1h\n", "retenion"},
		{"policies:\n  pay:\n    key_requird: true\n", "key_requird"},
		{"log:\n  colour: true\n", "colour"},
		{"ext_proc:\n  message_timeout: 1s\n", "message_timeout"},
	} {
		_, err := load(t, nil, "--config", writeYAML(t, c.yaml))
		requireErrorMentions(t, err, c.field)
	}
}

func TestEveryProblemIsReportedAtOnce(t *testing.T) {
	file := writeYAML(t, `
log: {format: xml}
default_policy:
  methods: [post]
  key_header: "Bad Header"
  fingerprint: sha1
  do_not_store: ["5xx", "6xx"]
policies:
  pay:
    scope_headers: ["x tenant"]
  slow:
    lease: 1ms
    max_response_body: 0
`)
	_, err := load(t, nil, "--config", file, "--grpc-addr", "nohostport", "--admin-addr", ":x:y", "--store", "redis-host", "--log-level", "loud")
	requireErrorMentions(t, err,
		`grpc_addr: "nohostport"`, "admin_addr", `store: "redis-host"`, `log level: "loud"`, `log format: "xml"`,
		`default_policy: do_not_store: "6xx"`,
		`policies.pay: header "x tenant" is not a valid header name`,
		"policies.slow: lease: must be at least 10ms", "policies.slow: max_request_body and max_response_body")

	// Without the bad status set, the policy's other problems show.
	file = writeYAML(t, `
default_policy:
  methods: [post]
  key_header: "Bad Header"
  fingerprint: sha1
`)
	_, err = load(t, nil, "--config", file)
	requireErrorMentions(t, err, `methods: "post"`, `key_header: "Bad Header"`, `fingerprint: "sha1"`)
}

// TestInheritedProblemsAreReportedOnce: a bad default_policy is not
// repeated for every named policy, and each line names its policy.
func TestInheritedProblemsAreReportedOnce(t *testing.T) {
	file := writeYAML(t, `
default_policy:
  methods: [post]
policies:
  b: {fingerprint: sha1}
  a: {key_header: "a b"}
`)
	_, err := load(t, nil, "--config", file)
	require.Error(t, err)
	require.Equal(t, 1, strings.Count(err.Error(), `methods: "post"`), err.Error())
	lines := strings.Split(err.Error(), "\n")
	require.Equal(t, []string{
		"invalid configuration:",
		`default_policy: methods: "post" is not an upper-case HTTP method`,
		`policies.a: key_header: "a b" is not a valid header name`,
		`policies.b: fingerprint: "sha1" is not one of body, headers-only, none`,
	}, lines, "one problem a line, policies in name order")
}

func TestBadDurationsAreNamed(t *testing.T) {
	file := writeYAML(t, `
shutdown_grace: 30
default_policy:
  lease: soon
policies:
  pay:
    retention: 1 day
`)
	_, err := load(t, nil, "--config", file, "--log-level", "loud")
	requireErrorMentions(t, err, `"30" is not a duration`, `"soon" is not a duration`, `"1 day" is not a duration`,
		"line 2", "line 4", "line 7", `log level: "loud"`)
	// A bad value is reported once, not again as the zero it decoded to.
	require.NotContains(t, err.Error(), "lease: must be at least 10ms")
	require.NotContains(t, err.Error(), "retention: must be positive")
}

func TestNamedPoliciesInheritTheDefault(t *testing.T) {
	file := writeYAML(t, `
default_policy:
  methods: [POST]
  retention: 1h
  scope_headers: [X-Tenant]
  fingerprint_headers: [Content-Type]
  do_not_store: ["5xx"]
policies:
  pay:
    key_required: true
    lease: 5s
  loose:
    methods: [POST, PUT]
    fingerprint: none
    do_not_store: []
`)
	c, err := load(t, nil, "--config", file)
	require.NoError(t, err)
	require.Equal(t, []string{"POST"}, c.Default.Methods)
	require.False(t, c.Default.KeyRequired)
	require.Equal(t, idempotency.DefaultPolicy().Lease, c.Default.Lease)

	pay := c.Policies["pay"]
	require.NotNil(t, pay)
	require.True(t, pay.KeyRequired)
	require.Equal(t, 5*time.Second, pay.Lease)
	require.Equal(t, time.Hour, pay.Retention, "inherited from default_policy")
	require.Equal(t, []string{"POST"}, pay.Methods)
	require.Equal(t, []string{"X-Tenant"}, pay.ScopeHeaders)
	require.Equal(t, []string{"Content-Type"}, pay.FingerprintHeaders)
	require.True(t, pay.DoNotStore.Contains(503))
	require.False(t, pay.DoNotStore.Contains(429), "the default_policy's set, not the built-in one")

	loose := c.Policies["loose"]
	require.Equal(t, []string{"POST", "PUT"}, loose.Methods)
	require.Equal(t, idempotency.FingerprintNone, loose.Fingerprint)
	require.False(t, loose.DoNotStore.Contains(503), "an empty list stores every status")
	require.Equal(t, time.Hour, loose.Retention)

	// Overrides do not leak between policies or back into the default.
	loose.Methods[0] = "PATCH"
	require.Equal(t, []string{"POST"}, c.Default.Methods)
	require.Equal(t, []string{"POST"}, pay.Methods)
}

func TestPolicyFields(t *testing.T) {
	file := writeYAML(t, `
ext_proc:
  policy_header: x-route-policy
  max_message_timeout: 2s
shutdown_grace: 3s
drain_delay: 500ms
default_policy:
  key_header: X-Request-Key
  canonical_json: true
  scope_principal: true
  replay_denylist: [Set-Cookie]
  replay_allowlist: [Content-Type, Location]
  max_request_body: 1024
  max_response_body: 2048
  wait_in_flight: 1500ms
  fail_open: true
  auto_key:
    headers: [X-Customer]
    json_fields: [order.id]
`)
	c, err := load(t, nil, "--config", file)
	require.NoError(t, err)
	require.Equal(t, "x-route-policy", c.PolicyHeader)
	require.Equal(t, 2*time.Second, c.MaxMessageTimeout)
	require.Equal(t, 3*time.Second, c.ShutdownGrace)
	require.Equal(t, 500*time.Millisecond, c.DrainDelay)
	p := c.Default
	require.Equal(t, "X-Request-Key", p.KeyHeader)
	require.True(t, p.CanonicalJSON)
	require.True(t, p.ScopePrincipal)
	require.True(t, p.FailOpen)
	require.Equal(t, []string{"Set-Cookie"}, p.ReplayDenylist)
	require.Equal(t, []string{"Content-Type", "Location"}, p.ReplayAllowlist)
	require.EqualValues(t, 1024, p.MaxRequestBody)
	require.EqualValues(t, 2048, p.MaxResponseBody)
	require.Equal(t, 1500*time.Millisecond, p.WaitInFlight)
	require.Equal(t, &idempotency.AutoKey{Headers: []string{"X-Customer"}, JSONFields: []string{"order.id"}}, p.AutoKey)
}

func TestCommandLineMistakes(t *testing.T) {
	_, err := load(t, nil, "--no-such-flag")
	require.Error(t, err)
	_, err = load(t, nil, "stray")
	requireErrorMentions(t, err, "stray")
	_, err = load(t, nil, "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	requireErrorMentions(t, err, "missing.yaml")
	_, err = load(t, nil, "--config", writeYAML(t, "grpc_addr: [unclosed\n"))
	require.Error(t, err)
	_, err = load(t, nil, "--config", writeYAML(t, "- a list\n"))
	require.Error(t, err)
}

func TestShippedConfigLoads(t *testing.T) {
	c, err := load(t, nil, "--config", filepath.Join("..", "..", "envoy", "gopotency.yaml"))
	require.NoError(t, err)
	require.Equal(t, "text", c.LogFormat)
	require.Equal(t, 30*time.Second, c.MaxMessageTimeout, "must match envoy.yaml's max_message_timeout")
	pay := c.Policies["payments"]
	require.NotNil(t, pay, "envoy.yaml's /payments route names this policy")
	require.True(t, pay.KeyRequired)
	require.True(t, pay.CanonicalJSON)
	require.Equal(t, c.Default.Methods, pay.Methods)
	require.NoError(t, pay.Validate())
	require.True(t, strings.Contains(c.Store, "://"))
}

func TestWaitNeedsMaxMessageTimeout(t *testing.T) {
	path := writeYAML(t, "default_policy: {wait_in_flight: 5s}\npolicies:\n  slow: {wait_in_flight: 40s}\next_proc: {max_message_timeout: 30s}\nstore_timeout: 0s\n")
	_, err := load(t, nil, "--config", path)
	requireErrorMentions(t, err, "policies.slow: wait_in_flight 40s needs ext_proc.max_message_timeout above it", "store_timeout: must be positive")
	require.NotContains(t, err.Error(), "default_policy: wait_in_flight", "5s fits under 30s")
}

func TestOutcomeSettings(t *testing.T) {
	c, err := load(t, nil, "--config", writeYAML(t, `
default_policy: {retry_after: 2s}
ext_proc: {max_buffered_bytes: 67108864, route_policies: {"httproute/shop/payments/": rollback}}
policies:
  rollback:
    unknown_outcome: retry_after_lease
  anon:
    scope_headers: []
    auto_key: {body: true, source_address: true}
`))
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, c.Default.RetryAfter)
	require.Equal(t, idempotency.UnknownRecord, c.Default.UnknownOutcome, "the safe default")
	require.Equal(t, idempotency.UnknownRetryAfterLease, c.Policies["rollback"].UnknownOutcome)
	require.Equal(t, 2*time.Second, c.Policies["rollback"].RetryAfter, "inherited")
	require.True(t, c.Policies["anon"].AutoKey.SourceAddress)
	require.Equal(t, int64(64<<20), c.MaxBufferedBytes)
	require.Equal(t, map[string]string{"httproute/shop/payments/": "rollback"}, c.RoutePolicies)

	_, err = load(t, nil, "--config", writeYAML(t, `
default_policy: {lease: 0s, retry_after: 0s, unknown_outcome: maybe}
ext_proc: {max_buffered_bytes: 1000, route_policies: {"r/": nope}}
policies:
  anon: {scope_headers: [], auto_key: {body: true}}
`))
	requireErrorMentions(t, err, "lease: must be at least 10ms", "retry_after: must be at least 1s", `unknown_outcome: "maybe"`,
		"max_buffered_bytes", `route "r/" names policy "nope"`, "policies.anon: auto_key: derived keys need a caller identity")

	_, err = load(t, nil, "--config", writeYAML(t, `
ext_proc: {max_buffered_bytes: 16777216}
policies: {uploads: {max_request_body: 20971520}}
`))
	requireErrorMentions(t, err, "max_buffered_bytes: 16777216 is below one request's bodies under policies.uploads")
}

// TestEveryPolicyFieldHasAKey keeps the yaml tags of idempotency.Policy
// the one place a policy setting is named: a field added without a tag
// (or with a duplicate one) fails here rather than being silently
// unconfigurable.
func TestEveryPolicyFieldHasAKey(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[idempotency.Policy](), reflect.TypeFor[idempotency.AutoKey]()} {
		require.Equal(t, typ.NumField(), len(settingKeys(typ)), "one YAML key per %s field", typ.Name())
	}
}

// TestPolicyValueErrorsAreReportedWithDecodingErrors: a malformed status
// set does not hide a bad duration elsewhere, nor the reverse.
func TestPolicyValueErrorsAreReportedWithDecodingErrors(t *testing.T) {
	file := writeYAML(t, `
default_policy:
  lease: soon
  do_not_store: ["7xx"]
  auto_key: {headers: [A], bogus: 1}
`)
	_, err := load(t, nil, "--config", file)
	requireErrorMentions(t, err, `line 3: "soon" is not a duration`, "default_policy: do_not_store:", `"7xx"`, "line 5: field bogus not found")
}

// TestEmptyStringsMeanTheDefault: the file is decoded onto the defaults,
// and an empty string written in it still means the default.
func TestEmptyStringsMeanTheDefault(t *testing.T) {
	file := writeYAML(t, `
grpc_addr: ""
admin_addr: ""
store: ""
log: {level: "", format: ""}
ext_proc: {policy_header: ""}
`)
	c, err := load(t, nil, "--config", file)
	require.NoError(t, err)
	require.Equal(t, DefaultGRPCAddr, c.GRPCAddr)
	require.Equal(t, DefaultAdminAddr, c.AdminAddr)
	require.Equal(t, DefaultStore, c.Store)
	require.True(t, c.StoreDefaulted)
	require.Equal(t, DefaultLogLevel, c.LogLevel)
	require.Equal(t, DefaultLogFormat, c.LogFormat)
	require.Equal(t, "x-gopotency-policy", c.PolicyHeader)
}

// TestNamedPoliciesNeverShareTheDefaultsValues: decoding a named policy
// onto a copy of default_policy replaces its lists and its auto_key; it
// never writes through them into the default (or another policy).
func TestNamedPoliciesNeverShareTheDefaultsValues(t *testing.T) {
	file := writeYAML(t, `
default_policy:
  methods: [POST]
  auto_key: {headers: [X-A], body: true}
policies:
  other:
    methods: [PUT]
    auto_key: {headers: [X-B]}
`)
	c, err := load(t, nil, "--config", file)
	require.NoError(t, err)
	require.Equal(t, []string{"POST"}, c.Default.Methods)
	require.Equal(t, &idempotency.AutoKey{Headers: []string{"X-A"}, Body: true}, c.Default.AutoKey)
	require.Equal(t, []string{"PUT"}, c.Policies["other"].Methods)
	require.Equal(t, &idempotency.AutoKey{Headers: []string{"X-B"}}, c.Policies["other"].AutoKey, "auto_key is replaced as a whole")
}
