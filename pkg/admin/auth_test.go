package admin_test

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/admin"
)

func TestOffWithoutTokenEveryRouteIs404(t *testing.T) {
	f := newFixture(t, setup{off: true})
	for _, rt := range []struct{ method, path string }{
		{http.MethodPost, admin.RouteInspect}, {http.MethodPost, admin.RoutePurge}, {http.MethodGet, admin.RoutePolicies}, {http.MethodGet, "/admin/v2/x"},
	} {
		a := f.do(t, rt.method, rt.path, testToken, keyBody())
		requireProblem(t, a, http.StatusNotFound, "admin-api-off")
		require.Contains(t, a.str("detail"), "admin.token_file")
	}
	require.EqualValues(t, 4, f.counter(t, "gopotency_admin_requests_total", "op", "other", "code", "404"))
}

func TestBearerTokenIsRequired(t *testing.T) {
	f := newFixture(t, setup{})
	lease := f.begin(t, rawKey)
	defer func() { _ = lease.Abandon(t.Context(), false) }()

	a := f.do(t, http.MethodPost, admin.RouteInspect, "", keyBody())
	requireProblem(t, a, http.StatusUnauthorized, "admin-unauthorized")
	require.Equal(t, `Bearer realm="gopotency-admin"`, a.header.Get("WWW-Authenticate"))
	require.Nil(t, a.get("state"), "nothing about the key leaks")

	for _, tok := range []string{"wrong-token-of-good-length", testToken + "x", testToken[:len(testToken)-1]} {
		a = f.do(t, http.MethodPost, admin.RoutePurge+"?force=true", tok, keyBody())
		requireProblem(t, a, http.StatusUnauthorized, "admin-unauthorized")
		require.Equal(t, `Bearer realm="gopotency-admin", error="invalid_token"`, a.header.Get("WWW-Authenticate"))
	}
	ent, err := f.store.Get(t.Context(), lease.StorageKey())
	require.NoError(t, err, "a refused purge deleted nothing")
	require.Equal(t, "in_flight", ent.State.String())

	// Other schemes, a token without its scheme, and two Authorization
	// fields are refused too.
	for _, hdr := range [][]string{{"Basic " + testToken}, {testToken}, {"Bearer " + testToken, "Bearer " + testToken}, {"Bearer"}} {
		req, err := http.NewRequest(http.MethodGet, f.srv.URL+admin.RoutePolicies, nil)
		require.NoError(t, err)
		req.Header["Authorization"] = hdr
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%q", hdr)
	}
	// The scheme is case-insensitive (RFC 9110 §11.1).
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+admin.RoutePolicies, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	a = f.inspect(t, "", keyBody())
	require.Equal(t, http.StatusOK, a.status, a.raw)
	require.Equal(t, "in_flight", a.str("state"))

	require.EqualValues(t, 8, f.counter(t, "gopotency_admin_requests_total", "op", "other", "code", "401"), "refused before routing")
	require.Len(t, f.logs.records(t, "admin API: request refused"), 8)
	require.NotContains(t, f.logs.String(), "wrong-token-of-good-length", "a presented token is never logged")
	f.requireNoSecrets(t)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path+".tmp", []byte(content), 0o600))
	require.NoError(t, os.Rename(path+".tmp", path)) // atomically, as a Secret update does
}

func TestTokenFileRotationTakesEffectAtOnce(t *testing.T) {
	const a, b = "first-token-0123456789", "second-token-0123456789"
	path := filepath.Join(t.TempDir(), "token")
	writeFile(t, path, a+"\n")
	logs := &syncBuffer{}
	toks, err := admin.TokenFile(path, slog.New(slog.NewJSONHandler(logs, nil)))
	require.NoError(t, err)
	f := newFixture(t, setup{tokens: toks})
	status := func(tok string) int {
		return f.do(t, http.MethodGet, admin.RoutePolicies, tok, nil).status
	}
	require.Equal(t, 200, status(a))
	require.Equal(t, 401, status(b))

	writeFile(t, path, "# rotation in progress\n"+a+"\n\n  "+b+"  \r\n")
	require.Equal(t, 200, status(a), "two tokens let a rotation overlap")
	require.Equal(t, 200, status(b))

	writeFile(t, path, b+"\n")
	require.Equal(t, 401, status(a), "the replaced token is refused at once")
	require.Equal(t, 200, status(b))

	// A file that stops loading fails closed, whatever was accepted before.
	for _, broken := range []string{"", "short\n", "has space in-the-middle-of-it\n"} {
		writeFile(t, path, broken)
		got := f.do(t, http.MethodGet, admin.RoutePolicies, b, nil)
		requireProblem(t, got, http.StatusServiceUnavailable, "admin-token-unavailable")
	}
	require.NoError(t, os.Remove(path))
	requireProblem(t, f.do(t, http.MethodGet, admin.RoutePolicies, b, nil), http.StatusServiceUnavailable, "admin-token-unavailable")
	writeFile(t, path, b)
	require.Equal(t, 200, status(b), "and recovers when it loads again")

	loaded := logs.records(t, "admin API: token file loaded")
	require.Len(t, loaded, 3, "each change is logged once: rotation, replacement, recovery")
	require.Equal(t, []any{admin.TokenID(b)}, loaded[2]["token_ids"])
	require.Len(t, logs.records(t, "admin API: the token file does not load; refusing every API request until it does"), 4, "each distinct failure once")
	for _, tok := range []string{a, b} {
		require.NotContains(t, logs.String(), tok)
	}
}

func TestTokensMustBeStrongAndSendable(t *testing.T) {
	for _, tok := range []string{"", "short-token", "with space but long enough", "quote\"d-but-long-enough", "=====leading-padding-is-not-token68"} {
		_, err := admin.StaticToken(tok)
		require.Error(t, err, "%q", tok)
		if tok != "" {
			require.NotContains(t, err.Error(), tok, "errors never print the token")
		}
	}
	tok, err := admin.StaticToken("  padded-base64+/token==\n")
	require.NoError(t, err, "surrounding whitespace (a trailing newline) is not part of it")
	ids, err := tok.IDs()
	require.NoError(t, err)
	sum := sha256.Sum256([]byte("padded-base64+/token=="))
	require.Equal(t, []string{"sha256:" + hex.EncodeToString(sum[:])[:12]}, ids, "the documented sha256sum recipe gives the id")

	dir := t.TempDir()
	_, err = admin.TokenFile(filepath.Join(dir, "missing"), nil)
	require.ErrorContains(t, err, "no such file")
	for content, want := range map[string]string{"": "no token", "# only a comment\n": "no token", "ok-token-0123456789\nshort\n": "line 2", strings.Repeat("x", 70<<10): "larger than"} {
		p := filepath.Join(dir, "t")
		writeFile(t, p, content)
		_, err = admin.TokenFile(p, nil)
		require.ErrorContains(t, err, want)
	}
}
