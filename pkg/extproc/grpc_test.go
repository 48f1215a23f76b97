package extproc

import (
	"encoding/base64"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/grpcmw"
)

// The gRPC flow message by message; pkg/e2e runs it through Envoy.

// grpcCallHeaders opens a gRPC call on a FULL_DUPLEX_STREAMED stream.
func grpcCallHeaders(key string, eos bool) *extprocv3.ProcessingRequest {
	req := reqHeaders("POST", "/pkg.Orders/Create", key, eos, "content-type", "application/grpc", "te", "trailers")
	req.ProtocolConfig = &extprocv3.ProtocolConfiguration{
		RequestBodyMode: filterv3.ProcessingMode_FULL_DUPLEX_STREAMED, ResponseBodyMode: filterv3.ProcessingMode_STREAMED}
	return req
}

// frame is a length-prefixed gRPC message.
func frame(msg string) string {
	n := len(msg)
	return string([]byte{0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}) + msg
}

func grpcTrailers(kv ...string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{
		ResponseTrailers: &extprocv3.HttpTrailers{Trailers: &corev3.HeaderMap{Headers: hv(kv...)}}}}
}

// recvN reads n answers.
func (s *stream) recvN(n int) []*extprocv3.ProcessingResponse {
	s.t.Helper()
	out := make([]*extprocv3.ProcessingResponse, n)
	for i := range out {
		out[i] = s.recv()
	}
	return out
}

// fields flattens a header map.
func fields(m *corev3.HeaderMap) map[string]string {
	out := map[string]string{}
	for _, h := range m.GetHeaders() {
		out[h.GetKey()] = string(h.GetRawValue())
	}
	return out
}

// proceeding opens a call whose message goes upstream (its headers and
// body answered), ready for the upstream's answer.
func proceeding(t *testing.T, e *env, key, msg string) *stream {
	t.Helper()
	s := e.open(t, "")
	s.send(grpcCallHeaders(key, false))
	s.send(reqBody(frame(msg), true))
	s.recvN(2)
	return s
}

// runCall plays one call that proceeds and is answered OK.
func runCall(t *testing.T, e *env, key, msg, reply string) {
	t.Helper()
	s := e.open(t, "")
	s.send(grpcCallHeaders(key, false))
	s.send(reqBody(frame(msg), true))
	out := s.recvN(2)
	require.NotNil(t, out[0].GetRequestHeaders(), "the held headers answered first")
	sb := out[1].GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
	require.NotNil(t, sb, "the message sent back whole")
	assert.Equal(t, frame(msg), string(sb.GetBody()))
	assert.True(t, sb.GetEndOfStream())
	s.do(withAttr(respHeaders("200", false, "content-type", "application/grpc", "x-header", "h1"), "response.code_details", "via_upstream"))
	s.do(respBody(frame(reply), false))
	s.do(grpcTrailers("grpc-status", "0", "grpc-message", "", "x-trailer", "t1"))
	s.cancel()
	e.waitIdle(t)
}

func TestGRPCRunsOnceAndReplays(t *testing.T) {
	e := newEnv(t)
	runCall(t, e, "k1", "create", "created")

	s := e.open(t, "")
	s.send(grpcCallHeaders("k1", false))
	s.send(reqBody(frame("create"), true))
	out := s.recvN(3)
	h := out[0].GetStreamedImmediateResponse().GetHeadersResponse()
	require.NotNil(t, h)
	assert.False(t, h.GetEndOfStream())
	assert.Equal(t, map[string]string{":status": "200", "content-type": "application/grpc", "x-header": "h1", grpcmw.ReplayedKey: "true"}, fields(h.GetHeaders()))
	b := out[1].GetStreamedImmediateResponse().GetBodyResponse()
	assert.Equal(t, frame("created"), string(b.GetBody()))
	assert.False(t, b.GetEndOfStream(), "trailers follow")
	assert.Equal(t, map[string]string{"grpc-status": "0", "grpc-message": "", "x-trailer": "t1"}, fields(out[2].GetStreamedImmediateResponse().GetTrailersResponse()))

	// Key reuse with another message: AlreadyExists, trailers-only.
	s = e.open(t, "")
	s.send(grpcCallHeaders("k1", false))
	s.send(reqBody(frame("other"), true))
	h = s.recv().GetStreamedImmediateResponse().GetHeadersResponse()
	require.NotNil(t, h)
	assert.True(t, h.GetEndOfStream())
	f := fields(h.GetHeaders())
	assert.Equal(t, strconv.Itoa(int(codes.AlreadyExists)), f["grpc-status"])
	assert.Equal(t, "application/grpc", f["content-type"])
	details, err := base64.RawStdEncoding.DecodeString(f["grpc-status-details-bin"])
	require.NoError(t, err)
	var st spb.Status
	require.NoError(t, proto.Unmarshal(details, &st))
	assert.Equal(t, int32(codes.AlreadyExists), st.GetCode())
	assert.Equal(t, encodeGRPCMessage(st.GetMessage()), f["grpc-message"])
}

