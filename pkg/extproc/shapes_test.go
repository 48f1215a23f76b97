package extproc

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// bodyFirst is a request_body message as Envoy sends it with
// request_header_mode SKIP: the facts in attributes, kv the header
// attributes (lower-case name, value); the contract token unless noToken.
func bodyFirst(srv *Server, method, path, body string, eos bool, kv ...string) *extprocv3.ProcessingRequest {
	c := srv.Contract()
	fields := map[string]*structpb.Value{
		"request.method":   structpb.NewStringValue(method),
		"request.path":     structpb.NewStringValue(path),
		c.TokenAttribute:   structpb.NewStringValue(c.Token),
		"source.address":   structpb.NewStringValue("192.0.2.1:5555"),
		"xds.route_name":   structpb.NewStringValue("route-default"),
		"request.size":     structpb.NewNumberValue(float64(len(body))),
		"unrelated.number": structpb.NewNumberValue(7),
	}
	for i := 0; i+1 < len(kv); i += 2 {
		fields[headerAttribute(kv[i])] = structpb.NewStringValue(kv[i+1])
	}
	req := reqBody(body, eos)
	req.Attributes = map[string]*structpb.Struct{attrNamespace: {Fields: fields}}
	return req
}

// server returns the Server of a fresh env, for building body-first
// messages against its contract.
func newEnvServer(t *testing.T, tweak ...func(*Options)) (*env, *Server) {
	e := newEnv(t, tweak...)
	return e, e.srv
}

// A replay comes body first in one message; the first request may take
// either shape: both build the same key, scope and fingerprint.
func TestBodyFirstSharesKeysWithHeadersFirst(t *testing.T) {
	e, srv := newEnvServer(t)
	// Headers first, with the scope header sent twice: Envoy's CEL joins
	// repeated fields with "," and so must the headers path.
	h := e.open(t, "")
	h.do(reqHeaders("POST", "/orders?x=1", "k-shape", false, "authorization", "Bearer a", "authorization", "Bearer b"))
	h.do(reqBody(`{"amount":10}`, true))
	h.do(respHeaders("201", false, "location", "/orders/1"))
	h.do(respBody(`{"id":1}`, true))

	b := e.open(t, "")
	resp := b.do(bodyFirst(srv, "POST", "/orders?x=1", `{"amount":10}`, true, "idempotency-key", "k-shape", "authorization", "Bearer a,Bearer b"))
	ir := immediateOf(t, resp)
	require.EqualValues(t, 201, ir.GetStatus().GetCode(), "the body-first retry replays the headers-first original")
	assert.Equal(t, "true", header(t, ir, "idempotent-replayed"))
	assert.Equal(t, `{"id":1}`, string(ir.GetBody()))

	other := e.open(t, "")
	resp = other.do(bodyFirst(srv, "POST", "/orders?x=1", `{"amount":10}`, true, "idempotency-key", "k-shape", "authorization", "Bearer a"))
	require.NotNil(t, resp.GetRequestBody(), "another caller is another key: it runs")
}

func TestBodyFirstFirstRequestRecords(t *testing.T) {
	e, srv := newEnvServer(t)
	s := e.open(t, "")
	resp := s.do(bodyFirst(srv, "POST", "/o", `{"a":1}`, true, "idempotency-key", "k-bf"))
	require.Equal(t, extprocv3.CommonResponse_CONTINUE, resp.GetRequestBody().GetResponse().GetStatus())
	s.do(respHeaders("201", false))
	s.do(respBody("made", true))
	ent := e.entry(t, "k-bf")
	require.NotNil(t, ent)
	require.Equal(t, idempotency.Completed, ent.State)
	assert.Equal(t, "made", string(ent.Record.Body))

	// Mismatch and missing keys are decided on the body message too.
	m := e.open(t, "")
	require.Equal(t, "key-reused", requireProblem(t, m.do(bodyFirst(srv, "POST", "/o", `{"a":2}`, true, "idempotency-key", "k-bf")), 422))
	bad := e.open(t, "")
	require.Equal(t, "key-malformed", requireProblem(t, bad.do(bodyFirst(srv, "POST", "/o", `{}`, true, "idempotency-key", "a,b")), 400))
	// Not guarded (Envoy's routes should not send these body first): a
	// CONTINUE, and the static response phases pass.
	g := e.open(t, "")
	require.NotNil(t, g.do(bodyFirst(srv, "PUT", "/o", `{}`, true, "idempotency-key", "k-put")).GetRequestBody())
	require.NotNil(t, g.do(respHeaders("200", true)).GetResponseHeaders())
	e.endAll(t)
	require.Nil(t, e.entry(t, "k-put"))
}

