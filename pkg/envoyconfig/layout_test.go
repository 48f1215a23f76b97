package envoyconfig

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/gopotency/gopotency/internal/envoyrun"
	"github.com/gopotency/gopotency/internal/proc"
	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/extproc"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// These tests run the generated layouts through the real Envoy against a
// recording ext_proc server, which answers every message with CONTINUE (a
// body-first "replay" key with an ImmediateResponse) and notes what Envoy
// sent: they check the Envoy side alone, whatever the real processor does.

// stream is what one ext_proc stream carried.
type stream struct {
	policy string   // x-gopotency-policy metadata
	kinds  []string // message kinds in order
	attrs  map[string]string
}

type recorder struct {
	mu      sync.Mutex
	streams []*stream
}

func (r *recorder) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	md, _ := metadata.FromIncomingContext(s.Context())
	st := &stream{attrs: map[string]string{}}
	if v := md.Get("x-gopotency-policy"); len(v) > 0 {
		st.policy = v[0]
	}
	r.mu.Lock()
	r.streams = append(r.streams, st)
	r.mu.Unlock()
	for {
		req, err := s.Recv()
		if err != nil {
			return nil
		}
		r.mu.Lock()
		var resp *extprocv3.ProcessingResponse
		switch m := req.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			st.kinds = append(st.kinds, "request_headers")
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
		case *extprocv3.ProcessingRequest_RequestBody:
			st.kinds = append(st.kinds, fmt.Sprintf("request_body(%d)", len(m.RequestBody.GetBody())))
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			st.kinds = append(st.kinds, "response_headers")
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseBody:
			st.kinds = append(st.kinds, "response_body")
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			st.kinds = append(st.kinds, "response_trailers")
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
		default:
			r.mu.Unlock()
			return fmt.Errorf("unexpected %T", m)
		}
		if len(st.kinds) == 1 {
			for k, v := range req.GetAttributes()["envoy.filters.http.ext_proc"].GetFields() {
				st.attrs[k] = v.GetStringValue()
			}
		}
		if _, ok := req.GetRequest().(*extprocv3.ProcessingRequest_RequestBody); ok && st.attrs["request.headers['idempotency-key']"] == "replay" {
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
				ImmediateResponse: &extprocv3.ImmediateResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode_Created}, Body: []byte("replayed")}}}
		}
		r.mu.Unlock()
		if err := s.Send(resp); err != nil {
			return nil
		}
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.streams)
}

func (r *recorder) last() stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.streams[len(r.streams)-1]
	return stream{policy: s.policy, kinds: append([]string(nil), s.kinds...), attrs: s.attrs}
}

// serveRecorder runs the recorder with gRPC health (Envoy health-checks
// the cluster) on network/addr and returns the address Envoy dials.
func serveRecorder(t *testing.T, network, addr string) (*recorder, string) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	require.NoError(t, err)
	rec := &recorder{}
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, rec)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	if network == "unix" {
		return rec, "unix://" + addr
	}
	return rec, ln.Addr().String()
}

// layoutConfig is the configuration the layout tests generate from.
func layoutConfig(t *testing.T, listen, admin int, extProc, app string, bodyFirst bool) *config.Config {
	t.Helper()
	c, err := load(t, fmt.Sprintf(`
default_policy: {max_request_body: 100}
policies: {pay: {key_required: true}}
envoy:
  listen: 127.0.0.1:%d
  admin: 127.0.0.1:%d
  ext_proc_address: %q
  body_first: %v
  clusters: [{name: app, address: %q}]
  routes:
  - {prefix: /pay, policy: pay, timeout: 5s}
  - {prefix: /static, disabled: true}
  - {prefix: /, timeout: 5s}
`, listen, admin, extProc, bodyFirst, app))
	require.NoError(t, err)
	return c
}

func envoyBin(t *testing.T) string {
	t.Helper()
	testenv.SkipShort(t, "the Envoy binary")
	bin, err := envoyrun.Find()
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	return bin
}

type layoutStack struct {
	rec      *recorder
	envoy    *envoyrun.Envoy
	upstream *atomic.Int64
	contract extproc.Contract
}

// startLayout runs an upstream, the recorder (over a unix socket when uds
// is set) and Envoy on the generated configuration.
func startLayout(t *testing.T, bodyFirst, uds bool) *layoutStack {
	t.Helper()
	var c *config.Config
	s := startStack(t, uds, func(listen, admin int, extProc, app string) ([]byte, string) {
		c = layoutConfig(t, listen, admin, extProc, app, bodyFirst)
		cfg, err := Generate(c, "layout test")
		require.NoError(t, err)
		return cfg, "cluster.gopotency.health_check.success"
	})
	s.contract = extproc.NewContract(&c.Default, c.Policies, false)
	return s
}

