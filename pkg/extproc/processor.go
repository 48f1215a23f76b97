package extproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// attrNamespace is where Envoy puts the attributes it was asked to send.
const attrNamespace = "envoy.filters.http.ext_proc"

// stage is where a request stands with the engine.
type stage int

const (
	// open: nothing seen yet.
	open stage = iota
	// notOurs: passed through untouched (not guarded, no key, gRPC, a
	// stream that began with the response); every later message gets a
	// plain CONTINUE.
	notOurs
	// collecting: guarded, waiting for the whole request body before
	// deciding; answers to body chunks are held meanwhile.
	collecting
	// decided: the engine ran; lease is set when the request holds one.
	decided
)

// processor holds one HTTP request's state across its ext_proc phases.
type processor struct {
	s    *Server
	ctx  context.Context
	send func(*extprocv3.ProcessingResponse) error
	log  *slog.Logger
	// mu: the stream's state and its sends, shared by the receive loop and
	// a gRPC call's collect timer.
	mu sync.Mutex

	stage  stage
	info   *policyInfo
	policy *idempotency.Policy
	req    idempotency.Request
	// held are the request messages whose answers wait for the decision
	// (body chunks that must not go upstream before the whole body was
	// fingerprinted), in order.
	held []heldMsg
	// buffered counts the bytes this stream added to the server's budget.
	buffered int64
	// streamedBody: Envoy's static request body mode is STREAMED (or
	// FULL_DUPLEX_STREAMED), so body messages are chunks even if an
	// override asked for one buffered body.
	streamedBody bool
	// earlyBody: send_body_without_waiting_for_header_response in a
	// streamed mode (Envoy ignores it in any other): chunks come before
	// the headers are answered, and mode overrides are ignored.
	earlyBody bool
	// staticBuffered: Envoy's static request body mode is BUFFERED and no
	// override applies (body first): Envoy answers 413 itself rather than
	// send part of a body, so a message without end_of_stream is whole.
	staticBuffered bool
	// contentLength is the length the request declared, -1 if none.
	contentLength int64

	lease      *idempotency.Lease
	status     int
	headers    []idempotency.Header
	body       []byte
	tooLarge   bool
	incomplete bool

	// grpc: a gRPC call on a FULL_DUPLEX_STREAMED stream (grpc.go).
	grpc grpcCall
}

type heldMsg int

const (
	heldHeaders heldMsg = iota + 1
	heldBody
	heldTrailers
)

func (p *processor) handle(req *extprocv3.ProcessingRequest) ([]*extprocv3.ProcessingResponse, error) {
	if req.GetObservabilityMode() {
		return nil, nil // Envoy expects no answer
	}
	switch r := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return p.requestHeaders(req, r.RequestHeaders), nil
	case *extprocv3.ProcessingRequest_RequestBody:
		if p.grpc.on {
			return p.grpcRequestBody(r.RequestBody), nil
		}
		return p.requestBody(req, r.RequestBody), nil
	case *extprocv3.ProcessingRequest_RequestTrailers:
		if p.grpc.on {
			return p.grpcRequestTrailers(), nil
		}
		return p.requestTrailers(), nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return one(p.responseHeaders(req, r.ResponseHeaders)), nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		resp := p.responseBody(r.ResponseBody)
		if p.grpc.responseDuplex {
			resp = streamedResponseBody(r.ResponseBody)
		}
		return one(resp), nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		if p.undecided() {
			p.undecidedAtResponse("response_trailers")
		}
		if p.grpc.on {
			p.grpcResponseTrailers(r.ResponseTrailers.GetTrailers())
		}
		p.complete()
		return one(continueResponseTrailers()), nil
	}
	return nil, fmt.Errorf("unsupported ext_proc message %T", req.GetRequest())
}

func one(r *extprocv3.ProcessingResponse) []*extprocv3.ProcessingResponse {
	return []*extprocv3.ProcessingResponse{r}
}

// undecided: a guarded request whose decision is still pending.
func (p *processor) undecided() bool { return p.stage == collecting }

