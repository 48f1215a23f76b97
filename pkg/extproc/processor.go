package extproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// attrNamespace is where Envoy puts the attributes it was asked to send.
const attrNamespace = "envoy.filters.http.ext_proc"

// processor holds one HTTP request's state across its ext_proc phases.
type processor struct {
	s    *Server
	ctx  context.Context
	send func(*extprocv3.ProcessingResponse) error
	log  *slog.Logger

	policy  *idempotency.Policy
	req     idempotency.Request
	lease   *idempotency.Lease
	decided bool
	// releasing is set when the answer being sent lets the request go
	// upstream; forwarded once that answer was sent. From then on the
	// outcome of an interrupted request is unknown.
	releasing, forwarded bool

	status     int
	headers    []idempotency.Header
	body       []byte
	tooLarge   bool
	incomplete bool
}

func (p *processor) handle(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if req.GetObservabilityMode() {
		return nil, nil
	}
	switch r := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return p.requestHeaders(req, r.RequestHeaders), nil
	case *extprocv3.ProcessingRequest_RequestBody:
		return p.requestBody(r.RequestBody), nil
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return continueRequestTrailers(), nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return p.responseHeaders(req, r.ResponseHeaders), nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return p.responseBody(r.ResponseBody), nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		p.complete()
		return continueResponseTrailers(), nil
	}
	return nil, fmt.Errorf("unsupported ext_proc message %T", req.GetRequest())
}

func (p *processor) reply(resp *extprocv3.ProcessingResponse) error {
	err := p.send(resp)
	if p.releasing {
		p.releasing = false
		p.forwarded = err == nil
	}
	return err
}

func (p *processor) requestHeaders(req *extprocv3.ProcessingRequest, h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	if p.lease != nil {
		// Envoy sends request headers once per stream. A repeat must not
		// win a second lease and orphan the first (whose renewal would
		// then run forever).
		return continueRequestHeaders(nil)
	}
	pol, err := p.s.policyFor(p.ctx)
	if err != nil {
		p.log.ErrorContext(p.ctx, "ext_proc configuration error; rejecting request", "error", err)
		return problemResponse(idempotency.ProblemFor(err))
	}
	if !pol.Applies(pseudoHeader(h.GetHeaders(), ":method")) {
		// Most traffic (GET, HEAD...) ends here, before any header map is built.
		return continueRequestHeaders(cloneMode(&passThrough))
	}
	pseudo, header := splitHeaders(h.GetHeaders())
	p.req = idempotency.Request{Method: pseudo[":method"], Path: pseudo[":path"], Header: header,
		Principal: attribute(req, "source.principal")}
	p.policy = pol
	if pol.ScopePrincipal && !hasAttribute(req, "source.principal") {
		p.s.warnNoPrincipal.Do(func() {
			p.log.Warn(`a policy scopes on the mTLS peer but Envoy sends no source.principal: add request_attributes: ["source.principal"] to the ext_proc filter; until then only scope_headers separate callers`)
		})
	}
	if strings.HasPrefix(header.Get("Content-Type"), "application/grpc") {
		// A replay would go out as Envoy's trailers-only gRPC local reply
		// and the grpc-status trailer is not recorded: gRPC calls are not
		// ours to deduplicate.
		return continueRequestHeaders(cloneMode(&passThrough))
	}
	d, proceed := p.s.o.Engine.Precheck(pol, &p.req)
	if !proceed {
		if d.Kind == idempotency.Reject {
			return problemResponse(d.Problem)
		}
		return continueRequestHeaders(cloneMode(&passThrough))
	}
	if pol.NeedsBody(idempotency.HasKey(pol, &p.req)) && !h.GetEndOfStream() {
		// The lease decision waits for the whole body. Mode overrides are
		// only honoured on headers answers, so the response phases are
		// turned on now; a request that ends up not holding a lease just
		// answers them with CONTINUE.
		mode := cloneMode(&recording)
		mode.RequestBodyMode = filterv3.ProcessingMode_BUFFERED
		return continueRequestHeaders(mode)
	}
	return p.begin(true)
}

func (p *processor) requestBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if p.policy == nil || p.decided {
		return continueRequestBody() // not ours to judge, or already judged
	}
	// In BUFFERED mode the whole body comes in one message; end_of_stream
	// is false only when trailers follow.
	p.req.Body = b.GetBody()
	return p.begin(false)
}

// begin runs the engine and turns its decision into the answer for the
// current phase (request headers, or request body when atHeaders is false).
func (p *processor) begin(atHeaders bool) *extprocv3.ProcessingResponse {
	if p.policy.WaitInFlight > 0 && p.s.o.MaxMessageTimeout > 0 {
		p.req.BeforeWait = p.extendTimeoutForWait
	}
	p.decided = true // one Begin per request, whatever chunks follow
	d := p.s.o.Engine.Begin(p.ctx, p.policy, &p.req)
	switch d.Kind {
	case idempotency.Proceed:
		p.lease = d.Lease
		p.lease.KeepAlive(p.ctx)
		p.releasing = true
		if atHeaders {
			mode := cloneMode(&recording)
			return continueRequestHeaders(mode)
		}
		return continueRequestBody()
	case idempotency.Replay:
		p.log.DebugContext(p.ctx, "replaying stored response", "key_id", d.KeyID, "status", d.Record.Status)
		return replayResponse(d.Record)
	case idempotency.Reject:
		// Duplicates of a running request can come in storms; log them
		// only at debug so they do not drown the rest.
		level := slog.LevelInfo
		if errors.Is(d.Err, idempotency.ErrInFlight) {
			level = slog.LevelDebug
		}
		p.log.Log(p.ctx, level, "request rejected", "key_id", d.KeyID, "problem", d.Problem.Slug(), "reason", d.Err)
		return problemResponse(d.Problem)
	}
	if atHeaders {
		return continueRequestHeaders(cloneMode(&passThrough))
	}
	return continueRequestBody()
}