// startStack runs an upstream, the recorder and Envoy on the bootstrap
// build returns for their addresses; Envoy gets its first requests once
// the stat healthy (when not "") counts a passed health check.
func startStack(t *testing.T, uds bool, build func(listen, admin int, extProc, app string) (cfg []byte, healthy string)) *layoutStack {
	t.Helper()
	bin := envoyBin(t)
	up := &atomic.Int64{}
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte("created"))
	})}
	go func() { _ = srv.Serve(upLn) }()
	t.Cleanup(func() { _ = srv.Close() })

	network, addr := "tcp", "127.0.0.1:0"
	if uds {
		dir, err := os.MkdirTemp("", "gp-layout-") // short: sun_path is 108 bytes
		require.NoError(t, err)
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		network, addr = "unix", filepath.Join(dir, "ext_proc.sock")
	}
	rec, extProc := serveRecorder(t, network, addr)
	ports, err := proc.FreePorts(2)
	require.NoError(t, err)
	cfg, healthy := build(ports[0], ports[1], extProc, upLn.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e, err := envoyrun.Start(ctx, bin, t.TempDir(), cfg, envoyrun.Addrs{Listen: ports[0], Admin: ports[1]})
	require.NoError(t, err)
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("envoy log:\n%s", e.Log())
		}
	})
	// Envoy routes to the ext_proc cluster once its first health check
	// passed; until then a guarded request would get the 503 of fail-closed.
	if healthy != "" {
		require.Eventually(t, func() bool {
			n, err := e.Stat(healthy)
			return err == nil && n > 0
		}, 10*time.Second, 20*time.Millisecond)
	}
	return &layoutStack{rec: rec, envoy: e, upstream: up}
}

// call is one request of a layout table.
type call struct {
	method, path, key string
	body              string
	chunked           bool
}

func (s *layoutStack) do(t *testing.T, c call) (int, string) {
	t.Helper()
	var body io.Reader = strings.NewReader(c.body)
	if c.chunked {
		body = io.MultiReader(strings.NewReader(c.body)) // unknown length: chunked
	}
	req, err := http.NewRequest(c.method, s.envoy.URL+c.path, body)
	require.NoError(t, err)
	if c.body == "" && !c.chunked {
		req.Body, req.ContentLength = nil, 0
	}
	if c.key != "" {
		req.Header.Set("Idempotency-Key", c.key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// check sends c and returns the stream it opened (nil when none).
func (s *layoutStack) check(t *testing.T, c call) (*stream, int, string) {
	t.Helper()
	before, err := s.envoy.Stat("http.ingress.ext_proc.streams_started")
	require.NoError(t, err)
	n := s.rec.count()
	status, body := s.do(t, c)
	after, err := s.envoy.Stat("http.ingress.ext_proc.streams_started")
	require.NoError(t, err)
	require.Equal(t, int64(s.rec.count()-n), after-before, "Envoy's streams_started and the streams the server saw agree")
	if s.rec.count() == n {
		return nil, status, body
	}
	require.Equal(t, n+1, s.rec.count(), "one stream per request")
	st := s.rec.last()
	return &st, status, body
}

var small = strings.Repeat("x", 14)

// layoutCase is one request and the stream it must open.
type layoutCase struct {
	call
	kinds  []string // nil: no stream at all
	policy string
}

// expect sends tc and checks its stream's kinds and policy; it returns
// the stream for more checks (nil when there is none or it is wrong). The
// response trailers message comes only when the upstream sends trailers,
// so an expected last "response_trailers" may be missing.
func (s *layoutStack) expect(t *testing.T, tc layoutCase) *stream {
	t.Helper()
	name := fmt.Sprintf("%s %s key=%q body=%d chunked=%v", tc.method, tc.path, tc.key, len(tc.body), tc.chunked)
	st, status, _ := s.check(t, tc.call)
	assert.Equal(t, http.StatusCreated, status, name)
	if tc.kinds == nil {
		assert.Nil(t, st, "%s: no ext_proc stream", name)
		return nil
	}
	if !assert.NotNil(t, st, name) {
		return nil
	}
	want := tc.kinds
	if len(st.kinds) == len(want)-1 && want[len(want)-1] == "response_trailers" {
		want = want[:len(want)-1]
	}
	if !assert.Equal(t, want, st.kinds, name) || !assert.Equal(t, tc.policy, st.policy, name) {
		return nil
	}
	return st
}

func TestLayoutHeadersFirst(t *testing.T) {
	s := startLayout(t, false, false)
	for _, tc := range []layoutCase{
		{call{"POST", "/orders", "", small, false}, nil, ""},
		{call{"GET", "/orders", "k1", "", false}, nil, ""},
		{call{"PUT", "/orders", "k1", small, false}, nil, ""},
		{call{"POST", "/static/x", "k1", small, false}, nil, ""},
		{call{"GET", "/pay", "", "", false}, nil, ""},
		{call{"POST", "/orders", "k1", small, false}, []string{"request_headers"}, ""},
		{call{"PATCH", "/orders", "k1", "", false}, []string{"request_headers"}, ""},
		// The key is required: a missing one reaches the server (400).
		{call{"POST", "/pay", "", small, false}, []string{"request_headers"}, "pay"},
		{call{"POST", "/pay/1", "k1", small, false}, []string{"request_headers"}, "pay"},
	} {
		if st := s.expect(t, tc); st != nil {
			assert.Empty(t, st.attrs["request.method"], "%s %s: no CEL request attributes on a headers-first layout", tc.method, tc.path)
		}
	}
}

func TestLayoutBodyFirst(t *testing.T) {
	for _, uds := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcp", true: "unix socket"}[uds], func(t *testing.T) {
			testBodyFirst(t, startLayout(t, true, uds))
		})
	}
}