// admit chooses the policy and reads the request; a non-nil answer ends
// the request (problem, or pass-through). It is the same for both shapes.
func (p *processor) admit(f facts) *extprocv3.ProcessingResponse {
	pol, err := p.s.policyFor(p.ctx, f.routeName)
	if err != nil {
		reason := "unknown_policy"
		if errors.Is(err, errNoRouteName) {
			reason = "no_route_name"
		}
		p.s.protocolError(reason)
		p.log.ErrorContext(p.ctx, "ext_proc configuration error; rejecting request", "error", err)
		return p.reject(idempotency.ProblemFor(err))
	}
	p.info = p.s.policies[pol]
	if !pol.Applies(f.method) || (isGRPC(f.contentType) && !p.grpc.on) {
		// Most traffic (GET, HEAD...) ends here. A gRPC replay through
		// ImmediateResponse would go out as Envoy's trailers-only local
		// reply without the message or grpc-status: gRPC calls are ours
		// only on streams that can answer them (grpc.go).
		p.stage = notOurs
		p.decided(idempotency.Pass.String(), nil)
		return nil
	}
	p.policy = pol
	p.req = f.request(p.info)
	p.contentLength = f.contentLength
	if pol.ScopePrincipal && !f.peerKnown {
		// Without the peer attributes every caller would share the
		// anonymous scope and see each other's responses: fail closed.
		p.stage = notOurs
		p.s.protocolError("no_peer_attributes")
		p.s.warnNoPrincipal.Do(func() {
			p.log.Error(`a policy scopes on the mTLS peer (scope_principal) but Envoy sends no connection.mtls attribute: add request_attributes ["connection.mtls", "connection.uri_san_peer_certificate", "connection.subject_peer_certificate"] to the ext_proc filter (gopotency envoy-config does); such requests are refused until then`)
		})
		return p.reject(idempotency.ProblemFor(fmt.Errorf("%w: no mTLS peer attributes for a scope_principal policy", idempotency.ErrMisconfigured)))
	}
	d, proceed := p.s.o.Engine.Precheck(pol, &p.req)
	if !proceed {
		p.stage = notOurs
		if d.Kind == idempotency.Reject {
			return p.reject(d.Problem)
		}
		p.decided(d.Kind.String(), nil)
		return nil
	}
	if p.needsBody() && f.contentLength > pol.MaxRequestBody {
		// Decided at the headers, before Envoy buffers (and, over its
		// buffer limit, stalls) a body that cannot be fingerprinted.
		p.stage = notOurs
		return p.reject(idempotency.ProblemFor(fmt.Errorf("%w: Content-Length %d is over %d bytes", idempotency.ErrRequestTooLarge, f.contentLength, pol.MaxRequestBody)))
	}
	if p.s.busy() {
		p.stage = notOurs
		p.log.WarnContext(p.ctx, "buffered bodies at ext_proc.max_buffered_bytes; turning a guarded request away", "buffered", p.s.Buffered())
		return p.reject(idempotency.ProblemFor(idempotency.ErrServerBusy))
	}
	return nil
}

func (p *processor) needsBody() bool { return p.policy.NeedsBody(&p.req) }

