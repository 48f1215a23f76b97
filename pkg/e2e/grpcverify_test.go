package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gopotency/gopotency/internal/envoyrun"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// These tests settle what Envoy 1.40 does with ext_proc's
// StreamedImmediateResponse for gRPC: a scripted processor answers, a real
// grpc-go client calls through Envoy, a real grpc-go server counts the
// calls that reach it. docs/envoy-verify.md records the answers.

// echoService is a hand-written unary service (no generated code): Echo
// answers "echo:"+input with header and trailer metadata; an input
// "fail:<CODE>" answers that status instead (Repeat: after its three
// messages), "slow:…" takes 300ms.
const echoMethod = "/gopotency.verify.v1.Echo/Echo"

type echoUpstream struct {
	mu    sync.Mutex
	calls map[string]int
}

func (u *echoUpstream) count(input string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[input]
}

func (u *echoUpstream) desc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{ServiceName: "gopotency.verify.v1.Echo", HandlerType: (*any)(nil), Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			u.mu.Lock()
			u.calls[in.GetValue()]++
			u.mu.Unlock()
			if strings.HasPrefix(in.GetValue(), "slow:") {
				time.Sleep(300 * time.Millisecond)
			}
			if code, ok := strings.CutPrefix(in.GetValue(), "fail:"); ok {
				var c codes.Code
				_ = c.UnmarshalJSON([]byte(`"` + code + `"`))
				_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "failed"))
				return nil, status.Error(c, "upstream says "+code)
			}
			_ = grpc.SetHeader(ctx, metadata.Pairs("x-header", "h1", "x-bin-bin", "\x00\x01\xff"))
			_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t1"))
			return wrapperspb.String("echo:" + in.GetValue()), nil
		},
	}}, Streams: []grpc.StreamDesc{
		// Collect (client stream) answers the messages joined once the
		// client is done; Chat (bidi) echoes each message as it comes.
		{StreamName: "Collect", ClientStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			var got []string
			for {
				in := new(wrapperspb.StringValue)
				if err := ss.RecvMsg(in); err == io.EOF {
					break
				} else if err != nil {
					return err
				}
				got = append(got, in.GetValue())
			}
			u.mu.Lock()
			u.calls["collect:"+strings.Join(got, ",")]++
			u.mu.Unlock()
			return ss.SendMsg(wrapperspb.String(strings.Join(got, ",")))
		}},
		// Repeat (server stream) sends the message back three times.
		{StreamName: "Repeat", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			in := new(wrapperspb.StringValue)
			if err := ss.RecvMsg(in); err != nil {
				return err
			}
			u.mu.Lock()
			u.calls["repeat:"+in.GetValue()]++
			u.mu.Unlock()
			for i := range 3 {
				if err := ss.SendMsg(wrapperspb.String(fmt.Sprint(i, ":", in.GetValue()))); err != nil {
					return err
				}
			}
			if code, ok := strings.CutPrefix(in.GetValue(), "fail:"); ok { // after the messages
				var c codes.Code
				_ = c.UnmarshalJSON([]byte(`"` + code + `"`))
				return status.Error(c, "upstream says "+code)
			}
			return nil
		}},
		{StreamName: "Chat", ClientStreams: true, ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			for {
				in := new(wrapperspb.StringValue)
				if err := ss.RecvMsg(in); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				u.mu.Lock()
				u.calls["chat:"+in.GetValue()]++
				u.mu.Unlock()
				if err := ss.SendMsg(wrapperspb.String("echo:" + in.GetValue())); err != nil {
					return err
				}
			}
		}},
	}}
}

// startEchoUpstream serves the echo service on loopback.
func startEchoUpstream(t *testing.T, opts ...grpc.ServerOption) (*echoUpstream, string) {
	t.Helper()
	up := &echoUpstream{calls: map[string]int{}}
	srv := grpc.NewServer(opts...)
	srv.RegisterService(up.desc(), nil)
	ln := listen(t)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return up, ln.Addr().String()
}