// An Envoy config made for other policies (or by hand) sends no token, or
// another: fail closed, never guess the caller or the fingerprint.
func TestBodyFirstWithoutContractFailsClosed(t *testing.T) {
	var reasons []string
	var mu sync.Mutex
	e, srv := newEnvServer(t, func(o *Options) {
		o.ProtocolError = func(r string) { mu.Lock(); reasons = append(reasons, r); mu.Unlock() }
	})
	for name, mutate := range map[string]func(*extprocv3.ProcessingRequest){
		"no token": func(r *extprocv3.ProcessingRequest) {
			delete(r.Attributes[attrNamespace].Fields, srv.Contract().TokenAttribute)
		},
		"other token": func(r *extprocv3.ProcessingRequest) {
			r.Attributes[attrNamespace].Fields[srv.Contract().TokenAttribute] = structpb.NewStringValue("x")
		},
		"no attrs": func(r *extprocv3.ProcessingRequest) { r.Attributes = nil },
	} {
		t.Run(name, func(t *testing.T) {
			req := bodyFirst(srv, "POST", "/o", `{}`, true, "idempotency-key", "k-nc")
			mutate(req)
			require.Equal(t, "proxy-misconfigured", requireProblem(t, e.open(t, "").do(req), 500))
		})
	}
	e.endAll(t)
	require.Nil(t, e.entry(t, "k-nc"))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"contract_mismatch", "contract_mismatch", "contract_mismatch"}, reasons)
}

// A Content-Length over the cap is answered at the headers: Envoy is never
// asked to buffer (and, past its buffer limit, stall on) the body.
func TestOverCapContentLengthIs413AtHeaders(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "")
	resp := s.do(reqHeaders("POST", "/upload", "k-big", false, "content-length", "1048577"))
	require.Equal(t, "request-too-large", requireProblem(t, resp, 413))
	ok := e.open(t, "")
	require.NotNil(t, ok.do(reqHeaders("POST", "/upload", "k-fits", false, "content-length", "1048576")).GetRequestHeaders())
	// A body that arrives cut at Envoy's buffer limit (BUFFERED_PARTIAL:
	// over the cap, end_of_stream false) is a 413 too.
	require.Equal(t, "request-too-large", requireProblem(t, ok.do(reqBody(strings.Repeat("x", 1<<20+1), false)), 413))
	e.endAll(t)
	require.Zero(t, e.store.Len())
}

// withProtocol marks the first message with Envoy's static body modes.
func withProtocol(req *extprocv3.ProcessingRequest, body filterv3.ProcessingMode_BodySendMode, early bool) *extprocv3.ProcessingRequest {
	req.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: body, ResponseBodyMode: filterv3.ProcessingMode_STREAMED,
		SendBodyWithoutWaitingForHeaderResponse: early}
	return req
}

// With send_body_without_waiting_for_header_response, chunks arrive before
// the headers are answered and overrides are ignored: every answer waits
// until the body is whole, so nothing goes upstream before the decision,
// and the fingerprint covers every chunk.
func TestStreamedBodyIsDecidedAtTheLastChunk(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "")
	s.send(withProtocol(reqHeaders("POST", "/o", "k-stream", false), filterv3.ProcessingMode_STREAMED, true))
	s.send(reqBody(`{"part":1,`, false))
	s.send(reqBody(``, false)) // Envoy sends empty chunks too
	require.Nil(t, e.entry(t, "k-stream"), "not decided on the first chunk")
	s.send(reqBody(`"part":2}`, true))
	require.NotNil(t, s.recv().GetRequestHeaders(), "answers in order: headers first")
	for range 3 {
		require.NotNil(t, s.recv().GetRequestBody())
	}
	require.Equal(t, idempotency.InFlight, e.entry(t, "k-stream").State)

	// Same first chunk, different second: the fingerprint saw both.
	d := e.open(t, "")
	d.send(withProtocol(reqHeaders("POST", "/o", "k-stream", false), filterv3.ProcessingMode_STREAMED, true))
	d.send(reqBody(`{"part":1,`, false))
	d.send(reqBody(`"part":3}`, true))
	require.Equal(t, "key-reused", requireProblem(t, d.recv(), 422), "the first held answer carries the decision")
}