func (p *processor) requestHeaders(req *extprocv3.ProcessingRequest, h *extprocv3.HttpHeaders) []*extprocv3.ProcessingResponse {
	if p.stage != open {
		// Envoy sends request headers once per stream. A repeat must not
		// win a second lease and orphan the first.
		return one(continueRequestHeaders(nil))
	}
	pc := req.GetProtocolConfig()
	p.readProtocol(pc)
	f := headerFacts(req, h.GetHeaders())
	if pc.GetRequestBodyMode() == filterv3.ProcessingMode_FULL_DUPLEX_STREAMED {
		// A stream set up for gRPC calls, whatever this request is.
		return p.grpcRequestHeaders(f, h.GetEndOfStream(), pc)
	}
	if resp := p.admit(f); resp != nil || p.stage == notOurs {
		if resp != nil {
			return one(resp)
		}
		return one(continueRequestHeaders(cloneMode(&passThrough)))
	}
	if !p.needsBody() || h.GetEndOfStream() {
		return one(p.begin(heldHeaders))
	}
	if p.earlyBody {
		// Chunks are on their way and mode overrides are ignored: the
		// headers answer waits with the chunks' until the body is whole.
		// Recording then needs response phases sent statically.
		if pc.GetResponseBodyMode() == filterv3.ProcessingMode_NONE {
			p.s.warnStaticResp.Do(func() {
				p.log.Warn("send_body_without_waiting_for_header_response is on and the response body mode is NONE: Envoy ignores mode overrides then, so responses cannot be recorded and every first request ends outcome-unknown; set response_header_mode SEND and response_body_mode STREAMED statically")
			})
		}
		p.stage = collecting
		p.held = append(p.held, heldHeaders)
		return nil
	}
	// Ask for the whole body before anything goes upstream (Envoy holds
	// the headers meanwhile). BUFFERED_PARTIAL, not BUFFERED: a body over
	// Envoy's buffer limit then arrives cut (end_of_stream false) and gets
	// 413 (verifyWhole), where BUFFERED would stall the connection. Request
	// trailers are asked for so a request that ends with trailers is still
	// decided before it leaves. Mode overrides are only honoured on headers
	// answers, so the response phases are turned on now; a request that
	// ends up holding no lease answers them with CONTINUE.
	p.stage = collecting
	p.staticBuffered = false // the override replaces Envoy's static mode
	mode := cloneMode(&recording)
	mode.RequestBodyMode = filterv3.ProcessingMode_BUFFERED_PARTIAL
	mode.RequestTrailerMode = filterv3.ProcessingMode_SEND
	return one(continueRequestHeaders(mode))
}

func (p *processor) requestBody(req *extprocv3.ProcessingRequest, b *extprocv3.HttpBody) []*extprocv3.ProcessingResponse {
	switch p.stage {
	case open:
		return p.bodyFirst(req, b)
	case collecting:
	default:
		if p.stage == decided && p.policy != nil && p.needsBody() {
			// More request body after the decision: Envoy streamed a body
			// it was asked to buffer (allow_mode_override off?). The
			// fingerprint missed part of it; nothing can be undone now.
			p.s.protocolError("body_after_decision")
			p.log.ErrorContext(p.ctx, "request body chunk after the decision: Envoy ignored the BUFFERED_PARTIAL override (is allow_mode_override set?)")
		}
		return one(continueRequestBody())
	}
	p.collect(&p.req.Body, b.GetBody())
	if int64(len(p.req.Body)) > p.policy.MaxRequestBody {
		return p.refuseBody(fmt.Errorf("%w: more than %d bytes", idempotency.ErrRequestTooLarge, p.policy.MaxRequestBody))
	}
	if !b.GetEndOfStream() && (len(p.held) > 0 || p.streamedBody) {
		// Chunks of a streamed body are held until the last.
		p.held = append(p.held, heldBody)
		return nil
	}
	return p.decideWhole(heldBody, b.GetEndOfStream())
}

// decideWhole decides a collected request once its body is proven whole,
// and refuses it otherwise: a fingerprint of part of a body would replay
// another request's response or refuse an identical retry.
func (p *processor) decideWhole(cur heldMsg, eos bool) []*extprocv3.ProcessingResponse {
	if err := p.verifyWhole(eos); err != nil {
		if p.contentLength < 0 {
			// Cut, or followed by trailers: nothing tells the two apart.
			p.s.protocolError("request_body_unproven")
			p.log.WarnContext(p.ctx, "refusing a request body of undeclared length that the proxy passed without its end: it was cut at the proxy's buffer limit (raise it above max_request_body), or trailers follow (the client must send a Content-Length)", "error", err)
		} else {
			p.s.protocolError("request_body_cut")
			p.log.ErrorContext(p.ctx, "refusing a request body the proxy passed only in part: raise the proxy's buffer limit above max_request_body (Envoy: per_connection_buffer_limit_bytes; Envoy Gateway: ClientTrafficPolicy connection.bufferLimit), as gopotency envoy-config generates it", "error", err)
		}
		return p.refuseBody(err)
	}
	return p.decideHeld(cur)
}