// grpcEnvoyConfig is a minimal Envoy: one HTTP/2 listener, the ext_proc
// filter with the given processing mode, the router, an HTTP/2 upstream.
func grpcEnvoyConfig(listen, admin int, proc, app, mode string) []byte {
	ph, pp, _ := net.SplitHostPort(proc)
	ah, ap, _ := net.SplitHostPort(app)
	return fmt.Appendf(nil, `admin: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}
static_resources:
  listeners:
  - name: grpc
    address: {socket_address: {address: 127.0.0.1, port_value: %d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: app, timeout: 30s}
          http_filters:
          - name: envoy.filters.http.ext_proc
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
              grpc_service: {envoy_grpc: {cluster_name: proc}}
              failure_mode_allow: false
              status_on_error: {code: ServiceUnavailable}
              message_timeout: 1s
              max_message_timeout: 30s
              response_attributes: ["response.code_details"]
              processing_mode: %s
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: proc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: proc
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]
  - name: app
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: app
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]
`, admin, listen, mode, ph, pp, ah, ap)
}

// fullDuplex: every phase sent, the request body streamed both ways (what
// StreamedImmediateResponse allows besides NONE), the response body
// streamed to be watched.
const fullDuplex = `{request_header_mode: SEND, request_body_mode: FULL_DUPLEX_STREAMED, request_trailer_mode: SEND, response_header_mode: SEND, response_body_mode: STREAMED, response_trailer_mode: SEND}`

// startGRPCEnvoy runs Envoy with the given processing mode in front of app,
// with proc as the ext_proc server.
func startGRPCEnvoy(t *testing.T, proc, app, mode string) *envoyrun.Envoy {
	t.Helper()
	return startEnvoyWith(t, func(a envoyrun.Addrs) []byte { return grpcEnvoyConfig(a.Listen, a.Admin, proc, app, mode) })
}

// startEnvoyWith runs Envoy on the config cfg writes for free ports.
func startEnvoyWith(t *testing.T, cfg func(envoyrun.Addrs) []byte) *envoyrun.Envoy {
	t.Helper()
	testenv.SkipShort(t, "Envoy")
	bin, err := envoyrun.Find()
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	var e *envoyrun.Envoy
	for try := 0; ; try++ {
		ports := freePorts(t, 2)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		a := envoyrun.Addrs{Listen: ports[0], Admin: ports[1]}
		e, err = envoyrun.Start(ctx, bin, t.TempDir(), cfg(a), a)
		if err == nil || try == 2 || !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	require.NoError(t, err)
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("envoy log tail:\n%s", e.Log())
		}
	})
	return e
}

// scriptedProc is an ext_proc server that logs every message Envoy sends
// and answers through a script.
type scriptedProc struct {
	extprocv3.UnimplementedExternalProcessorServer
	script func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse
	mu     sync.Mutex
	seen   []string
}

func (p *scriptedProc) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		p.mu.Lock()
		p.seen = append(p.seen, describe(req))
		p.mu.Unlock()
		for _, r := range p.script(req) {
			if err := stream.Send(r); err != nil {
				return nil
			}
		}
	}
}

func (p *scriptedProc) messages() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

// describe names a message and what it carries.
func describe(req *extprocv3.ProcessingRequest) string {
	hs := func(m *corev3.HeaderMap) string {
		var out []string
		for _, h := range m.GetHeaders() {
			out = append(out, h.GetKey()+"="+string(h.GetRawValue()))
		}
		return strings.Join(out, ",")
	}
	switch r := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return fmt.Sprintf("request_headers eos=%v", r.RequestHeaders.GetEndOfStream())
	case *extprocv3.ProcessingRequest_RequestBody:
		return fmt.Sprintf("request_body len=%d eos=%v", len(r.RequestBody.GetBody()), r.RequestBody.GetEndOfStream())
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return "request_trailers " + hs(r.RequestTrailers.GetTrailers())
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return fmt.Sprintf("response_headers eos=%v %s", r.ResponseHeaders.GetEndOfStream(), hs(r.ResponseHeaders.GetHeaders()))
	case *extprocv3.ProcessingRequest_ResponseBody:
		return fmt.Sprintf("response_body len=%d eos=%v", len(r.ResponseBody.GetBody()), r.ResponseBody.GetEndOfStream())
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return "response_trailers " + hs(r.ResponseTrailers.GetTrailers())
	}
	return fmt.Sprintf("%T", req.GetRequest())
}

func startScriptedProc(t *testing.T, script func(*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse) (*scriptedProc, string) {
	t.Helper()
	p := &scriptedProc{script: script}
	srv := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(srv, p)
	ln := listen(t)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return p, ln.Addr().String()
}

func rawHeaders(kv ...string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for i := 0; i < len(kv); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return m
}

func sirHeaders(eos bool, kv ...string) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_StreamedImmediateResponse{
		StreamedImmediateResponse: &extprocv3.StreamedImmediateResponse{Response: &extprocv3.StreamedImmediateResponse_HeadersResponse{
			HeadersResponse: &extprocv3.HttpHeaders{Headers: rawHeaders(kv...), EndOfStream: eos}}}}}
}