// A statically STREAMED body (override honoured or not) is accumulated the
// same way, without holding the headers answer.
func TestStaticStreamedBodyAccumulates(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "")
	require.NotNil(t, s.do(withProtocol(reqHeaders("POST", "/o", "k-st", false), filterv3.ProcessingMode_STREAMED, false)).GetRequestHeaders())
	s.send(reqBody("ab", false))
	s.send(reqBody("cd", true))
	require.NotNil(t, s.recv().GetRequestBody())
	require.NotNil(t, s.recv().GetRequestBody())
	r := e.open(t, "")
	r.do(withProtocol(reqHeaders("POST", "/o", "k-st", false), filterv3.ProcessingMode_STREAMED, false))
	r.send(reqBody("ab", false))
	r.send(reqBody("cX", true))
	require.Equal(t, "key-reused", requireProblem(t, r.recv(), 422))
}

// A request ending with trailers is decided at its (whole, buffered) body;
// one with trailers and no body at the trailers.
func TestTrailers(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "")
	s.do(reqHeaders("POST", "/o", "k-tr", false, "content-length", "5"))
	require.NotNil(t, s.do(reqBody("whole", false)).GetRequestBody(), "all the declared bytes: trailers follow")
	require.Equal(t, idempotency.InFlight, e.entry(t, "k-tr").State, "decided at the body")
	require.NotNil(t, s.do(reqTrailers()).GetRequestTrailers())

	only := e.open(t, "")
	only.do(reqHeaders("POST", "/o", "k-tr-only", false))
	require.NotNil(t, only.do(reqTrailers()).GetRequestTrailers())
	require.Equal(t, idempotency.InFlight, e.entry(t, "k-tr-only").State, "decided at the trailers")
	dup := e.open(t, "")
	dup.do(reqHeaders("POST", "/o", "k-tr-only", false))
	require.Equal(t, "request-in-progress", requireProblem(t, dup.do(reqTrailers()), 409))
}

// Envoy asked for the body and forwarded without it (allow_mode_override
// off): the response finds the request undecided. Fail closed and record
// outcome-unknown; never let a later retry run.
func TestUndecidedAtResponseFailsClosed(t *testing.T) {
	var reasons []string
	e := newEnv(t, func(o *Options) { o.ProtocolError = func(r string) { reasons = append(reasons, r) } })
	s := e.open(t, "")
	s.do(reqHeaders("POST", "/o", "k-und", false))
	require.Equal(t, "protocol-error", requireProblem(t, s.do(respHeaders("201", false)), 502))
	ent := e.entry(t, "k-und")
	require.NotNil(t, ent)
	require.Equal(t, idempotency.MarkUnknown, ent.Record.Mark)
	assert.Equal(t, []string{"undecided_at_response_headers"}, reasons)
	r := e.open(t, "")
	r.do(reqHeaders("POST", "/o", "k-und", false))
	require.Equal(t, "outcome-unknown", requireProblem(t, r.do(reqBody("", true)), 424))
}

// Without response.code_details, the router's x-envoy-upstream-service-time
// proves the upstream answered: an unstored 500 releases the key at once.
// With neither, the outcome is unknown.
func TestUpstreamServiceTimeProvesAnUpstreamAnswer(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "")
	s.do(reqHeaders("POST", "/o", "k-500", false))
	s.do(reqBody("x", true))
	s.do(respHeaders("500", false, "x-envoy-upstream-service-time", "3"))
	require.Nil(t, e.entry(t, "k-500"), "released: a retry may run")

	n := e.open(t, "")
	n.do(reqHeaders("POST", "/o", "k-500-bare", false))
	n.do(reqBody("x", true))
	n.do(respHeaders("500", false))
	require.Equal(t, idempotency.MarkUnknown, e.entry(t, "k-500-bare").Record.Mark)
}

// A request let through whose answer could not be sent may still have
// gone upstream (Envoy continues on its own under failure_mode_allow or a
// message timeout): its key is outcome-unknown, not released.
func TestFailedSendOfContinueIsUnknown(t *testing.T) {
	e, srv := newEnvServer(t)
	p := &processor{s: srv, ctx: context.Background(), log: srv.o.Logger, send: func(*extprocv3.ProcessingResponse) error {
		return errors.New("stream broken")
	}}
	_, err := p.handle(reqHeaders("POST", "/o", "k-send", false))
	require.NoError(t, err)
	answers, err := p.handle(reqBody("x", true))
	require.NoError(t, err)
	require.NotNil(t, answers[0].GetRequestBody(), "the answer that would let it through")
	p.finish() // the send failed; the stream ends
	ent := e.entry(t, "k-send")
	require.NotNil(t, ent)
	require.Equal(t, idempotency.MarkUnknown, ent.Record.Mark)
}

