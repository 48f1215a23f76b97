package e2e

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// issuer is a throwaway identity provider: an RSA key made at test time
// (never committed), its JWKS, and RS256 tokens.
type issuer struct {
	key *rsa.PrivateKey
	kid string
}

func newIssuer(t *testing.T, kid string) *issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return &issuer{key: key, kid: kid}
}

var b64 = base64.RawURLEncoding

func (i *issuer) jwks(t *testing.T) []byte {
	t.Helper()
	e := big.NewInt(int64(i.key.E)).Bytes()
	b, err := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "alg": "RS256", "use": "sig", "kid": i.kid,
		"n": b64.EncodeToString(i.key.N.Bytes()), "e": b64.EncodeToString(e),
	}}})
	require.NoError(t, err)
	return b
}

// token signs claims, adding the issuer, audience and times of
// envoy/examples/jwt-scope.yaml's provider unless claims set them.
func (i *issuer) token(t *testing.T, claims map[string]any) string {
	t.Helper()
	now := time.Now().Unix()
	full := map[string]any{"iss": "https://idp.example.com", "aud": "orders-api", "iat": now, "exp": now + 600}
	for k, v := range claims {
		full[k] = v
	}
	head, err := json.Marshal(map[string]any{"alg": "RS256", "typ": "JWT", "kid": i.kid})
	require.NoError(t, err)
	body, err := json.Marshal(full)
	require.NoError(t, err)
	signed := b64.EncodeToString(head) + "." + b64.EncodeToString(body)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, i.key, crypto.SHA256, sum[:])
	require.NoError(t, err)
	return signed + "." + b64.EncodeToString(sig)
}

func bearer(tok string) string { return "Bearer " + tok }

// jwtScopeStack runs the generated Envoy config with envoy/examples/
// jwt-scope.yaml's filters first in its chain (edit, when set, changes
// them first), routes added first, and gopotency scoped on the headers
// they set.
func jwtScopeStack(t *testing.T, idp *issuer, up *witness, edit func(filters []any) []any, routes ...any) *stack {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "jwks.json"), idp.jwks(t), 0o600))
	var filters []any
	require.NoError(t, yaml.Unmarshal(example(t, "jwt-scope.yaml", dir), &filters))
	if edit != nil {
		filters = edit(filters)
	}
	return identityStack(t, up, withScope(t, map[string]any{"scope_headers": []any{"x-jwt-tenant", "x-jwt-sub"}}), func(e *envoyEdit) {
		e.prependFilters(filters)
		e.prependRoutes(routes)
	})
}

// decisions counts the requests gopotency's engine decided, whatever the
// outcome: a request refused before ext_proc adds none. (A stream may
// still open for Envoy's own answer, response headers only.)
func decisions(t *testing.T, s *stack) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.app.AdminAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var n float64
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "gopotency_decisions_total{"); ok {
			var v float64
			_, _ = fmtSscan(rest[strings.LastIndexByte(rest, ' ')+1:], &v)
			n += v
		}
	}
	return n
}