// extendTimeoutForWait asks Envoy for a longer message timeout before the
// engine waits for an in-flight duplicate (Request.BeforeWait), so only
// requests that really wait pay the extra message.
func (p *processor) extendTimeoutForWait(wait time.Duration) {
	d := min(wait+wait/2+500*time.Millisecond, p.s.o.MaxMessageTimeout)
	if err := p.send(&extprocv3.ProcessingResponse{OverrideMessageTimeout: durationpb.New(d)}); err != nil {
		p.log.WarnContext(p.ctx, "could not extend the ext_proc message timeout", "error", err)
	}
}

func (p *processor) responseHeaders(req *extprocv3.ProcessingRequest, h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	if p.lease == nil {
		return continueResponseHeaders(nil)
	}
	p.status, p.headers = responseHeaders(h.GetHeaders())
	details := attribute(req, "response.code_details")
	switch {
	case details != "" && details != "via_upstream":
		// Envoy made this response itself (connect failure, timeout...):
		// it is not the upstream's answer, so it is never recorded.
		sent := !neverSent(details)
		p.log.InfoContext(p.ctx, "response generated by Envoy, not the upstream; not recorded", "details", details, "upstream_may_have_run", sent)
		p.abandon(sent)
		return continueResponseHeaders(cloneMode(&settled))
	case details == "" && !p.policy.Stores(p.status):
		// Without response.code_details an Envoy-made 5xx (timeout,
		// reset) looks like the upstream's own: the upstream may have run,
		// so the key is left to expire rather than released.
		p.s.warnNoDetails.Do(func() {
			p.log.Warn(`Envoy sends no response.code_details: add response_attributes: ["response.code_details"] to the ext_proc filter; until then unstored statuses leave keys locked until their lease expires instead of releasing them`)
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
	if p.lease == nil {
		return continueResponseBody()
	}
	if !p.tooLarge {
		if int64(len(p.body)+len(b.GetBody())) > p.policy.MaxResponseBody {
			p.tooLarge, p.body = true, nil // a tombstone needs no body
		} else {
			p.body = append(p.body, b.GetBody()...)
		}
	}
	if b.GetEndOfStream() {
		// Record before the last chunk goes out, so a client that has the
		// answer and retries at once gets a replay, not a 409.
		p.complete()
	}
	return continueResponseBody()
}

// complete records the response once it is whole.
func (p *processor) complete() {
	if p.lease == nil || p.status == 0 {
		return
	}
	ctx, cancel := p.settleCtx()
	defer cancel()
	err := p.lease.Complete(ctx, &idempotency.Response{Status: p.status, Headers: p.headers, Body: p.body, TooLarge: p.tooLarge, Incomplete: p.incomplete})
	if err != nil && !errors.Is(err, idempotency.ErrLeaseLost) {
		p.log.ErrorContext(p.ctx, "recording the response failed", "error", err)
	}
	p.lease = nil
}

// finish is the one path for every ending without a recorded response.
// Once the request was let through, nothing proves it did not reach the
// upstream (Envoy may forward on its own after a failed answer, under
// failure_mode_allow or a message timeout), so: a response head seen means
// the upstream ran and answered (response-incomplete), none means the
// outcome is unknown.
func (p *processor) finish() {
	if p.lease == nil {
		return
	}
	if p.status != 0 {
		p.incomplete = true
		p.complete()
		return
	}
	p.abandon(true)
}

func (p *processor) abandon(upstreamSawRequest bool) {
	ctx, cancel := p.settleCtx()
	defer cancel()
	_ = p.lease.Abandon(ctx, upstreamSawRequest)
	p.lease = nil
}

// settleCtx outlives the stream: Envoy may reset the stream right after the
// last message, and the store call must still happen.
func (p *processor) settleCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(p.ctx), p.s.o.SettleTimeout)
}

// contentLength returns the declared body length, or -1.
func contentLength(hs []idempotency.Header) int64 {
	for _, h := range hs {
		if strings.EqualFold(h.Name, "content-length") {
			if n, err := strconv.ParseInt(h.Value, 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
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

func hasAttribute(req *extprocv3.ProcessingRequest, name string) bool {
	_, ok := req.GetAttributes()[attrNamespace].GetFields()[name]
	return ok
}

// attribute reads an attribute Envoy was asked to send (request_attributes
// or response_attributes); they come on the first message of a direction.
func attribute(req *extprocv3.ProcessingRequest, name string) string {
	ns := req.GetAttributes()[attrNamespace]
	if ns == nil {
		return ""
	}
	v := ns.GetFields()[name]
	if v == nil {
		return ""
	}
	if _, ok := v.GetKind().(*structpb.Value_StringValue); ok {
		return v.GetStringValue()
	}
	return fmt.Sprint(v.AsInterface())
}

func cloneMode(m *filterv3.ProcessingMode) *filterv3.ProcessingMode {
	return &filterv3.ProcessingMode{
		RequestHeaderMode: m.RequestHeaderMode, ResponseHeaderMode: m.ResponseHeaderMode,
		RequestBodyMode: m.RequestBodyMode, ResponseBodyMode: m.ResponseBodyMode,
		RequestTrailerMode: m.RequestTrailerMode, ResponseTrailerMode: m.ResponseTrailerMode,
	}
}
