package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	"github.com/gopotency/gopotency/pkg/admin"
	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

const adminTestToken = "app-admin-token-0123456789abcdef"

// adminCall posts body to an admin route with the test token and decodes
// the JSON answer.
func (r *running) adminCall(t *testing.T, method, route string, body any) (int, map[string]any) {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(method, "http://"+r.app.AdminAddr()+route, bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminTestToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out := map[string]any{}
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &out), string(b))
	return resp.StatusCode, out
}

// adminStream is one HTTP request as Envoy hands it to ext_proc.
type adminStream struct {
	t      *testing.T
	s      extprocv3.ExternalProcessor_ProcessClient
	cancel context.CancelFunc
}

// openRequest starts a stream for a body-less keyed POST carrying hdrs
// (name, value pairs) under policy ("" for the default) and returns it
// with the answer to its request headers.
func (r *running) openRequest(t *testing.T, policy string, hdrs ...string) (*adminStream, *extprocv3.ProcessingResponse) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if policy != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-gopotency-policy", policy)
	}
	s, err := r.extproc().Process(ctx)
	require.NoError(t, err)
	kv := append([]string{":method", "POST", ":path", "/orders"}, hdrs...)
	hv := make([]*corev3.HeaderValue, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		hv = append(hv, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	require.NoError(t, s.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hv}, EndOfStream: true}}}))
	resp, err := s.Recv()
	require.NoError(t, err)
	return &adminStream{t: t, s: s, cancel: cancel}, resp
}

// respond sends the upstream's response head (the whole response).
func (s *adminStream) respond(status string) {
	s.t.Helper()
	require.NoError(s.t, s.s.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":status", RawValue: []byte(status)}}}, EndOfStream: true}}}))
	_, err := s.s.Recv()
	require.NoError(s.t, err)
}

// waitLog waits for the server (serving in the background) to log s.
func (r *running) waitLog(t *testing.T, s string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(r.logs.String(), s) }, 5*time.Second, 5*time.Millisecond, "log line %s", s)
}

func writeAdminToken(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "admin-token")
	require.NoError(t, os.WriteFile(p, []byte(adminTestToken+"\n"), 0o600))
	return p
}

// TestAdminAPIFindsWhatExtProcWrote: a key written through the real
// ext_proc path is found by the admin API given the same raw key and scope
// header, and not with another scope; then the operator's resolution of
// an outcome-unknown key: purge, and the client's retry runs.
func TestAdminAPIFindsWhatExtProcWrote(t *testing.T) {
	r := start(t, "admin:\n  token_file: "+writeAdminToken(t)+"\npolicies:\n  tenant:\n    scope_headers: [X-Tenant]\n")
	r.waitLog(t, `"msg":"admin API on`)
	require.Contains(t, r.logs.String(), admin.TokenID(adminTestToken))

	s, resp := r.openRequest(t, "", "idempotency-key", "k-admin", "authorization", "Bearer alice")
	require.NotNil(t, resp.GetRequestHeaders(), "acquired: CONTINUE")
	s.respond("201")
	s.cancel()

	inspect := func(body map[string]any) (int, map[string]any) {
		return r.adminCall(t, http.MethodPost, admin.RouteInspect, body)
	}
	code, got := inspect(map[string]any{"key": "k-admin", "headers": map[string]string{"Authorization": "Bearer alice"}})
	require.Equal(t, 200, code, got)
	require.Equal(t, "completed", got["state"])
	require.EqualValues(t, 201, got["status"])
	code, got = inspect(map[string]any{"key": `"k-admin"`, "headers": map[string]string{"authorization": "Bearer alice"}})
	require.Equal(t, 200, code, "the key as an sf-string and the header in any case: %v", got)
	for _, other := range []map[string]string{{"Authorization": "Bearer bob"}, {}} {
		code, got = inspect(map[string]any{"key": "k-admin", "headers": other})
		require.Equal(t, 404, code, "another scope names another key: %v", got)
	}

	// A scope header sent twice reaches ext_proc joined as Envoy joins it.
	s, resp = r.openRequest(t, "tenant", "idempotency-key", "k-tenant", "x-tenant", "a", "x-tenant", "b")
	require.NotNil(t, resp.GetRequestHeaders())
	s.respond("200")
	s.cancel()
	code, got = inspect(map[string]any{"policy": "tenant", "key": "k-tenant", "headers": map[string]string{"X-Tenant": "a,b"}})
	require.Equal(t, 200, code, got)
	code, _ = inspect(map[string]any{"policy": "tenant", "key": "k-tenant", "headers": map[string]string{"X-Tenant": "a"}})
	require.Equal(t, 404, code)
	code, _ = inspect(map[string]any{"key": "k-tenant", "headers": map[string]string{"X-Tenant": "a,b"}})
	require.Equal(t, 404, code, "the default policy scopes on Authorization, not X-Tenant")

	// The client goes away while the upstream runs: outcome unknown.
	hdrs := []string{"idempotency-key", "k-cut", "authorization", "Bearer alice"}
	s, resp = r.openRequest(t, "", hdrs...)
	require.NotNil(t, resp.GetRequestHeaders())
	s.cancel()
	body := map[string]any{"key": "k-cut", "headers": map[string]string{"Authorization": "Bearer alice"}}
	require.Eventually(t, func() bool { _, got := inspect(body); return got["mark"] == "unknown" }, 5*time.Second, 10*time.Millisecond)
	_, resp = r.openRequest(t, "", hdrs...)
	require.EqualValues(t, 424, resp.GetImmediateResponse().GetStatus().GetCode(), "the retry is told outcome-unknown")

	// The operator checked the resource: purge, and the retry runs.
	body["reason"] = "order not created; client may retry"
	code, got = r.adminCall(t, http.MethodPost, admin.RoutePurge, body)
	require.Equal(t, 200, code, got)
	_, resp = r.openRequest(t, "", hdrs...)
	require.NotNil(t, resp.GetRequestHeaders(), "the retry runs: %v", resp)
	require.Nil(t, resp.GetImmediateResponse())

	code, metrics := r.get(t, "/metrics")
	require.Equal(t, 200, code)
	require.Contains(t, metrics, `gopotency_admin_purges_total{mark="unknown",state="completed"} 1`)
	logs := r.logs.String()
	require.Contains(t, logs, `"msg":"admin: purge"`)
	for _, secret := range []string{adminTestToken, "Bearer alice", "k-cut", "k-admin"} {
		require.NotContains(t, logs, secret)
	}
}