// verifyWhole checks that the collected request body is the whole body
// before it is fingerprinted. A buffered body without end_of_stream is
// either followed by trailers or was cut at Envoy's buffer limit
// (BUFFERED_PARTIAL sends what it holds and streams the rest upstream
// unseen): only a declared Content-Length, or a static BUFFERED mode
// (which answers 413 rather than cut), tells the two apart.
func (p *processor) verifyWhole(eos bool) error {
	n := int64(len(p.req.Body))
	switch {
	case p.contentLength >= 0 && n != p.contentLength:
		return fmt.Errorf("%w: the proxy passed %d of the %d bytes declared (its buffer limit is below max_request_body %d: raise the proxy's buffer limit)", idempotency.ErrRequestTooLarge, n, p.contentLength, p.policy.MaxRequestBody)
	case eos || p.contentLength >= 0 || p.staticBuffered:
		return nil
	}
	return fmt.Errorf("%w: the proxy passed %d bytes of a body of undeclared length without its end (its buffer limit is below max_request_body %d: raise the proxy's buffer limit, or send a Content-Length)", idempotency.ErrRequestTooLarge, n, p.policy.MaxRequestBody)
}

// refuseBody ends a guarded request whose body cannot be fingerprinted.
func (p *processor) refuseBody(err error) []*extprocv3.ProcessingResponse {
	p.stage = notOurs
	p.dropRequestBody()
	return one(p.reject(idempotency.ProblemFor(err)))
}

// readProtocol reads Envoy's static body settings, sent on a stream's
// first message only.
func (p *processor) readProtocol(pc *extprocv3.ProtocolConfiguration) {
	mode := pc.GetRequestBodyMode()
	p.streamedBody = mode == filterv3.ProcessingMode_STREAMED || mode == filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
	p.earlyBody = p.streamedBody && pc.GetSendBodyWithoutWaitingForHeaderResponse()
	p.staticBuffered = mode == filterv3.ProcessingMode_BUFFERED
}

// bodyFirst handles a stream whose first message is the request body: the
// headers were skipped and the facts come as attributes.
func (p *processor) bodyFirst(req *extprocv3.ProcessingRequest, b *extprocv3.HttpBody) []*extprocv3.ProcessingResponse {
	f, ok := attributeFacts(req, &p.s.contract)
	if !ok {
		p.stage = notOurs
		p.s.protocolError("contract_mismatch")
		p.log.ErrorContext(p.ctx, "body-first request without the expected attribute contract; failing closed (regenerate the Envoy config: gopotency envoy-config)",
			"want", p.s.contract.TokenAttribute, "got", attribute(req, p.s.contract.TokenAttribute))
		return one(p.reject(idempotency.ProblemFor(idempotency.ErrMisconfigured)))
	}
	p.readProtocol(req.GetProtocolConfig())
	if resp := p.admit(f); resp != nil || p.stage == notOurs {
		if resp == nil {
			resp = continueRequestBody()
		}
		return one(resp)
	}
	p.stage = collecting
	return p.requestBody(req, b)
}

// requestTrailers decides a request whose body ended with trailers (or
// that had none but trailers).
func (p *processor) requestTrailers() []*extprocv3.ProcessingResponse {
	if p.stage != collecting {
		return one(continueRequestTrailers())
	}
	return p.decideWhole(heldTrailers, true)
}

// collect adds a body chunk to *body (the request's or the response's)
// and to the server's budget. Each message's bytes are its own (proto
// unmarshalling copies them), so the first chunk is kept without a copy:
// the usual single buffered message.
func (p *processor) collect(body *[]byte, chunk []byte) {
	if len(*body) == 0 {
		*body = chunk
	} else {
		*body = append((*body)[:len(*body):len(*body)], chunk...)
	}
	p.s.hold(int64(len(chunk)))
	p.buffered += int64(len(chunk))
}

// dropRequestBody gives the request body's bytes back to the budget once
// the fingerprint has them.
func (p *processor) dropRequestBody() {
	p.req.Body = nil
	p.s.hold(-p.buffered)
	p.buffered = 0
}