// Past max_buffered_bytes new guarded requests get 503 server-busy; the
// streams already admitted go on, and once they settle requests are
// admitted again.
func TestBufferBudget(t *testing.T) {
	var buffered int64
	var mu sync.Mutex
	e, srv := newEnvServer(t, func(o *Options) {
		o.MaxBufferedBytes = 1000
		o.Buffered = func(d int64) { mu.Lock(); buffered += d; mu.Unlock() }
	})
	a := e.open(t, "")
	a.do(reqHeaders("POST", "/o", "k-a", false))
	a.do(reqBody("x", true))
	a.do(respHeaders("201", false))
	a.do(respBody(strings.Repeat("r", 1000), false))
	require.EqualValues(t, 1000, srv.Buffered())

	b := e.open(t, "")
	resp := b.do(reqHeaders("POST", "/o", "k-b", false))
	require.Equal(t, "server-busy", requireProblem(t, resp, 503))
	assert.Equal(t, "1", header(t, immediateOf(t, resp), "retry-after"))
	plain := e.open(t, "")
	requirePassThrough(t, plain.do(reqHeaders("GET", "/o", "", true)))

	a.do(respBody("!", true)) // the admitted stream finishes as usual
	require.Equal(t, idempotency.Completed, e.entry(t, "k-a").State)
	require.Zero(t, srv.Buffered())
	mu.Lock()
	assert.Zero(t, buffered, "the gauge is told every change")
	mu.Unlock()
	c := e.open(t, "")
	require.NotNil(t, c.do(reqHeaders("POST", "/o", "k-b", false)).GetRequestHeaders())
}

// RoutePolicies pick a policy by Envoy's route name, for proxies that
// cannot set per-route metadata; metadata still wins.
func TestRoutePolicies(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.RoutePolicies = map[string]string{"httproute/shop/pay/": "required", "httproute/shop/": "headers"}
	})
	s := e.open(t, "")
	req := withAttr(reqHeaders("POST", "/o", "", false), "xds.route_name", "httproute/shop/pay/rule/0/match/0/example_com")
	require.Equal(t, "key-missing", requireProblem(t, s.do(req), 400), "the longest prefix wins")
	m := e.open(t, "short")
	requirePassThrough(t, m.do(withAttr(reqHeaders("POST", "/o", "", false), "xds.route_name", "httproute/shop/pay/rule/0")))
	none := e.open(t, "")
	require.Equal(t, "proxy-misconfigured", requireProblem(t, none.do(reqHeaders("POST", "/o", "k-route", false)), 500),
		"without xds.route_name a route's own policy cannot be found: never default_policy")

	_, err := New(Options{Engine: idempotency.New(e.store), Default: &idempotency.Policy{}, RoutePolicies: map[string]string{"r/": "nope"}})
	require.ErrorContains(t, err, `names policy "nope"`)
	_, err = New(Options{Engine: idempotency.New(e.store), Default: &idempotency.Policy{}, Policies: map[string]*idempotency.Policy{"p": {}}, RoutePolicies: map[string]string{"": "p"}})
	require.ErrorContains(t, err, "empty route name prefix")
}

// scope_principal reads the peer from Envoy's certificate attributes, and
// refuses requests when Envoy was not asked to send them (every caller
// would otherwise share the anonymous scope).
func TestPrincipalScopeFromPeerAttributes(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		p := idempotency.DefaultPolicy()
		p.ScopeHeaders, p.ScopePrincipal = nil, true
		o.Policies["peer"] = &p
	})
	peerReq := func(key string, attrs map[string]*structpb.Value) *extprocv3.ProcessingRequest {
		r := reqHeaders("POST", "/o", key, true)
		if attrs != nil {
			r.Attributes = map[string]*structpb.Struct{attrNamespace: {Fields: attrs}}
		}
		return r
	}
	alice := map[string]*structpb.Value{"connection.mtls": structpb.NewBoolValue(true), "connection.uri_san_peer_certificate": structpb.NewStringValue("spiffe://x/alice")}
	bob := map[string]*structpb.Value{"connection.mtls": structpb.NewBoolValue(true), "connection.uri_san_peer_certificate": structpb.NewStringValue("spiffe://x/bob")}

	a := e.open(t, "peer")
	require.NotNil(t, a.do(peerReq("k-peer", alice)).GetRequestHeaders())
	a.do(respHeaders("201", true))
	r := e.open(t, "peer")
	require.EqualValues(t, 201, immediateOf(t, r.do(peerReq("k-peer", alice))).GetStatus().GetCode(), "alice replays")
	b := e.open(t, "peer")
	require.NotNil(t, b.do(peerReq("k-peer", bob)).GetRequestHeaders(), "bob is another caller: it runs")

	none := e.open(t, "peer")
	require.Equal(t, "proxy-misconfigured", requireProblem(t, none.do(peerReq("k-peer", nil)), 500))
}

