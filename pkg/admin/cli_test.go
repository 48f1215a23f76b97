package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/admin"
	"github.com/gopotency/gopotency/pkg/idempotency"
)

// cli runs `gopotency admin args…` against the fixture's server.
func (f *fixture) cli(t *testing.T, stdin string, env map[string]string, args ...string) (map[string]any, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	if env == nil {
		env = map[string]string{"GOPOTENCY_ADMIN_TOKEN": testToken}
	}
	env["GOPOTENCY_ADMIN_URL"] = f.srv.URL
	err := admin.CLI(context.Background(), args, strings.NewReader(stdin), &out, &errOut, func(k string) string { return env[k] })
	var ans map[string]any
	if out.Len() > 0 {
		require.NoError(t, json.Unmarshal(out.Bytes(), &ans), out.String())
	}
	return ans, err
}

func TestCLIInspectsAndPurges(t *testing.T) {
	f := newFixture(t, setup{})
	l := f.begin(t, rawKey)

	// Flags name the key...
	ans, err := f.cli(t, "", nil, "inspect", "--key", rawKey, "--header", "Authorization: "+bearer)
	require.NoError(t, err)
	require.Equal(t, "in_flight", ans["state"])

	// ...or a JSON body on stdin, which keeps the credential off the
	// command line.
	stdin := `{"key":"` + rawKey + `","headers":{"Authorization":"` + bearer + `"},"reason":"INC-9"}`
	ans, err = f.cli(t, stdin, nil, "purge", "--input", "-")
	require.ErrorContains(t, err, "409 Conflict")
	require.Equal(t, idempotency.ProblemTypeBase+"admin-purge-refused", ans["type"], "the problem is printed too")

	tokFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokFile, []byte("# admin\n"+testToken+"\n"), 0o600))
	ans, err = f.cli(t, stdin, map[string]string{}, "purge", "--input", "-", "--force", "--token-file", tokFile)
	require.NoError(t, err)
	require.Equal(t, true, ans["purged"])
	audit := f.logs.records(t, "admin: purge")
	require.Equal(t, "INC-9", audit[len(audit)-1]["reason"])
	require.NoError(t, l.Abandon(context.Background(), false))

	ans, err = f.cli(t, "", nil, "policies")
	require.NoError(t, err)
	require.Len(t, ans["policies"], 1)

	_, err = f.cli(t, "", map[string]string{}, "policies")
	require.ErrorContains(t, err, "no token")
	_, err = f.cli(t, "", map[string]string{"GOPOTENCY_ADMIN_TOKEN": "wrong-token-of-good-length"}, "policies")
	require.ErrorContains(t, err, "401")
	_, err = f.cli(t, "", nil, "explode")
	require.ErrorContains(t, err, `unknown command "explode"`)
	_, err = f.cli(t, "", nil)
	require.ErrorContains(t, err, "name a command")
	_, err = f.cli(t, "", nil, "inspect", "--header", "no-colon")
	require.ErrorContains(t, err, "Name: value")
	f.requireNoSecrets(t)
}

// --body-file names a derived key by the body's exact bytes, even when
// they are not UTF-8 (a gzip or protobuf body).
func TestCLIBodyFileKeepsBinaryBodies(t *testing.T) {
	auto := idempotency.DefaultPolicy()
	auto.AutoKey = &idempotency.AutoKey{Body: true}
	f := newFixture(t, setup{named: map[string]*idempotency.Policy{"auto": &auto}})
	body := []byte{0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x80, 0x00}
	h := http.Header{}
	h.Set("Authorization", bearer)
	d := f.eng.Begin(context.Background(), &auto, &idempotency.Request{Method: "POST", Path: "/upload", Header: h, Body: body})
	require.Equal(t, idempotency.Proceed, d.Kind)
	t.Cleanup(func() { _ = d.Lease.Abandon(context.Background(), false) })

	file := filepath.Join(t.TempDir(), "body")
	require.NoError(t, os.WriteFile(file, body, 0o600))
	ans, err := f.cli(t, "", nil, "inspect", "--policy", "auto", "--method", "POST", "--path", "/upload", "--header", "Authorization: "+bearer, "--body-file", file)
	require.NoError(t, err)
	require.Equal(t, "in_flight", ans["state"])
}