func TestGRPCRefusalsAreStatuses(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "required")
	s.send(grpcCallHeaders("", false))
	h := s.recv().GetStreamedImmediateResponse().GetHeadersResponse()
	require.NotNil(t, h, "a missing key is refused at the headers")
	assert.Equal(t, strconv.Itoa(int(codes.InvalidArgument)), fields(h.GetHeaders())["grpc-status"])
	s.send(reqBody(frame("x"), true)) // still in flight when Envoy ended the call: no answer
	s.cancel()
	e.waitIdle(t)
}

func TestGRPCTrailersOnlyAnswers(t *testing.T) {
	e := newEnv(t)
	// NotFound (404): stored, replayed trailers-only with its status.
	s := proceeding(t, e, "nf", "get")
	s.do(withAttr(respHeaders("200", true, "content-type", "application/grpc", "grpc-status", "5", "grpc-message", "no%20such", "x-trailer", "failed"), "response.code_details", "via_upstream"))
	s.cancel()
	e.waitIdle(t)
	require.NotNil(t, e.entry(t, "nf").Record)
	assert.Equal(t, 404, e.entry(t, "nf").Record.Status)

	s = e.open(t, "")
	s.send(grpcCallHeaders("nf", false))
	s.send(reqBody(frame("get"), true))
	h := s.recv().GetStreamedImmediateResponse().GetHeadersResponse()
	require.NotNil(t, h)
	assert.True(t, h.GetEndOfStream())
	assert.Equal(t, map[string]string{":status": "200", "content-type": "application/grpc", "x-trailer": "failed", grpcmw.ReplayedKey: "true",
		"grpc-status": "5", "grpc-message": "no%20such"}, fields(h.GetHeaders()))
	s.cancel()

	// Internal (500): not stored, the key released.
	s = proceeding(t, e, "int", "get")
	s.do(withAttr(respHeaders("200", true, "content-type", "application/grpc", "grpc-status", "13"), "response.code_details", "via_upstream"))
	s.cancel()
	e.waitIdle(t)
	assert.Nil(t, e.entry(t, "int"), "released")

	// Internal in the trailers after headers: released too.
	s = proceeding(t, e, "int2", "get")
	s.do(withAttr(respHeaders("200", false, "content-type", "application/grpc"), "response.code_details", "via_upstream"))
	s.do(grpcTrailers("grpc-status", "13", "grpc-message", "boom"))
	s.cancel()
	e.waitIdle(t)
	assert.Nil(t, e.entry(t, "int2"), "released")
}

// TestGRPCUpstreamGaveUp: DEADLINE_EXCEEDED or CANCELLED from the
// upstream, trailers-only or after a message, is an unknown outcome
// (grpcmw.GaveUp), not a 5xx that releases the key.
func TestGRPCUpstreamGaveUp(t *testing.T) {
	e := newEnv(t)
	s := proceeding(t, e, "dl", "get")
	s.do(withAttr(respHeaders("200", true, "content-type", "application/grpc", "grpc-status", "4"), "response.code_details", "via_upstream"))
	s.cancel()

	s = proceeding(t, e, "cancel", "list")
	s.do(withAttr(respHeaders("200", false, "content-type", "application/grpc"), "response.code_details", "via_upstream"))
	s.do(respBody(frame("first of several"), false))
	s.do(grpcTrailers("grpc-status", "1", "grpc-message", "gave up"))
	s.cancel()
	e.waitIdle(t)
	for _, key := range []string{"dl", "cancel"} {
		ent := e.entry(t, key)
		require.NotNil(t, ent, "%s: not released", key)
		require.NotNil(t, ent.Record, key)
		assert.Equal(t, idempotency.MarkUnknown, ent.Record.Mark, key)
	}
}

