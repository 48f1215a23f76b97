package extproc

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// requirePassThrough checks a CONTINUE that skips every later phase.
func requirePassThrough(t *testing.T, resp *extprocv3.ProcessingResponse) {
	t.Helper()
	require.NotNil(t, resp.GetRequestHeaders(), "want request_headers, got %T", resp.GetResponse())
	require.Equal(t, extprocv3.CommonResponse_CONTINUE, resp.GetRequestHeaders().GetResponse().GetStatus())
	m := resp.GetModeOverride()
	require.NotNil(t, m, "pass-through must override the modes so Envoy skips the response phases")
	require.Equal(t, filterv3.ProcessingMode_SKIP, m.GetResponseHeaderMode())
	require.Equal(t, filterv3.ProcessingMode_NONE, m.GetResponseBodyMode())
	require.Equal(t, filterv3.ProcessingMode_SKIP, m.GetResponseTrailerMode())
	require.Equal(t, filterv3.ProcessingMode_NONE, m.GetRequestBodyMode())
}

// requireRecording checks the response phases are turned on.
func requireRecording(t *testing.T, m *filterv3.ProcessingMode, reqBody filterv3.ProcessingMode_BodySendMode) {
	t.Helper()
	require.NotNil(t, m)
	require.Equal(t, reqBody, m.GetRequestBodyMode())
	require.Equal(t, filterv3.ProcessingMode_SEND, m.GetResponseHeaderMode())
	require.Equal(t, filterv3.ProcessingMode_STREAMED, m.GetResponseBodyMode())
	require.Equal(t, filterv3.ProcessingMode_SEND, m.GetResponseTrailerMode())
}

func TestNotApplicableRequestsPassThrough(t *testing.T) {
	e := newEnv(t)
	for name, req := range map[string]*extprocv3.ProcessingRequest{
		"GET with key":           reqHeaders("GET", "/orders", "k1", true),
		"POST without key":       reqHeaders("POST", "/orders", "", false),
		"DELETE with body":       reqHeaders("DELETE", "/orders/1", "k1", false),
		"POST without key (eos)": reqHeaders("POST", "/orders", "", true),
	} {
		t.Run(name, func(t *testing.T) {
			s := e.open(t, "")
			requirePassThrough(t, s.do(req))
			require.NoError(t, s.s.CloseSend())
		})
	}
	e.waitIdle(t)
	require.Zero(t, e.store.Len(), "nothing is stored for pass-through requests")
}

// TestKeyedPostRecordsAndReplays walks a keyed POST through every phase as
// Envoy sends them, then checks the retry is answered from the store.
func TestKeyedPostRecordsAndReplays(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "")

	resp := s.do(reqHeaders("POST", "/orders?x=1", "k1", false, "content-type", "application/json"))
	require.Equal(t, extprocv3.CommonResponse_CONTINUE, resp.GetRequestHeaders().GetResponse().GetStatus())
	requireRecording(t, resp.GetModeOverride(), filterv3.ProcessingMode_BUFFERED_PARTIAL)
	require.Equal(t, filterv3.ProcessingMode_SEND, resp.GetModeOverride().GetRequestTrailerMode(), "a body ending in trailers is decided at the trailers")
	require.Nil(t, e.entry(t, "k1"), "the body fingerprint is needed before acquiring")

	resp = s.do(reqBody(`{"amount":10}`, true))
	require.Nil(t, resp.GetImmediateResponse())
	require.Equal(t, extprocv3.CommonResponse_CONTINUE, resp.GetRequestBody().GetResponse().GetStatus())
	ent := e.entry(t, "k1")
	require.NotNil(t, ent)
	require.Equal(t, idempotency.InFlight, ent.State, "the lease is held while the upstream runs")

	s.do(respHeaders("201", false, "content-type", "application/json", "x-multi", "a", "x-multi", "b",
		"set-cookie", "sid=secret", "location", "/orders/7"))
	require.Equal(t, idempotency.InFlight, e.entry(t, "k1").State)
	for _, chunk := range []string{`{"id":`, ``, `7}`} {
		s.do(respBody(chunk, false))
	}
	s.do(respBody("", true)) // Envoy may mark the end with an empty chunk
	ent = e.entry(t, "k1")
	require.NotNil(t, ent)
	require.Equal(t, idempotency.Completed, ent.State, "recorded before the last chunk is answered")
	require.Equal(t, 201, ent.Record.Status)
	require.Equal(t, `{"id":7}`, string(ent.Record.Body))
	s.cancel()

	// The retry is answered from the store.
	r := e.open(t, "")
	requireRecording(t, r.do(reqHeaders("POST", "/orders?x=1", "k1", false, "content-type", "application/json")).GetModeOverride(), filterv3.ProcessingMode_BUFFERED_PARTIAL)
	ir := immediateOf(t, r.do(reqBody(`{"amount":10}`, true)))
	require.EqualValues(t, 201, ir.GetStatus().GetCode())
	require.Equal(t, `{"id":7}`, string(ir.GetBody()))
	names, values, appends := setHeaders(t, ir)
	require.Equal(t, []string{"content-type", "x-multi", "x-multi", "location", "idempotent-replayed"}, names)
	require.Equal(t, []string{"application/json", "a", "b", "/orders/7", "true"}, values)
	require.Equal(t, []bool{false, false, true, false, false}, appends, "repeated fields append after the first")
	require.NotContains(t, names, "set-cookie", "denylisted headers are never replayed")
	e.endAll(t)
}