func sirBody(b []byte, eos bool) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_StreamedImmediateResponse{
		StreamedImmediateResponse: &extprocv3.StreamedImmediateResponse{Response: &extprocv3.StreamedImmediateResponse_BodyResponse{
			BodyResponse: &extprocv3.StreamedBodyResponse{Body: b, EndOfStream: eos}}}}}
}

func sirTrailers(kv ...string) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_StreamedImmediateResponse{
		StreamedImmediateResponse: &extprocv3.StreamedImmediateResponse{Response: &extprocv3.StreamedImmediateResponse_TrailersResponse{
			TrailersResponse: rawHeaders(kv...)}}}}
}

// grpcFrame is a gRPC length-prefixed message (uncompressed).
func grpcFrame(m proto.Message) []byte {
	b, _ := proto.Marshal(m)
	return append([]byte{0, byte(len(b) >> 24), byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}, b...)
}

// storedReply is the response a replay sends in these experiments.
func storedReply(eos bool) []*extprocv3.ProcessingResponse {
	return []*extprocv3.ProcessingResponse{
		sirHeaders(false, ":status", "200", "content-type", "application/grpc", "x-header", "stored", "x-bin-bin", "AAH/"),
		sirBody(grpcFrame(wrapperspb.String("stored")), false),
		sirTrailers("grpc-status", "0", "grpc-message", "", "x-trailer", "stored-trailer"),
	}
}

// callEcho calls Echo through Envoy with a grpc-go client.
type echoResult struct {
	reply          string
	header, trailr metadata.MD
	err            error
}

func callEcho(t *testing.T, target, input string, md ...string) echoResult {
	t.Helper()
	return callEchoAt(t, target, "", input, md...)
}

// callEchoAt is callEcho with an :authority of its own ("" for the target).
func callEchoAt(t *testing.T, target, authority, input string, md ...string) echoResult {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if authority != "" {
		opts = append(opts, grpc.WithAuthority(authority))
	}
	conn, err := grpc.NewClient(target, opts...)
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	var r echoResult
	out := new(wrapperspb.StringValue)
	r.err = conn.Invoke(ctx, echoMethod, wrapperspb.String(input), out, grpc.Header(&r.header), grpc.Trailer(&r.trailr))
	r.reply = out.GetValue()
	return r
}

// rawExchange sends one gRPC request over plain HTTP/2 and returns what
// came back on the wire: status, header fields, body bytes, trailers.
type rawResult struct {
	status  int
	header  http.Header
	body    []byte
	trailer http.Header
}

func rawCall(t *testing.T, target string, body []byte, hdr ...string) rawResult {
	t.Helper()
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge, as gRPC speaks it
	tr := &http.Transport{Protocols: protocols}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest("POST", "http://"+target+echoMethod, strings.NewReader(string(body)))
	require.NoError(t, err)
	req.Header.Set("content-type", "application/grpc")
	req.Header.Set("te", "trailers")
	for i := 0; i < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return rawResult{status: resp.StatusCode, header: resp.Header, body: b, trailer: resp.Trailer}
}

func target(e *envoyrun.Envoy) string { return strings.TrimPrefix(e.URL, "http://") }

// TestVerifyGRPCStreamedImmediateResponseAfterBody: the processor holds
// its answer to the request headers until the request message has come
// (FULL_DUPLEX_STREAMED sends the body without waiting), then answers with
// a StreamedImmediateResponse: headers, the length-prefixed message,
// trailers. The client gets all of it and the upstream never runs.
func TestVerifyGRPCStreamedImmediateResponseAfterBody(t *testing.T) {
	up, app := startEchoUpstream(t)
	proc, procAddr := startScriptedProc(t, func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		if b := req.GetRequestBody(); b != nil && b.GetEndOfStream() {
			return storedReply(false)
		}
		return nil // the headers answer waits for the body
	})
	e := startGRPCEnvoy(t, procAddr, app, fullDuplex)

	r := callEcho(t, target(e), "after-body")
	require.NoError(t, r.err)
	assert.Equal(t, "stored", r.reply)
	assert.Equal(t, []string{"stored"}, r.header.Get("x-header"))
	assert.Equal(t, []string{"\x00\x01\xff"}, r.header.Get("x-bin-bin"))
	assert.Equal(t, []string{"stored-trailer"}, r.trailr.Get("x-trailer"))
	assert.Equal(t, 0, up.count("after-body"), "the upstream never ran")
	t.Logf("processor saw: %q", proc.messages())

	raw := rawCall(t, target(e), grpcFrame(wrapperspb.String("raw")))
	t.Logf("raw: status=%d header=%v body=%x trailer=%v", raw.status, raw.header, raw.body, raw.trailer)
	assert.Equal(t, 200, raw.status)
	assert.Equal(t, grpcFrame(wrapperspb.String("stored")), raw.body, "the message byte for byte")
	assert.Equal(t, "0", raw.trailer.Get("grpc-status"))
	assert.Equal(t, "stored-trailer", raw.trailer.Get("x-trailer"))
	assert.Equal(t, 0, up.count("raw"))
}