// TestJWTScope: with jwt_authn copying the token's sub (and tenant) into
// headers and gopotency scoped on them, a refreshed token is the same
// caller (its retry replays), another subject is another caller, and a
// client cannot choose its scope by sending the headers itself.
func TestJWTScope(t *testing.T) {
	idp := newIssuer(t, "test-key")
	up := newWitness("X-Jwt-Sub")
	s := jwtScopeStack(t, idp, up, nil)
	url := s.URL + "/orders"
	const body = `{"item":"book"}`
	now := time.Now().Unix()
	key := func(name string) string { return name + "-" + itoa(int(time.Now().UnixNano())) }

	t.Run("refreshed token replays", func(t *testing.T) {
		k := key("refresh")
		before := idp.token(t, map[string]any{"sub": "alice", "tenant": "acme", "iat": now - 300, "jti": "1"})
		after := idp.token(t, map[string]any{"sub": "alice", "tenant": "acme", "iat": now, "jti": "2"})
		require.NotEqual(t, before, after)
		first := do(t, "POST", url, k, body, "Authorization", bearer(before))
		require.Equal(t, 201, first.Status, "body: %s", first.Body)
		assert.Equal(t, []string{"alice"}, up.last(), "the upstream sees the verified claim")
		again := do(t, "POST", url, k, body, "Authorization", bearer(after))
		require.Equal(t, 201, again.Status, "body: %s", again.Body)
		assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
		assert.Equal(t, string(first.Body), string(again.Body))
		assert.Equal(t, 1, up.count(k), "one execution across the token refresh")
	})

	t.Run("another subject or tenant is another caller", func(t *testing.T) {
		k := key("other")
		alice := idp.token(t, map[string]any{"sub": "alice", "tenant": "acme"})
		require.Equal(t, 201, do(t, "POST", url, k, body, "Authorization", bearer(alice)).Status)
		for i, claims := range []map[string]any{{"sub": "bob", "tenant": "acme"}, {"sub": "alice", "tenant": "globex"}} {
			r := do(t, "POST", url, k, body, "Authorization", bearer(idp.token(t, claims)))
			require.Equal(t, 201, r.Status, "body: %s", r.Body)
			assert.Empty(t, r.Header.Get("Idempotent-Replayed"), "%v", claims)
			assert.Equal(t, i+2, up.count(k))
		}
	})

	// Each forgery targets a key alice has used: a replay would hand her
	// response to the forger.
	forgeries := []struct {
		name  string
		token string // "" sends none
		want  int    // 401: Envoy refuses; 201: the forger's own execution
	}{
		{"header with another token", idp.token(t, map[string]any{"sub": "mallory", "tenant": "acme"}), 201},
		{"header with a token lacking the claims", idp.token(t, map[string]any{}), 201},
		{"header without a token", "", 401},
		{"header with a token from another key", newIssuer(t, "test-key").token(t, map[string]any{"sub": "alice", "tenant": "acme"}), 401},
	}
	for _, f := range forgeries {
		t.Run("forged "+f.name, func(t *testing.T) {
			k := key("forged")
			alice := idp.token(t, map[string]any{"sub": "alice", "tenant": "acme"})
			require.Equal(t, 201, do(t, "POST", url, k, body, "Authorization", bearer(alice)).Status)
			decided := decisions(t, s)
			require.Positive(t, decided, "alice's request was decided")
			hdr := []string{"X-Jwt-Sub", "alice", "X-Jwt-Sub", "alice", "X-Jwt-Tenant", "acme"}
			if f.token != "" {
				hdr = append(hdr, "Authorization", bearer(f.token))
			}
			r := do(t, "POST", url, k, body, hdr...)
			require.Equal(t, f.want, r.Status, "body: %s", r.Body)
			assert.Empty(t, r.Header.Get("Idempotent-Replayed"), "the forger never gets alice's response")
			if f.want == 401 {
				assert.Equal(t, 1, up.count(k))
				assert.Equal(t, decided, decisions(t, s), "jwt_authn answers before gopotency sees the request")
				return
			}
			assert.Equal(t, 2, up.count(k), "the forger's request runs in its own scope")
			assert.NotContains(t, up.last(), "alice", "the client's header never reaches the upstream")
		})
	}
}

// TestJWTClaimHeadersNeedStripping pins down, on the real Envoy, what
// jwt_authn does with claim headers a client sends, and why
// envoy/examples/jwt-scope.yaml strips them first anyway. Envoy 1.40's
// jwt_authn removes them from every request it runs on, whether a rule
// verifies a token or not, before it copies the claims; but where it does
// not run (disabled for a route, a listener without it) they pass, and a
// policy scoped on them would let the client choose its scope.
func TestJWTClaimHeadersNeedStripping(t *testing.T) {
	idp := newIssuer(t, "test-key")
	forged := []string{"X-Jwt-Sub", "alice", "X-Jwt-Tenant", "acme"}
	mallory := idp.token(t, map[string]any{"sub": "mallory", "tenant": "acme"})
	// Rules that verify a token only when one is sent, allow_missing
	// under /optional, and a route /public where jwt_authn is off.
	rules := []any{
		map[string]any{"match": map[string]any{"prefix": "/optional"},
			"requires": map[string]any{"requires_any": map[string]any{"requirements": []any{
				map[string]any{"provider_name": "idp"}, map[string]any{"allow_missing": map[string]any{}}}}}},
		map[string]any{"match": map[string]any{"prefix": "/", "headers": []any{map[string]any{"name": "authorization", "present_match": true}}},
			"requires": map[string]any{"provider_name": "idp"}},
	}
	public := map[string]any{
		"match": map[string]any{"prefix": "/public"}, "route": map[string]any{"cluster": "app", "timeout": "30s"},
		"typed_per_filter_config": map[string]any{"envoy.filters.http.jwt_authn": map[string]any{
			"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": true}},
	}
	cases := []struct {
		name     string
		path     string
		token    string
		unstrip  []string // what the upstream sees without the strip filter
		stripped []string // and with it
	}{
		{"verified token", "/orders", mallory, []string{"mallory"}, []string{"mallory"}},
		{"allow_missing, no token", "/optional/orders", "", nil, nil},
		{"no rule matches", "/orders", "", nil, nil},
		{"jwt_authn disabled on the route", "/public/orders", "", []string{"alice"}, nil},
	}
	for _, strip := range []bool{false, true} {
		t.Run("strip filter "+map[bool]string{false: "off", true: "on"}[strip], func(t *testing.T) {
			up := newWitness("X-Jwt-Sub")
			s := jwtScopeStack(t, idp, up, func(filters []any) []any {
				jwt := filters[1].(map[string]any)
				require.Equal(t, "envoy.filters.http.jwt_authn", jwt["name"])
				dig(jwt, "typed_config").(map[string]any)["rules"] = rules
				if strip {
					return filters
				}
				return filters[1:]
			}, public)
			for _, c := range cases {
				hdr := forged
				if c.token != "" {
					hdr = append([]string{"Authorization", bearer(c.token)}, forged...)
				}
				r := do(t, "POST", s.URL+c.path, "strip-"+itoa(int(time.Now().UnixNano())), `{}`, hdr...)
				require.Equal(t, 201, r.Status, "%s: body %s", c.name, r.Body)
				want := c.unstrip
				if strip {
					want = c.stripped
				}
				assert.Equal(t, want, up.last(), "%s: the x-jwt-sub values that pass", c.name)
			}
		})
	}
}