// TestEveryMessageGetsOneAnswerInOrder pipelines a whole request (Envoy
// waits for each answer, but the server must not depend on that).
func TestEveryMessageGetsOneAnswerInOrder(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "")
	msgs := []*extprocv3.ProcessingRequest{
		reqHeaders("PATCH", "/orders/1", `"k-order"`, false, "content-length", "7"),
		reqBody(`{"a":1}`, false),
		reqTrailers(),
		respHeaders("200", false, "content-type", "text/plain"),
		respBody("he", false),
		respBody("", false),
		respBody("llo", false),
		respTrailers(),
	}
	for _, m := range msgs {
		s.send(m)
	}
	for i, m := range msgs {
		resp := s.recv()
		requireMatches(t, m, resp)
		require.Nil(t, resp.GetImmediateResponse(), "message %d", i)
	}
	require.NoError(t, s.s.CloseSend())
	e.waitIdle(t)
	ent := e.entry(t, "k-order")
	require.NotNil(t, ent)
	require.Equal(t, idempotency.Completed, ent.State, "response trailers complete the record")
	require.Equal(t, "hello", string(ent.Record.Body))
}

func TestTrailersCompleteTheRecord(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "")
	s.do(reqHeaders("POST", "/grpcish", "k-tr", false))
	s.do(reqBody("req", true))
	s.do(respHeaders("200", false, "content-type", "application/octet-stream"))
	s.do(respBody("data", false)) // with trailers, end_of_stream never comes on a body chunk
	require.Equal(t, idempotency.InFlight, e.entry(t, "k-tr").State)
	s.do(respTrailers())
	ent := e.entry(t, "k-tr")
	require.Equal(t, idempotency.Completed, ent.State)
	require.Equal(t, "data", string(ent.Record.Body))
	s.cancel()
	e.waitIdle(t)
	require.Equal(t, idempotency.Completed, e.entry(t, "k-tr").State, "the end of the stream does not undo a record")
}

func TestHeadersOnlyResponseCompletes(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "")
	s.do(reqHeaders("POST", "/empty", "k-204", false))
	s.do(reqBody("x", true))
	s.do(respHeaders("204", true))
	ent := e.entry(t, "k-204")
	require.Equal(t, idempotency.Completed, ent.State)
	require.Equal(t, 204, ent.Record.Status)
	require.Empty(t, ent.Record.Body)
}

func TestHeadersOnlyFingerprintAcquiresAtRequestHeaders(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "headers")
	resp := s.do(reqHeaders("POST", "/upload", "k-h", false))
	require.NotNil(t, resp.GetRequestHeaders())
	requireRecording(t, resp.GetModeOverride(), filterv3.ProcessingMode_NONE)
	require.Equal(t, idempotency.InFlight, e.entry(t, "k-h").State, "acquired without reading the body")
	s.do(respHeaders("202", false))
	s.do(respBody("queued", true))
	require.Equal(t, idempotency.Completed, e.entry(t, "k-h").State)

	// The replay comes at request_headers: the body is never needed.
	r := e.open(t, "headers")
	ir := immediateOf(t, r.do(reqHeaders("POST", "/upload", "k-h", false)))
	require.EqualValues(t, 202, ir.GetStatus().GetCode())
	require.Equal(t, "queued", string(ir.GetBody()))
	require.Equal(t, "true", header(t, ir, "idempotent-replayed"))
}

// TestHeaderValueFallback accepts value when raw_value is absent (older
// proxies, hand-written clients).
func TestHeaderValueFallback(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "headers")
	req := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":method", Value: "POST"}, {Key: ":path", Value: "/v"}, {Key: "idempotency-key", Value: "k-value"},
		}}}}}
	resp := s.do(req)
	require.NotNil(t, resp.GetRequestHeaders())
	require.Equal(t, idempotency.InFlight, e.entry(t, "k-value").State)
	s.do(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
		Headers:     &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":status", Value: "200"}, {Key: "x-v", Value: "1"}}},
		EndOfStream: true}}})
	ent := e.entry(t, "k-value")
	require.Equal(t, idempotency.Completed, ent.State)
	require.Equal(t, []idempotency.Header{{Name: "X-V", Value: "1"}}, ent.Record.Headers)
}

func TestRequestTrailersAreAnswered(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "")
	resp := s.do(reqTrailers()) // no context: still one answer of the right type
	require.NotNil(t, resp.GetRequestTrailers())
}