// TestGRPCNonGRPCAnswer: an HTTP status other than 200 is not a gRPC
// answer: a status the policy would store is recorded outcome-unknown.
func TestGRPCNonGRPCAnswer(t *testing.T) {
	e := newEnv(t)
	s := proceeding(t, e, "h404", "get")
	s.do(withAttr(respHeaders("404", true, "content-type", "text/plain"), "response.code_details", "via_upstream"))
	s.cancel()
	e.waitIdle(t)
	ent := e.entry(t, "h404")
	require.NotNil(t, ent.Record)
	assert.Equal(t, idempotency.MarkUnknown, ent.Record.Mark)
}

func TestGRPCRequestShapes(t *testing.T) {
	e := newEnv(t)
	// The message in two chunks, then trailers: decided at the trailers.
	s := e.open(t, "")
	s.send(grpcCallHeaders("chunks", false))
	msg := frame("a longer message")
	s.send(reqBody(msg[:7], false))
	s.send(reqBody(msg[7:], false))
	s.send(reqTrailers())
	out := s.recvN(3)
	require.NotNil(t, out[0].GetRequestHeaders())
	sb := out[1].GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
	assert.Equal(t, msg, string(sb.GetBody()))
	assert.False(t, sb.GetEndOfStream(), "trailers end the request")
	require.NotNil(t, out[2].GetRequestTrailers())
	s.cancel()
	e.waitIdle(t)

	// A second message: a stream, passed through as it came, unrecorded.
	s = e.open(t, "")
	s.send(grpcCallHeaders("stream", false))
	s.send(reqBody(frame("one")+frame("tw"), false))
	out = s.recvN(2)
	require.NotNil(t, out[0].GetRequestHeaders())
	assert.Equal(t, frame("one")+frame("tw"), string(out[1].GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody()))
	sb = s.do(reqBody(frame("three"), true)).GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
	assert.Equal(t, frame("three"), string(sb.GetBody()))
	assert.True(t, sb.GetEndOfStream())
	s.cancel()
	e.waitIdle(t)
	assert.Nil(t, e.entry(t, "stream"))

	// No message at all: decided at the headers.
	s = e.open(t, "")
	require.NotNil(t, s.do(grpcCallHeaders("empty", true)).GetRequestHeaders())
	s.cancel()
	e.waitIdle(t)

	// gRPC-Web (its status in the body): passed through, chunks sent back.
	s = e.open(t, "")
	web := grpcCallHeaders("web", false)
	for _, h := range web.GetRequestHeaders().GetHeaders().GetHeaders() {
		if h.GetKey() == "content-type" {
			h.RawValue = []byte("application/grpc-web+proto")
		}
	}
	require.NotNil(t, s.do(web).GetRequestHeaders())
	assert.Equal(t, frame("x"), string(s.do(reqBody(frame("x"), true)).GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody()))
	s.cancel()
	e.waitIdle(t)
	assert.Nil(t, e.entry(t, "web"))

	// Without the key: passed through, chunks sent back.
	s = e.open(t, "")
	require.NotNil(t, s.do(grpcCallHeaders("", false)).GetRequestHeaders())
	assert.Equal(t, frame("x"), string(s.do(reqBody(frame("x"), true)).GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody()))
	s.cancel()
	e.waitIdle(t)
}