// decideHeld runs the engine for a collected request and answers every
// held message and the current one (cur), in order.
func (p *processor) decideHeld(cur heldMsg) []*extprocv3.ProcessingResponse {
	msgs := append(p.held, cur)
	p.held = nil
	first := p.begin(msgs[0])
	if first.GetImmediateResponse() != nil {
		return one(first) // the stream ends with it: no further answers
	}
	out := []*extprocv3.ProcessingResponse{first}
	for _, m := range msgs[1:] {
		out = append(out, continueFor(m))
	}
	return out
}

func continueFor(m heldMsg) *extprocv3.ProcessingResponse {
	switch m {
	case heldHeaders:
		return continueRequestHeaders(nil)
	case heldTrailers:
		return continueRequestTrailers()
	}
	return continueRequestBody()
}

// begin runs the engine and turns its decision into the answer to msg.
func (p *processor) begin(msg heldMsg) *extprocv3.ProcessingResponse {
	d := p.run()
	switch d.Kind {
	case idempotency.Proceed:
		if msg == heldHeaders {
			return continueRequestHeaders(cloneMode(&recording))
		}
		return continueFor(msg)
	case idempotency.Replay:
		return replayResponse(d.Record)
	case idempotency.Reject:
		return p.problem(d.Problem)
	}
	if msg == heldHeaders {
		return continueRequestHeaders(cloneMode(&passThrough))
	}
	return continueFor(msg)
}

// run runs the engine once for the request; a request that may proceed
// holds the lease from here.
func (p *processor) run() idempotency.Decision {
	var opts []idempotency.BeginOption
	if p.policy.WaitInFlight > 0 && p.s.o.MaxMessageTimeout > 0 {
		opts = append(opts, idempotency.BeforeWait(p.extendTimeoutForWait))
	}
	p.stage = decided // one Begin per request, whatever chunks follow
	d := p.s.o.Engine.Begin(p.ctx, p.policy, &p.req, opts...)
	p.dropRequestBody()
	p.decided(d.Kind.String(), d.Problem)
	switch d.Kind {
	case idempotency.Proceed:
		p.lease = d.Lease
		p.lease.KeepAlive(p.ctx)
	case idempotency.Replay:
		p.log.DebugContext(p.ctx, "replaying stored response", "key_id", d.KeyID, "status", d.Record.Status)
	case idempotency.Reject:
		// Duplicates of a running request can come in storms; log them
		// only at debug so they do not drown the rest.
		level := slog.LevelInfo
		if errors.Is(d.Err, idempotency.ErrInFlight) {
			level = slog.LevelDebug
		}
		p.log.Log(p.ctx, level, "request rejected", "key_id", d.KeyID, "problem", d.Problem.Slug(), "reason", d.Err)
	}
	return d
}

// reject answers a refused request with its problem, and says so to
// Options.Decided.
func (p *processor) reject(prob *idempotency.Problem) *extprocv3.ProcessingResponse {
	p.decided(idempotency.Reject.String(), prob)
	return p.problem(prob)
}

// decided tells Options.Decided what became of the request.
func (p *processor) decided(outcome string, prob *idempotency.Problem) {
	if p.s.o.Decided == nil {
		return
	}
	d := Decision{Outcome: outcome}
	if p.info != nil {
		d.Policy = p.info.name
	}
	if prob != nil {
		d.Problem = prob.Slug()
	}
	p.s.o.Decided(p.ctx, d)
}

// extendTimeoutForWait asks Envoy for a longer message timeout before the
// engine waits for an in-flight duplicate (idempotency.BeforeWait), so only
// requests that really wait pay the extra message.
func (p *processor) extendTimeoutForWait(wait time.Duration) {
	d := min(wait+wait/2+500*time.Millisecond, p.s.o.MaxMessageTimeout)
	if err := p.send(&extprocv3.ProcessingResponse{OverrideMessageTimeout: durationpb.New(d)}); err != nil {
		p.log.WarnContext(p.ctx, "could not extend the ext_proc message timeout", "error", err)
	}
}