func testBodyFirst(t *testing.T, s *layoutStack) {
	first := []string{"request_body(14)", "response_headers", "response_body", "response_trailers"}
	for _, tc := range []layoutCase{
		{call{"POST", "/orders", "", small, false}, nil, ""},
		{call{"GET", "/orders", "k1", "", false}, nil, ""},
		{call{"POST", "/static/x", "k1", small, false}, nil, ""},
		// Keyed, with a Content-Length within max_request_body (100).
		{call{"POST", "/orders?a=1", "k1", small, false}, first, ""},
		{call{"PATCH", "/orders", "k1", small, false}, first, ""},
		{call{"POST", "/orders", "k1", strings.Repeat("x", 100), false}, []string{"request_body(100)", "response_headers", "response_body", "response_trailers"}, ""},
		{call{"POST", "/pay", "k1", small, false}, first, "pay"},
		// Over the cap, chunked, or without a body: headers-first.
		{call{"POST", "/orders", "k1", strings.Repeat("x", 101), false}, []string{"request_headers"}, ""},
		{call{"POST", "/orders", "k1", small, true}, []string{"request_headers"}, ""},
		{call{"POST", "/orders", "k1", "", false}, []string{"request_headers"}, ""},
		{call{"POST", "/pay", "", small, false}, []string{"request_headers"}, "pay"},
	} {
		st := s.expect(t, tc)
		if st == nil {
			continue
		}
		// Every stream carries the contract's attributes on its first
		// message, the constant token included.
		name := tc.method + " " + tc.path
		assert.Equal(t, s.contract.Token, st.attrs[s.contract.TokenAttribute], "%s: contract token", name)
		assert.Equal(t, tc.method, st.attrs["request.method"], name)
		assert.Equal(t, tc.path, st.attrs["request.path"], name)
		assert.Equal(t, tc.key, st.attrs["request.headers['idempotency-key']"], name)
	}

	// A replay answered at the body: one message, the upstream untouched.
	calls := s.upstream.Load()
	st, status, body := s.check(t, call{"POST", "/orders", "replay", small, false})
	require.NotNil(t, st)
	assert.Equal(t, []string{"request_body(14)"}, st.kinds, "a replay is one message")
	assert.Equal(t, http.StatusCreated, status)
	assert.Equal(t, "replayed", body)
	assert.Equal(t, calls, s.upstream.Load(), "the upstream never saw the replay")
}

// TestGeneratedVariantsValidate runs `envoy --mode validate` on layouts
// the shipped files do not cover.
func TestGeneratedVariantsValidate(t *testing.T) {
	bin := envoyBin(t)
	for name, yaml := range map[string]string{
		"body-first, unix socket": policies + strings.Replace(envoySection, "127.0.0.1:9002", "unix:///run/gopotency/gopotency.sock", 1) + "  body_first: true\n" + routes,
		"host names, principal":   strings.Replace(policies, "methods: [POST]", "methods: [POST], scope_principal: true", 1) + strings.NewReplacer("127.0.0.1:9002", "localhost:9002", "127.0.0.1:8080", "localhost:8080").Replace(envoySection) + routes,
	} {
		t.Run(name, func(t *testing.T) {
			c, err := load(t, yaml)
			require.NoError(t, err)
			cfg, err := Generate(c, "test")
			require.NoError(t, err)
			p := filepath.Join(t.TempDir(), "envoy.yaml")
			require.NoError(t, os.WriteFile(p, cfg, 0o600))
			out, err := exec.Command(bin, "--mode", "validate", "-c", p).CombinedOutput()
			require.NoError(t, err, "%s", bytes.TrimSpace(out))
		})
	}
}