func TestGRPCRecordCodec(t *testing.T) {
	tr := []idempotency.Header{{Name: "grpc-status", Value: "0"}, {Name: "x-bin-bin", Value: "\x00\xff"}}
	for _, form := range []byte{grpcFull, grpcTrailersOnly} {
		f, msgs, got, err := decodeGRPCRecord(encodeGRPCRecord(form, []byte(frame("m")), tr))
		require.NoError(t, err)
		assert.Equal(t, form, f)
		assert.Equal(t, frame("m"), string(msgs))
		assert.Equal(t, tr, got)
	}
	for _, bad := range []string{"", "{}", "\x01\x05ab", "\x01\x00\x03ab", "\x02\x00\x01a"} {
		_, _, _, err := decodeGRPCRecord([]byte(bad))
		assert.ErrorIs(t, err, errGRPCRecord, "%q", bad)
	}
	assert.Equal(t, "50%25 done%0A%C3%A9", encodeGRPCMessage("50% done\né"))
	for ct, want := range map[string]bool{"application/grpc": true, "application/grpc+proto": true, "application/grpc;charset=utf-8": true,
		"application/grpc-web": false, "application/grpc-web-text+proto": false, "application/grpcx": false, "application/json": false} {
		assert.Equal(t, want, isGRPCCall(ct), ct)
	}
}

func FuzzDecodeGRPCRecord(f *testing.F) {
	f.Add(encodeGRPCRecord(grpcFull, []byte(frame("m")), []idempotency.Header{{Name: "grpc-status", Value: "0"}}))
	f.Add([]byte("\x02\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		form, msgs, tr, err := decodeGRPCRecord(b)
		if err != nil {
			return
		}
		again, _, _, err := decodeGRPCRecord(encodeGRPCRecord(form, msgs, tr))
		require.NoError(t, err)
		require.Equal(t, form, again)
	})
}

// HTTP on a stream set up for gRPC calls (an Envoy Gateway GRPCRoute
// carries whatever is sent to its path): its headers would go upstream
// before its body could be judged, so a guarded one is refused, unrun and
// unlocked; an unguarded one passes with its chunks streamed back, as the
// full-duplex mode requires.
func TestHTTPOnAGRPCStream(t *testing.T) {
	e := newEnv(t)
	duplex := func(method, key string, eos bool) *extprocv3.ProcessingRequest {
		req := reqHeaders(method, "/pkg.Orders/Create", key, eos, "content-type", "application/json")
		req.ProtocolConfig = &extprocv3.ProtocolConfiguration{
			RequestBodyMode: filterv3.ProcessingMode_FULL_DUPLEX_STREAMED, ResponseBodyMode: filterv3.ProcessingMode_FULL_DUPLEX_STREAMED}
		return req
	}
	s := e.open(t, "")
	ir := immediateOf(t, s.do(duplex("POST", "kx", false)))
	assert.EqualValues(t, 500, ir.GetStatus().GetCode())
	assert.Contains(t, string(ir.GetBody()), "proxy-misconfigured")
	s.cancel()
	e.waitIdle(t)
	assert.Nil(t, e.entry(t, "kx"), "nothing locked")

	s = e.open(t, "")
	require.NotNil(t, s.do(duplex("GET", "", false)).GetRequestHeaders())
	sb := s.do(reqBody("x", true)).GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
	assert.Equal(t, "x", string(sb.GetBody()))
	assert.True(t, sb.GetEndOfStream())
	s.cancel()
	e.waitIdle(t)
}

// A keyed call whose request does not end (a bidi stream waiting for a
// reply, or a trickling client) is refused once max_message_timeout has
// passed: Envoy runs no message timer while the headers answer waits in
// this mode. Nothing ran or is locked, and its bytes leave the budget.
func TestGRPCUnfinishedRequestIsRefused(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxMessageTimeout = 150 * time.Millisecond })
	s := e.open(t, "")
	s.send(grpcCallHeaders("unfinished", false))
	s.send(reqBody(frame("hi"), false))
	h := s.recv().GetStreamedImmediateResponse().GetHeadersResponse()
	require.NotNil(t, h, "refused once the wait is over")
	assert.Equal(t, strconv.Itoa(int(codes.ResourceExhausted)), fields(h.GetHeaders())["grpc-status"])
	assert.Contains(t, fields(h.GetHeaders())["grpc-message"], "end")
	assert.Zero(t, e.srv.Buffered(), "the collected message left the budget")
	s.send(reqBody(frame("more"), true)) // Envoy ended the call: no answer
	s.cancel()
	e.waitIdle(t)
	assert.Nil(t, e.entry(t, "unfinished"), "nothing locked")

	// A call that ends in time is decided as usual, and the timer is gone.
	runCall(t, e, "finished", "m", "r")
}
