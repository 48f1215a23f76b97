package extproc

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// env is a Server on an in-process gRPC connection; the test plays Envoy.
type env struct {
	srv     *Server
	store   *memstore.Store
	client  extprocv3.ExternalProcessorClient
	active  atomic.Int64 // open streams, as told to StreamsActive
	mu      sync.Mutex
	cancels []context.CancelFunc
}

// testPolicies are selected with the x-gopotency-policy metadata.
func testPolicies() map[string]*idempotency.Policy {
	mk := func(f func(p *idempotency.Policy)) *idempotency.Policy {
		p := idempotency.DefaultPolicy()
		f(&p)
		return &p
	}
	return map[string]*idempotency.Policy{
		"required": mk(func(p *idempotency.Policy) { p.KeyRequired = true }),
		"headers":  mk(func(p *idempotency.Policy) { p.Fingerprint = idempotency.FingerprintHeadersOnly }),
		"small":    mk(func(p *idempotency.Policy) { p.MaxResponseBody = 8 }),
		"short":    mk(func(p *idempotency.Policy) { p.Lease = 150 * time.Millisecond }),
		"renew":    mk(func(p *idempotency.Policy) { p.Lease = 300 * time.Millisecond }),
		"wait":     mk(func(p *idempotency.Policy) { p.WaitInFlight = 2 * time.Second }),
	}
}

func newEnv(t *testing.T, tweak ...func(*Options)) *env {
	t.Helper()
	e := &env{store: memstore.New(memstore.Options{})}
	t.Cleanup(func() { _ = e.store.Close() })
	def := idempotency.DefaultPolicy()
	o := Options{
		Engine:        idempotency.New(e.store),
		Default:       &def,
		Policies:      testPolicies(),
		StreamsActive: func(d int) { e.active.Add(int64(d)) },
	}
	for _, f := range tweak {
		f(&o)
	}
	srv, err := New(o)
	require.NoError(t, err)
	e.srv = srv

	ln := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, srv)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	e.client = extprocv3.NewExternalProcessorClient(conn)
	return e
}

// stream is one HTTP request's ext_proc stream.
type stream struct {
	t      *testing.T
	s      extprocv3.ExternalProcessor_ProcessClient
	cancel context.CancelFunc
}

// open starts a stream; policy, when set, names the route's policy.
func (e *env) open(t *testing.T, policy string) *stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if policy != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, DefaultPolicyHeader, policy)
	}
	e.mu.Lock()
	e.cancels = append(e.cancels, cancel)
	e.mu.Unlock()
	s, err := e.client.Process(ctx)
	require.NoError(t, err)
	return &stream{t: t, s: s, cancel: cancel}
}

// waitIdle waits until the server has finished every stream (the deferred
// settlement runs before StreamsActive(-1)).
func (e *env) waitIdle(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool { return e.active.Load() == 0 }, 5*time.Second, 2*time.Millisecond, "streams still open")
}

// endAll resets every stream opened so far, as Envoy does when a request
// is over, and waits for the server to finish them.
func (e *env) endAll(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	for _, c := range e.cancels {
		c()
	}
	e.mu.Unlock()
	e.waitIdle(t)
}

// entry returns the store entry for an anonymous caller's key, or nil.
func (e *env) entry(t *testing.T, key string) *idempotency.Entry {
	t.Helper()
	ent, err := e.store.Get(context.Background(), idempotency.StorageKey("", key))
	if err != nil {
		require.ErrorIs(t, err, idempotency.ErrNotFound)
		return nil
	}
	return ent
}

func (s *stream) send(req *extprocv3.ProcessingRequest) {
	s.t.Helper()
	require.NoError(s.t, s.s.Send(req))
}

func (s *stream) recv() *extprocv3.ProcessingResponse {
	s.t.Helper()
	resp, err := s.s.Recv()
	require.NoError(s.t, err)
	return resp
}

// do sends req and returns its answer, checking it has the matching type
// (or is an immediate response where Envoy accepts one).
func (s *stream) do(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	s.t.Helper()
	s.send(req)
	resp := s.recv()
	requireMatches(s.t, req, resp)
	return resp
}