// undecidedAtResponse: a guarded request reached the upstream before the
// decision (Envoy never sent the body it was asked for). The upstream ran
// unchecked: the key is recorded as outcome-unknown so no retry runs it
// again. At the response headers the caller then fails closed (the client
// gets a problem, not an unrecorded success); later the head is gone.
func (p *processor) undecidedAtResponse(phase string) {
	p.s.protocolError("undecided_at_" + phase)
	p.log.ErrorContext(p.ctx, "guarded request reached the response phase undecided: Envoy forwarded it without sending the body asked for (is allow_mode_override set?); failing closed", "phase", phase)
	p.markUnknown()
}

// markUnknownWithin bounds markUnknown's claim, as a settle is bounded.
const markUnknownWithin = 5 * time.Second

// markUnknown claims the key of an undecided request and records its
// outcome as unknown (nothing is done if another request holds the key).
func (p *processor) markUnknown() {
	p.stage = decided
	// Outlives the stream, which Envoy may reset right after this message,
	// but not a stalled store (an engine without a store timeout).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), markUnknownWithin)
	defer cancel()
	d := p.s.o.Engine.Begin(ctx, p.policy, &p.req)
	p.dropRequestBody()
	if d.Kind == idempotency.Proceed {
		_ = d.Lease.Abandon(ctx, true)
	}
}

func (p *processor) responseHeaders(req *extprocv3.ProcessingRequest, h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	if p.undecided() {
		p.undecidedAtResponse("response_headers")
		return p.problem(idempotency.ProblemFor(idempotency.ErrProtocol))
	}
	if p.lease == nil {
		return continueResponseHeaders(cloneMode(&settled))
	}
	p.status, p.headers = responseHeaders(h.GetHeaders())
	if p.grpc.on {
		p.grpcResponseHeaders(h.GetEndOfStream())
	}
	details := attribute(req, "response.code_details")
	fromUpstream := details == "via_upstream" || (details == "" && hasHeader(p.headers, "x-envoy-upstream-service-time"))
	switch {
	case details != "" && !fromUpstream:
		// Envoy made this response itself (connect failure, timeout...):
		// it is not the upstream's answer, so it is never recorded.
		sent := !neverSent(details)
		p.log.InfoContext(p.ctx, "response generated by Envoy, not the upstream; not recorded", "details", details, "upstream_may_have_run", sent)
		p.abandon(sent)
		return continueResponseHeaders(cloneMode(&settled))
	case !fromUpstream && !p.policy.Stores(p.status):
		// Neither response.code_details nor the router's
		// x-envoy-upstream-service-time: an Envoy-made 5xx (timeout, reset)
		// looks like the upstream's own, and the upstream may have run.
		p.s.warnNoDetails.Do(func() {
			p.log.Warn(`Envoy sends no response.code_details: add response_attributes: ["response.code_details"] to the ext_proc filter; until then an unstored status without x-envoy-upstream-service-time is recorded as outcome-unknown instead of releasing its key`)
		})
		p.abandon(true)
		return continueResponseHeaders(cloneMode(&settled))
	case !p.policy.Stores(p.status) || contentLength(p.headers) > p.policy.MaxResponseBody:
		// Settled by the headers alone (released, or a tombstone): no
		// need to see the body.
		p.tooLarge = p.policy.Stores(p.status)
		p.complete()
		return continueResponseHeaders(cloneMode(&settled))
	}
	if h.GetEndOfStream() {
		p.complete()
	}
	return continueResponseHeaders(nil)
}

func (p *processor) responseBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if p.undecided() {
		p.undecidedAtResponse("response_body")
	}
	if p.lease == nil {
		return continueResponseBody()
	}
	if !p.tooLarge {
		if int64(len(p.body)+len(b.GetBody())) > p.policy.MaxResponseBody {
			p.tooLarge = true // a tombstone needs no body
			p.releaseBody()
		} else {
			p.collect(&p.body, b.GetBody())
		}
	}
	if b.GetEndOfStream() {
		// Record before the last chunk goes out, so a client that has the
		// answer and retries at once gets a replay, not a 409.
		p.complete()
	}
	return continueResponseBody()
}