// istioJWTFilter is the jwt_authn filter an Istio sidecar builds from
// deploy/overlays/istio-sidecar-jwt/requestauthentication.yaml, as Istio's
// pilot/pkg/security/authn/policy_applier.go translates a
// RequestAuthentication with one jwtRule (provider origins-0; one rule on
// prefix / requiring origins-0 or allow_missing), with the jwksUri
// replaced by a local JWKS file. Istio's own Envoy may be older than 1.40.
func istioJWTFilter(t *testing.T, jwks string) any {
	t.Helper()
	ra := readYAML(t, filepath.Join(root(t), "deploy", "overlays", "istio-sidecar-jwt", "requestauthentication.yaml"))
	rules := dig(ra, "spec", "jwtRules").([]any)
	require.Len(t, rules, 1)
	rule := rules[0].(map[string]any)
	var claims []any
	for _, c := range rule["outputClaimToHeaders"].([]any) {
		c := c.(map[string]any)
		claims = append(claims, map[string]any{"header_name": c["header"], "claim_name": c["claim"]})
	}
	return map[string]any{
		"name": "envoy.filters.http.jwt_authn",
		"typed_config": map[string]any{
			"@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
			"providers": map[string]any{"origins-0": map[string]any{
				"issuer": rule["issuer"], "audiences": rule["audiences"], "forward": rule["forwardOriginalToken"] == true,
				"claim_to_headers": claims, "payload_in_metadata": "istio/jwt",
				"local_jwks": map[string]any{"filename": jwks},
			}},
			"rules": []any{map[string]any{"match": map[string]any{"prefix": "/"}, "requires": map[string]any{"requires_any": map[string]any{"requirements": []any{
				map[string]any{"provider_name": "origins-0"}, map[string]any{"allow_missing": map[string]any{}},
			}}}}},
			"bypass_cors_preflight": true,
		},
	}
}

// TestIstioClaimScope runs the Istio overlay's RequestAuthentication (as
// the jwt_authn filter Istio makes of it) and its gopotency configuration
// through the real Envoy: a refreshed token replays, another subject runs,
// and claim headers a client sends never reach gopotency, with a token or
// without one (the overlay's DENY policy, not run here, refuses the
// latter before it gets that far).
func TestIstioClaimScope(t *testing.T) {
	idp := newIssuer(t, "test-key")
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	require.NoError(t, os.WriteFile(jwks, idp.jwks(t), 0o600))
	up := newWitness("X-Jwt-Sub")
	s := identityStack(t, up, filepath.Join(root(t), "deploy", "overlays", "istio-sidecar-jwt", "gopotency.yaml"), func(e *envoyEdit) {
		e.prependFilters([]any{istioJWTFilter(t, jwks)})
	})
	url := s.URL + "/orders"
	const body = `{"item":"book"}`
	k := "istio-" + itoa(int(time.Now().UnixNano()))
	now := time.Now().Unix()

	first := do(t, "POST", url, k, body, "Authorization", bearer(idp.token(t, map[string]any{"sub": "alice", "tenant": "acme", "iat": now - 300})))
	require.Equal(t, 201, first.Status, "body: %s", first.Body)
	again := do(t, "POST", url, k, body, "Authorization", bearer(idp.token(t, map[string]any{"sub": "alice", "tenant": "acme", "iat": now})))
	require.Equal(t, 201, again.Status)
	assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"), "a refreshed token replays")
	assert.Equal(t, 1, up.count(k))

	forged := []string{"X-Jwt-Sub", "alice", "X-Jwt-Tenant", "acme"}
	for i, hdr := range [][]string{
		append([]string{"Authorization", bearer(idp.token(t, map[string]any{"sub": "mallory", "tenant": "acme"}))}, forged...),
		forged,
	} {
		r := do(t, "POST", url, k, body, hdr...)
		require.Equal(t, 201, r.Status, "body: %s", r.Body)
		assert.Empty(t, r.Header.Get("Idempotent-Replayed"), "the forger never gets alice's response")
		assert.NotContains(t, up.last(), "alice")
		assert.Equal(t, i+2, up.count(k))
	}
}