func TestAdminAPIIsOffByDefault(t *testing.T) {
	r := start(t, "")
	r.waitLog(t, `"msg":"admin API off`)
	code, body := r.get(t, admin.RoutePolicies)
	require.Equal(t, 404, code)
	require.Contains(t, body, "admin-api-off")
	code, _ = r.get(t, "/healthz")
	require.Equal(t, 200, code, "the rest of the admin listener is unaffected")
}

// TestAdminTokenFromTheEnvironment: GOPOTENCY_ADMIN_TOKEN turns the API
// on; it is only on the admin listener, and never logged.
func TestAdminTokenFromTheEnvironment(t *testing.T) {
	env := map[string]string{"GOPOTENCY_ADMIN_TOKEN": adminTestToken}
	cfg, err := config.Load([]string{"--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, func(k string) string { return env[k] }, io.Discard)
	require.NoError(t, err)
	cfg.DrainDelay = 0
	logs := &syncBuffer{}
	run, err := Start(cfg, logs)
	require.NoError(t, err)
	t.Cleanup(func() { _ = run.Stop() })
	r := &running{app: run.App}
	code, got := r.adminCall(t, http.MethodGet, admin.RoutePolicies, nil)
	require.Equal(t, 200, code, got)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "admin API on") }, 5*time.Second, 10*time.Millisecond)
	require.Contains(t, logs.String(), `"token_source":"GOPOTENCY_ADMIN_TOKEN"`)
	require.NotContains(t, logs.String(), adminTestToken)

	// The ext_proc port speaks gRPC only: no admin route there.
	req, err := http.NewRequest(http.MethodGet, "http://"+run.GRPCAddr()+admin.RoutePolicies, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminTestToken)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		require.NotEqual(t, 200, resp.StatusCode)
	}
}

func TestWeakAdminTokenFailsAtStart(t *testing.T) {
	env := map[string]string{"GOPOTENCY_ADMIN_TOKEN": "hunter2"}
	cfg, err := config.Load([]string{"--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, func(k string) string { return env[k] }, io.Discard)
	require.NoError(t, err)
	_, err = New(context.Background(), cfg, io.Discard)
	require.ErrorContains(t, err, "admin API: admin token: 7 bytes; at least 16 required")
	require.NotContains(t, err.Error(), "hunter2")

	cfg.Admin = config.AdminAPI{TokenFile: filepath.Join(t.TempDir(), "missing")}
	_, err = New(context.Background(), cfg, io.Discard)
	require.ErrorContains(t, err, "admin API: admin token file")
}

// TestPurgeEvictsThisServersReplayCache: in front of Redis the server
// answers replays from memory; a purge through its admin API reaches that
// cache too, so the client's next retry runs instead of replaying.
func TestPurgeEvictsThisServersReplayCache(t *testing.T) {
	redis := testenv.StartRedis(t)
	r := start(t, "store: "+redis.URL()+"\nadmin:\n  token_file: "+writeAdminToken(t)+"\n")
	hdrs := []string{"idempotency-key", "k-cached", "authorization", "Bearer alice"}
	s, resp := r.openRequest(t, "", hdrs...)
	require.NotNil(t, resp.GetRequestHeaders())
	s.respond("201")
	s.cancel()
	for range 2 { // the second replay comes from the cache
		_, resp = r.openRequest(t, "", hdrs...)
		require.EqualValues(t, 201, resp.GetImmediateResponse().GetStatus().GetCode(), "replayed")
	}
	code, got := r.adminCall(t, http.MethodPost, admin.RoutePurge, map[string]any{"key": "k-cached", "headers": map[string]string{"Authorization": "Bearer alice"}})
	require.Equal(t, 200, code, got)
	_, resp = r.openRequest(t, "", hdrs...)
	require.Nil(t, resp.GetImmediateResponse(), "not replayed from the cache after the purge")
	require.NotNil(t, resp.GetRequestHeaders(), "the retry runs")
}