// releaseBody drops the recorded response body and its budget.
func (p *processor) releaseBody() {
	p.body = nil
	p.s.hold(-p.buffered)
	p.buffered = 0
}

// complete records the response once it is whole.
func (p *processor) complete() {
	if p.lease == nil || p.status == 0 {
		return
	}
	if p.grpc.on && !p.grpcRecordable() {
		return
	}
	lease, held := p.lease, p.buffered
	resp := &idempotency.Record{Status: p.status, Headers: p.headers, Body: p.body}
	switch {
	case p.incomplete:
		resp.Mark = idempotency.MarkIncomplete
	case p.tooLarge:
		resp.Mark = idempotency.MarkTooLarge
	}
	// The settle owns the body (and its share of the budget) from here.
	p.lease, p.body, p.buffered = nil, nil, 0
	p.settle(lease, held, func(ctx context.Context) error { return lease.Complete(ctx, resp) })
}

// settle runs a store call that settles the lease (its errors are logged
// and counted by the engine). The answer Envoy waits for waits on it at
// most AnswerWithin (the store_timeout, below Envoy's message_timeout),
// first attempt included: past that the answer goes out and the engine's
// retries go on in the background, so a stalled store delays the record,
// never the client's response, and never turns it into Envoy's bare 504.
// Until the record lands, the key stays claimed: retries get 409, then the
// replay. The body's share of the budget is held until the save ends.
func (p *processor) settle(lease *idempotency.Lease, held int64, call func(context.Context) error) {
	// Outlives the stream: Envoy may reset it right after the last message.
	ctx := context.WithoutCancel(p.ctx)
	if p.s.o.AnswerWithin > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.s.o.AnswerWithin)
		defer cancel()
	}
	if call(ctx) == nil || held == 0 {
		p.s.hold(-held)
		return
	}
	go func() {
		<-lease.Saved()
		p.s.hold(-held)
	}()
}

// finish is the one path for every ending without a recorded response.
// Once the request was let through, nothing proves it did not reach the
// upstream (Envoy may forward on its own after a failed answer, under
// failure_mode_allow or a message timeout), so: a response head seen means
// the upstream ran and answered (response-incomplete), none means the
// outcome is unknown.
func (p *processor) finish() {
	if p.grpc.collecting != nil {
		p.grpc.collecting.Stop()
	}
	defer p.releaseBody()
	defer p.dropRequestBody()
	// A stream that ends while the body is collected never reached the
	// upstream when Envoy honoured the override (it holds the headers
	// until the body is processed): the usual case is a client giving up
	// mid-upload, so nothing is recorded.
	switch {
	case p.lease == nil:
	case p.status != 0:
		p.incomplete = true
		p.complete()
	default:
		p.abandon(true)
	}
}

func (p *processor) abandon(upstreamSawRequest bool) {
	lease := p.lease
	p.lease = nil
	p.settle(lease, 0, func(ctx context.Context) error { return lease.Abandon(ctx, upstreamSawRequest) })
}

// neverSent reports whether Envoy's response code details prove the
// request never reached an upstream host.
func neverSent(details string) bool {
	for _, s := range []string{"connection_failure", "no_healthy_upstream", "cluster_not_found", "route_not_found", "maintenance_mode", "overflow", "connection_limit", "direct_response"} {
		if strings.Contains(details, s) {
			return true
		}
	}
	return false
}

// cloneMode copies a mode template: answers adjust their copy (the
// request body mode of a collecting request) and the templates stay intact.
func cloneMode(m *filterv3.ProcessingMode) *filterv3.ProcessingMode {
	return &filterv3.ProcessingMode{
		RequestHeaderMode: m.RequestHeaderMode, ResponseHeaderMode: m.ResponseHeaderMode,
		RequestBodyMode: m.RequestBodyMode, ResponseBodyMode: m.ResponseBodyMode,
		RequestTrailerMode: m.RequestTrailerMode, ResponseTrailerMode: m.ResponseTrailerMode,
	}
}