// TestVerifyGRPCStreamedImmediateResponseAtHeaders: the same answer sent
// at once to the request headers.
func TestVerifyGRPCStreamedImmediateResponseAtHeaders(t *testing.T) {
	up, app := startEchoUpstream(t)
	proc, procAddr := startScriptedProc(t, func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		if req.GetRequestHeaders() != nil {
			return storedReply(false)
		}
		return nil
	})
	e := startGRPCEnvoy(t, procAddr, app, fullDuplex)
	r := callEcho(t, target(e), "at-headers")
	require.NoError(t, r.err)
	assert.Equal(t, "stored", r.reply)
	assert.Equal(t, []string{"stored-trailer"}, r.trailr.Get("x-trailer"))
	assert.Equal(t, 0, up.count("at-headers"))
	t.Logf("processor saw: %q", proc.messages())
}

// TestVerifyGRPCTrailersOnlyStatus: an error status as a trailers-only
// answer (headers with end_of_stream, grpc-status among them), after the
// request message.
func TestVerifyGRPCTrailersOnlyStatus(t *testing.T) {
	up, app := startEchoUpstream(t)
	proc, procAddr := startScriptedProc(t, func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		if b := req.GetRequestBody(); b != nil && b.GetEndOfStream() {
			return []*extprocv3.ProcessingResponse{sirHeaders(true, ":status", "200", "content-type", "application/grpc",
				"grpc-status", "10", "grpc-message", "in progress: 50%25 done", "x-gopotency", "yes")}
		}
		return nil
	})
	e := startGRPCEnvoy(t, procAddr, app, fullDuplex)
	r := callEcho(t, target(e), "trailers-only")
	require.Error(t, r.err)
	got := status.Convert(r.err)
	assert.Equal(t, codes.Aborted, got.Code())
	assert.Equal(t, "in progress: 50% done", got.Message())
	assert.Equal(t, []string{"yes"}, r.trailr.Get("x-gopotency"), "trailers-only: its fields are trailers to grpc-go")
	assert.Equal(t, 0, up.count("trailers-only"))
	t.Logf("processor saw: %q", proc.messages())
}

// TestVerifyGRPCFullDuplexPassAndRecord: a request let through after its
// message was seen (headers CONTINUE, then the body sent back as a
// streamed mutation) reaches the upstream once; the response phases show
// the headers, the message and the trailers with grpc-status; an upstream
// error comes trailers-only (response headers with end_of_stream).
func TestVerifyGRPCFullDuplexPassAndRecord(t *testing.T) {
	up, app := startEchoUpstream(t)
	var mu sync.Mutex
	var held *extprocv3.HttpBody
	proc, procAddr := startScriptedProc(t, func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		mu.Lock()
		defer mu.Unlock()
		switch r := req.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_RequestBody:
			if held == nil {
				held = &extprocv3.HttpBody{}
			}
			held.Body = append(held.Body, r.RequestBody.GetBody()...)
			if !r.RequestBody.GetEndOfStream() {
				return nil
			}
			body := held.Body
			held = nil
			return []*extprocv3.ProcessingResponse{
				{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}},
				{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
					BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: body, EndOfStream: true}}}}}}},
			}
		case *extprocv3.ProcessingRequest_RequestTrailers:
			return []*extprocv3.ProcessingResponse{{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			return []*extprocv3.ProcessingResponse{{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}}
		case *extprocv3.ProcessingRequest_ResponseBody:
			return []*extprocv3.ProcessingResponse{{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}}
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			return []*extprocv3.ProcessingResponse{{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}}
		}
		return nil
	})
	e := startGRPCEnvoy(t, procAddr, app, fullDuplex)
	r := callEcho(t, target(e), "pass")
	require.NoError(t, r.err)
	assert.Equal(t, "echo:pass", r.reply)
	assert.Equal(t, []string{"t1"}, r.trailr.Get("x-trailer"))
	assert.Equal(t, 1, up.count("pass"))
	t.Logf("processor saw (ok): %q", proc.messages())

	n := len(proc.messages())
	r = callEcho(t, target(e), "fail:INTERNAL")
	assert.Equal(t, codes.Internal, status.Code(r.err))
	assert.Equal(t, 1, up.count("fail:INTERNAL"))
	t.Logf("processor saw (error): %q", proc.messages()[n:])
}