// requireMatches checks resp is a valid answer to req.
func requireMatches(t testing.TB, req *extprocv3.ProcessingRequest, resp *extprocv3.ProcessingResponse) {
	t.Helper()
	require.NotNil(t, resp)
	if _, ok := resp.GetResponse().(*extprocv3.ProcessingResponse_ImmediateResponse); ok {
		switch req.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders, *extprocv3.ProcessingRequest_RequestBody,
			*extprocv3.ProcessingRequest_RequestTrailers, *extprocv3.ProcessingRequest_ResponseHeaders:
			// Envoy turns these into a local reply (a response headers
			// answer only while no header went downstream yet).
			return
		}
		t.Fatalf("immediate_response answering %T", req.GetRequest())
	}
	var ok bool
	switch req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		_, ok = resp.GetResponse().(*extprocv3.ProcessingResponse_RequestHeaders)
	case *extprocv3.ProcessingRequest_RequestBody:
		_, ok = resp.GetResponse().(*extprocv3.ProcessingResponse_RequestBody)
	case *extprocv3.ProcessingRequest_RequestTrailers:
		_, ok = resp.GetResponse().(*extprocv3.ProcessingResponse_RequestTrailers)
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		_, ok = resp.GetResponse().(*extprocv3.ProcessingResponse_ResponseHeaders)
	case *extprocv3.ProcessingRequest_ResponseBody:
		_, ok = resp.GetResponse().(*extprocv3.ProcessingResponse_ResponseBody)
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		_, ok = resp.GetResponse().(*extprocv3.ProcessingResponse_ResponseTrailers)
	}
	require.True(t, ok, "answer %T to %T", resp.GetResponse(), req.GetRequest())
	if resp.GetModeOverride() != nil {
		// Envoy honours overrides only on headers answers (request or
		// response headers: inHeaderProcessState in ext_proc.cc).
		_, reqHeaders := req.GetRequest().(*extprocv3.ProcessingRequest_RequestHeaders)
		_, respHeaders := req.GetRequest().(*extprocv3.ProcessingRequest_ResponseHeaders)
		require.True(t, reqHeaders || respHeaders, "mode_override outside a headers answer (Envoy ignores it)")
	}
}

// hv builds header entries the way Envoy sends them: raw_value only.
func hv(kv ...string) []*corev3.HeaderValue {
	out := make([]*corev3.HeaderValue, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return out
}

// reqHeaders is a request_headers message; key "" sends no key header.
func reqHeaders(method, path, key string, eos bool, extra ...string) *extprocv3.ProcessingRequest {
	kv := []string{":method", method, ":path", path, ":authority", "api.test", ":scheme", "http", "x-request-id", "r-1"}
	if key != "" {
		kv = append(kv, "idempotency-key", key)
	}
	kv = append(kv, extra...)
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hv(kv...)}, EndOfStream: eos}}}
}

func reqBody(body string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: eos}}}
}

func reqTrailers() *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{
		RequestTrailers: &extprocv3.HttpTrailers{Trailers: &corev3.HeaderMap{Headers: hv("x-checksum", "1")}}}}
}

// respHeaders is a response_headers message with :status and kv.
func respHeaders(status string, eos bool, kv ...string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hv(append([]string{":status", status}, kv...)...)}, EndOfStream: eos}}}
}

func respBody(body string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: eos}}}
}

func respTrailers() *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{
		ResponseTrailers: &extprocv3.HttpTrailers{Trailers: &corev3.HeaderMap{Headers: hv("grpc-status", "0")}}}}
}

// withAttr adds an attribute as Envoy sends it on a direction's first message.
func withAttr(req *extprocv3.ProcessingRequest, name, value string) *extprocv3.ProcessingRequest {
	req.Attributes = map[string]*structpb.Struct{attrNamespace: {Fields: map[string]*structpb.Value{name: structpb.NewStringValue(value)}}}
	return req
}

// immediateOf returns the immediate response in resp, failing if there is none.
func immediateOf(t *testing.T, resp *extprocv3.ProcessingResponse) *extprocv3.ImmediateResponse {
	t.Helper()
	ir := resp.GetImmediateResponse()
	require.NotNil(t, ir, "want immediate_response, got %T", resp.GetResponse())
	return ir
}

// setHeaders flattens an immediate response's headers, checking each one
// travels in raw_value only.
func setHeaders(t *testing.T, ir *extprocv3.ImmediateResponse) (names []string, values []string, appends []bool) {
	t.Helper()
	for _, o := range ir.GetHeaders().GetSetHeaders() {
		require.Empty(t, o.GetHeader().GetValue(), "header %q set in value (Envoy ignores it)", o.GetHeader().GetKey())
		require.NotNil(t, o.GetAppend(), "append must be explicit (ext_proc defaults it to false)")
		names = append(names, o.GetHeader().GetKey())
		values = append(values, string(o.GetHeader().GetRawValue()))
		appends = append(appends, o.GetAppend().GetValue())
	}
	return names, values, appends
}

// header returns the first value of name in an immediate response.
func header(t *testing.T, ir *extprocv3.ImmediateResponse, name string) string {
	t.Helper()
	names, values, _ := setHeaders(t, ir)
	for i, n := range names {
		if n == name {
			return values[i]
		}
	}
	return ""
}