// Envoy's BUFFERED_PARTIAL hands over what its buffer limit holds with
// end_of_stream false and streams the rest upstream unseen. A body short
// of its Content-Length, or of undeclared length without its end, is never
// fingerprinted: 413 with the setting to raise, nothing locked, counted.
func TestCutBodyFailsClosed(t *testing.T) {
	var reasons []string
	e := newEnv(t, func(o *Options) { o.ProtocolError = func(r string) { reasons = append(reasons, r) } })
	cut := strings.Repeat("x", 32768)
	for _, c := range []struct {
		name   string
		extra  []string
		chunks []*extprocv3.ProcessingRequest
	}{
		{"short of Content-Length", []string{"content-length", "102400"}, []*extprocv3.ProcessingRequest{reqBody(cut, false)}},
		{"undeclared length, no end", nil, []*extprocv3.ProcessingRequest{reqBody(cut, false)}},
		{"short of Content-Length at the trailers", []string{"content-length", "102400"}, []*extprocv3.ProcessingRequest{reqTrailers()}},
	} {
		s := e.open(t, "")
		require.NotNil(t, s.do(reqHeaders("POST", "/o", "k-cut", false, c.extra...)).GetRequestHeaders(), c.name)
		var resp *extprocv3.ProcessingResponse
		for _, m := range c.chunks {
			resp = s.do(m)
		}
		ir := immediateOf(t, resp)
		require.EqualValues(t, 413, ir.GetStatus().GetCode(), c.name)
		require.Contains(t, string(ir.GetBody()), "raise the proxy's buffer limit", c.name)
		require.Equal(t, "request-too-large", requireProblem(t, resp, 413), c.name)
		require.Nil(t, e.entry(t, "k-cut"), "%s: nothing locked, nothing replayed", c.name)
	}
	assert.Equal(t, []string{"request_body_cut", "request_body_unproven", "request_body_cut"}, reasons)

	// The same body whole (declared, or a static BUFFERED body first with
	// trailers following) runs as usual.
	w := e.open(t, "")
	w.do(reqHeaders("POST", "/o", "k-whole", false, "content-length", "32768"))
	require.NotNil(t, w.do(reqBody(cut, false)).GetRequestBody())
	require.Equal(t, idempotency.InFlight, e.entry(t, "k-whole").State)
	bf := e.open(t, "")
	first := withProtocol(bodyFirst(e.srv, "POST", "/o", cut, false, "idempotency-key", "k-bf"), filterv3.ProcessingMode_BUFFERED, false)
	require.NotNil(t, bf.do(first).GetRequestBody(), "static BUFFERED never cuts (Envoy answers 413 itself)")
	require.Equal(t, idempotency.InFlight, e.entry(t, "k-bf").State)
	partial := e.open(t, "")
	first = withProtocol(bodyFirst(e.srv, "POST", "/o", cut, false, "idempotency-key", "k-bf-partial"), filterv3.ProcessingMode_BUFFERED_PARTIAL, false)
	require.Equal(t, "request-too-large", requireProblem(t, partial.do(first), 413), "body first in BUFFERED_PARTIAL proves nothing")
	e.endAll(t)
}

// send_body_without_waiting_for_header_response applies to streamed modes
// only: with a static BUFFERED body Envoy waits for the headers answer
// before it sends the body, so holding that answer would stall the request.
func TestEarlyBodyFlagOutsideStreamedModes(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "")
	resp := s.do(withProtocol(reqHeaders("POST", "/o", "k-early", false, "content-length", "5"), filterv3.ProcessingMode_BUFFERED, true))
	require.NotNil(t, resp.GetRequestHeaders(), "answered at once, not held")
	require.NotNil(t, s.do(reqBody("whole", true)).GetRequestBody())
	require.Equal(t, idempotency.InFlight, e.entry(t, "k-early").State)
}