// TestVerifyGRPCImmediateResponse: the plain ImmediateResponse, given a
// gRPC answer (status 200, the message as body, grpc-status among the
// headers).
func TestVerifyGRPCImmediateResponse(t *testing.T) {
	up, app := startEchoUpstream(t)
	_, procAddr := startScriptedProc(t, func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		if req.GetRequestHeaders() == nil {
			return nil
		}
		return []*extprocv3.ProcessingResponse{immediateGRPC()}
	})
	e := startGRPCEnvoy(t, procAddr, app, `{request_header_mode: SEND, response_header_mode: SKIP}`)
	r := callEcho(t, target(e), "immediate")
	t.Logf("grpc-go: reply=%q header=%v trailer=%v err=%v", r.reply, r.header, r.trailr, r.err)
	assert.Equal(t, codes.Internal, status.Code(r.err), "the message is gone: %v", r.err)
	assert.Contains(t, r.err.Error(), "received no response message")
	raw := rawCall(t, target(e), grpcFrame(wrapperspb.String("raw")))
	t.Logf("raw: status=%d header=%v body=%x trailer=%v", raw.status, raw.header, raw.body, raw.trailer)
	assert.Empty(t, raw.body, "no DATA: a trailers-only reply")
	assert.Equal(t, "0", raw.header.Get("grpc-status"))
	assert.Equal(t, "%00%00%00%00%08%0A%06stored", raw.header.Get("grpc-message"), "the body became the status message")
	assert.Equal(t, 0, up.count("immediate"))
}

func immediateGRPC() *extprocv3.ProcessingResponse {
	set := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
		Status:     &typev3.HttpStatus{Code: typev3.StatusCode_OK},
		Headers:    &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{set("content-type", "application/grpc"), set("x-header", "stored"), set("x-trailer", "stored-trailer")}},
		Body:       grpcFrame(wrapperspb.String("stored")),
		GrpcStatus: &extprocv3.GrpcStatus{Status: 0},
	}}}
}

// TestVerifyGRPCStreamedImmediateResponseModes: the streamed answer in the
// other request body modes.
func TestVerifyGRPCStreamedImmediateResponseModes(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		want       codes.Code // what the client gets
	}{
		{"NONE at headers", `{request_header_mode: SEND, response_header_mode: SKIP}`, codes.OK},
		{"BUFFERED after body", `{request_header_mode: SEND, request_body_mode: BUFFERED, response_header_mode: SKIP}`, codes.Unavailable},
		{"STREAMED after body", `{request_header_mode: SEND, request_body_mode: STREAMED, response_header_mode: SKIP}`, codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, app := startEchoUpstream(t)
			proc, procAddr := startScriptedProc(t, func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
				switch {
				case req.GetRequestHeaders() != nil && strings.HasPrefix(tc.name, "NONE"):
					return storedReply(false)
				case req.GetRequestHeaders() != nil:
					return []*extprocv3.ProcessingResponse{{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}}
				case req.GetRequestBody().GetEndOfStream():
					return storedReply(false)
				}
				return nil
			})
			e := startGRPCEnvoy(t, procAddr, app, tc.mode)
			r := callEcho(t, target(e), "mode")
			t.Logf("grpc-go: reply=%q header=%v trailer=%v err=%v", r.reply, r.header, r.trailr, r.err)
			t.Logf("processor saw: %q; upstream ran %d", proc.messages(), up.count("mode"))
			assert.Equal(t, tc.want, status.Code(r.err))
			if tc.want == codes.OK {
				assert.Equal(t, "stored", r.reply)
				assert.Equal(t, []string{"stored-trailer"}, r.trailr.Get("x-trailer"))
			}
			assert.Equal(t, 0, up.count("mode"))
		})
	}
}
