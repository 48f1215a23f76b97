package extproc

import (
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/grpcmw"
)

// Unary gRPC calls through Envoy. Envoy's ImmediateResponse cannot carry a
// gRPC answer (it becomes a trailers-only local reply without the message
// or the stored grpc-status), but StreamedImmediateResponse can: headers,
// the length-prefixed message, trailers. Envoy 1.40 accepts it only with
// the request body in FULL_DUPLEX_STREAMED mode (docs/envoy-verify.md), so
// a gRPC call is ours only on such a stream:
//
//   - the answer to the request headers waits until the request message
//     has come (Envoy sends the body without waiting in that mode), so
//     the fingerprint covers the message bytes;
//   - a call that proceeds goes upstream as it came: the headers answered
//     CONTINUE, the collected body sent back as one streamed body;
//   - replays and refusals are StreamedImmediateResponses; refusals are
//     the statuses of package grpcmw (StatusOf), trailers-only;
//   - the outcome is the grpc-status of the trailers (or of a
//     trailers-only answer), mapped to an HTTP status by grpcmw.CodeToHTTP
//     so the policy stores and releases by the same rules as HTTP; a
//     status by which the upstream gave up (grpcmw.GaveUp) is an unknown
//     outcome, as in grpcmw;
//   - a call that sends a second message is a client or bidi stream: it
//     passes through, unrecorded, and so does every unkeyed call.

// grpcCall is a processor's state for a gRPC call.
type grpcCall struct {
	on bool
	// answered: a local reply went out; Envoy ends the stream with it, and
	// messages still in flight get no answer.
	answered bool
	// httpStatus is the response's :status; trailersOnly: the response
	// headers ended the stream (the status is among them).
	httpStatus   int
	trailersOnly bool
	trailers     []idempotency.Header
	// responseDuplex: the response body is FULL_DUPLEX_STREAMED too (the
	// only mode in which Envoy Gateway sends response trailers): its
	// chunks go back as they come.
	responseDuplex bool
	// collecting bounds the wait for the request's end (collectExpired).
	collecting *time.Timer
}

// grpcCollectWithin bounds the wait for a keyed call's request to end when
// Options.MaxMessageTimeout is unset. Envoy runs no message timer while
// the headers answer waits in this mode, so the server runs its own.
const grpcCollectWithin = 30 * time.Second

// collectExpired refuses a keyed call whose request did not end in time:
// a stream that waits for a reply before it ends (it cannot be told from a
// unary call), or a client that trickles its message. Its body cannot be
// proven whole, so it is refused as a cut body is; nothing ran, nothing is
// locked, and its bytes leave the budget. It runs on the timer's
// goroutine, hence the stream's lock.
func (p *processor) collectExpired() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stage != collecting || !p.grpc.on || p.grpc.answered {
		return
	}
	within := cmp.Or(p.s.o.MaxMessageTimeout, grpcCollectWithin)
	p.stage = notOurs
	p.dropRequestBody()
	p.s.protocolError("request_body_unproven")
	p.log.WarnContext(p.ctx, "a keyed gRPC call did not end its request in time; refused, nothing ran: send idempotency-key on unary calls only (a keyed stream that waits for a reply cannot be told from one)", "within", within.String())
	_ = p.send(p.reject(idempotency.ProblemFor(fmt.Errorf("%w: a keyed gRPC call must end its request within %s; a stream cannot carry idempotency-key", idempotency.ErrRequestTooLarge, within))))
}

// isGRPC: gRPC or gRPC-Web, which no HTTP answer may replace.
func isGRPC(contentType string) bool { return strings.HasPrefix(contentType, "application/grpc") }

// isGRPCCall: gRPC itself (application/grpc, +codec, ;params). gRPC-Web
// carries its status in the body, not in trailers: it passes through.
func isGRPCCall(contentType string) bool {
	rest, ok := strings.CutPrefix(contentType, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// grpcStatusFields are the fields that carry a call's status.
var grpcStatusFields = []string{"grpc-status", "grpc-message", "grpc-status-details-bin"}

// problem renders a refusal: problem+json for HTTP, a gRPC status for a
// gRPC call.
func (p *processor) problem(pr *idempotency.Problem) *extprocv3.ProcessingResponse {
	if p.grpc.on {
		p.grpc.answered = true
		return grpcProblem(pr)
	}
	return problemResponse(pr)
}

func (p *processor) grpcRequestHeaders(f facts, eos bool, pc *extprocv3.ProtocolConfiguration) []*extprocv3.ProcessingResponse {
	p.grpc.on = true
	p.grpc.responseDuplex = pc.GetResponseBodyMode() == filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
	if !isGRPCCall(f.contentType) {
		p.stage = notOurs
		if pol, err := p.s.policyFor(p.ctx, f.routeName); !isGRPC(f.contentType) && (err != nil || pol.Applies(f.method)) {
			// HTTP on a stream set up for gRPC calls: its headers would go
			// upstream before its body could be judged. Refused, never run.
			p.grpc.on = false // the answer is problem+json
			p.s.protocolError("http_on_grpc_stream")
			p.log.ErrorContext(p.ctx, "a guarded HTTP request reached an ext_proc filter set up for gRPC calls (request body FULL_DUPLEX_STREAMED); refusing it: route HTTP requests to the HTTP filter (a GRPCRoute or a gRPC-only route must carry gRPC only)", "content_type", f.contentType, "method", f.method)
			return one(p.reject(idempotency.ProblemFor(fmt.Errorf("%w: an HTTP request on a route set up for gRPC calls", idempotency.ErrMisconfigured))))
		}
		// gRPC-Web, or unguarded HTTP: through, its body chunks streamed
		// back as they come (grpcRequestBody).
		return one(continueRequestHeaders(nil))
	}
	if resp := p.admit(f); resp != nil {
		return one(resp)
	}
	if p.stage == notOurs {
		// Body chunks go back as they come (grpcRequestBody), as
		// FULL_DUPLEX_STREAMED requires.
		return one(continueRequestHeaders(nil))
	}
	p.stage = collecting
	p.grpc.collecting = time.AfterFunc(cmp.Or(p.s.o.MaxMessageTimeout, grpcCollectWithin), p.collectExpired)
	if eos {
		return p.grpcDecide(heldHeaders) // no message: a broken call, still run once
	}
	return nil // answered with the decision, once the message is here
}

func (p *processor) grpcRequestBody(b *extprocv3.HttpBody) []*extprocv3.ProcessingResponse {
	switch {
	case p.grpc.answered:
		return nil
	case p.stage != collecting:
		return one(streamedBody(b.GetBody(), b.GetEndOfStream()))
	}
	p.collect(&p.req.Body, b.GetBody())
	if secondMessage(p.req.Body) {
		// A client or bidi stream: not a call that runs once. It goes on
		// as it came; its client may wait for replies before it ends.
		body := p.req.Body
		p.stage = notOurs
		p.dropRequestBody()
		p.log.DebugContext(p.ctx, "gRPC call sends more than one message: passed through as a stream")
		return []*extprocv3.ProcessingResponse{continueRequestHeaders(nil), streamedBody(body, b.GetEndOfStream())}
	}
	if int64(len(p.req.Body)) > p.policy.MaxRequestBody {
		p.stage = notOurs
		p.dropRequestBody()
		return one(p.reject(idempotency.ProblemFor(fmt.Errorf("%w: a gRPC request message over %d bytes", idempotency.ErrRequestTooLarge, p.policy.MaxRequestBody))))
	}
	if !b.GetEndOfStream() {
		return nil
	}
	return p.grpcDecide(heldBody)
}

func (p *processor) grpcRequestTrailers() []*extprocv3.ProcessingResponse {
	switch {
	case p.grpc.answered:
		return nil
	case p.stage == collecting:
		return p.grpcDecide(heldTrailers)
	}
	return one(continueRequestTrailers())
}

// grpcDecide runs the engine for a whole request message and answers the
// held headers, and the body and trailers up to last, the message that
// ended the request.
func (p *processor) grpcDecide(last heldMsg) []*extprocv3.ProcessingResponse {
	if p.grpc.collecting != nil {
		p.grpc.collecting.Stop()
	}
	body := p.req.Body
	d := p.run()
	switch d.Kind {
	case idempotency.Replay:
		out, err := grpcReplay(d.Record)
		if err != nil {
			p.log.ErrorContext(p.ctx, "stored gRPC response unreadable; refusing the retry", "key_id", d.KeyID, "error", err)
			return one(p.reject(idempotency.ProblemFor(err)))
		}
		p.grpc.answered = true
		return out
	case idempotency.Reject:
		return one(p.problem(d.Problem))
	}
	out := one(continueRequestHeaders(nil))
	if last != heldHeaders {
		out = append(out, streamedBody(body, last == heldBody))
	}
	if last == heldTrailers {
		out = append(out, continueRequestTrailers())
	}
	return out
}

// secondMessage reports whether a request body holds more than one
// length-prefixed message (a 1-byte flag, a 4-byte length, the message).
func secondMessage(b []byte) bool {
	if len(b) < 5 {
		return false
	}
	return uint64(len(b)) > 5+uint64(binary.BigEndian.Uint32(b[1:5]))
}

// grpcResponseHeaders reads the status of a trailers-only answer; other
// answers get theirs from the trailers.
func (p *processor) grpcResponseHeaders(eos bool) {
	p.grpc.httpStatus = p.status
	if p.status != 200 || !eos {
		return
	}
	p.grpc.trailersOnly = true
	p.status = grpcOutcome(p.headers)
}

func (p *processor) grpcResponseTrailers(m *corev3.HeaderMap) {
	_, p.grpc.trailers = responseHeaders(m)
	if p.grpc.httpStatus == 200 {
		p.status = grpcOutcome(p.grpc.trailers)
	}
}

// grpcOutcome is the HTTP status the policy judges a gRPC answer by: its
// grpc-status mapped as package grpcmw maps it (200 without one, as the
// client then sees an error anyway and a replay repeats it).
func grpcOutcome(fields []idempotency.Header) int {
	if c, ok := grpcCode(fields); ok {
		return grpcmw.CodeToHTTP(c)
	}
	return 200
}

// grpcCode is the grpc-status among fields, if there is one.
func grpcCode(fields []idempotency.Header) (codes.Code, bool) {
	for _, h := range fields {
		if h.Name == "grpc-status" {
			if c, err := strconv.ParseUint(h.Value, 10, 32); err == nil {
				return codes.Code(c), true
			}
		}
	}
	return 0, false
}

// grpcRecordable shapes a gRPC answer into its record before complete
// stores it; false when it must not be stored as an answer.
func (p *processor) grpcRecordable() bool {
	if p.grpc.httpStatus != 200 && p.policy.Stores(p.status) {
		// Not a gRPC answer (a proxy's or a plain HTTP server's): a replay
		// could not be told from one. The call may have run.
		p.log.WarnContext(p.ctx, "gRPC call answered with an HTTP status other than 200; recorded as outcome-unknown", "status", p.grpc.httpStatus)
		p.abandon(true)
		return false
	}
	status := p.grpc.trailers
	if p.grpc.trailersOnly {
		status = p.headers
	}
	if c, ok := grpcCode(status); ok && grpcmw.GaveUp(c) {
		p.log.WarnContext(p.ctx, "gRPC upstream gave up part way and may have had its effect; recorded as outcome-unknown, retries are refused", "grpc_status", c.String())
		p.abandon(true)
		return false
	}
	if p.tooLarge || p.incomplete || !p.policy.Stores(p.status) {
		return true
	}
	form, trailers := byte(grpcFull), p.grpc.trailers
	if p.grpc.trailersOnly {
		form, trailers = grpcTrailersOnly, nil
		var headers []idempotency.Header
		for _, h := range p.headers {
			if isStatusField(h.Name) {
				trailers = append(trailers, h)
			} else {
				headers = append(headers, h)
			}
		}
		p.headers = headers
	}
	p.body = encodeGRPCRecord(form, p.body, trailers)
	return true
}

func isStatusField(name string) bool {
	for _, f := range grpcStatusFields {
		if name == f {
			return true
		}
	}
	return false
}

// The record body of a gRPC answer: a form byte, the messages as they
// came (uvarint length, bytes), then the trailer fields (uvarint-length
// name and value each), kept whole: they carry the status, which no
// replay list may drop. Headers are stored as for HTTP (replay lists
// apply). A trailers-only answer keeps its status fields as its trailers
// and is replayed as one headers block again.
const (
	grpcFull         = 1
	grpcTrailersOnly = 2
)

func encodeGRPCRecord(form byte, msgs []byte, trailers []idempotency.Header) []byte {
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(msgs)+64*len(trailers))
	out = append(out, form)
	out = binary.AppendUvarint(out, uint64(len(msgs)))
	out = append(out, msgs...)
	for _, h := range trailers {
		out = binary.AppendUvarint(out, uint64(len(h.Name)))
		out = append(out, h.Name...)
		out = binary.AppendUvarint(out, uint64(len(h.Value)))
		out = append(out, h.Value...)
	}
	return out
}

var errGRPCRecord = errors.New("extproc: stored gRPC response unreadable")

func decodeGRPCRecord(b []byte) (form byte, msgs []byte, trailers []idempotency.Header, err error) {
	if len(b) == 0 || (b[0] != grpcFull && b[0] != grpcTrailersOnly) {
		return 0, nil, nil, fmt.Errorf("%w: not a gRPC record (was the key used for HTTP?)", errGRPCRecord)
	}
	form, b = b[0], b[1:]
	next := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, false
		}
		v := b[k : k+int(n)]
		b = b[k+int(n):]
		return v, true
	}
	var ok bool
	if msgs, ok = next(); !ok {
		return 0, nil, nil, fmt.Errorf("%w: messages cut", errGRPCRecord)
	}
	for len(b) > 0 {
		name, ok1 := next()
		value, ok2 := next()
		if !ok1 || !ok2 {
			return 0, nil, nil, fmt.Errorf("%w: trailers cut", errGRPCRecord)
		}
		trailers = append(trailers, idempotency.Header{Name: string(name), Value: string(value)})
	}
	return form, msgs, trailers, nil
}

// grpcReplay answers with a stored gRPC answer: its headers (marked
// replayed), its messages and its trailers, as they came.
func grpcReplay(rec *idempotency.Record) ([]*extprocv3.ProcessingResponse, error) {
	form, msgs, trailers, err := decodeGRPCRecord(rec.Body)
	if err != nil {
		return nil, err
	}
	hs := []string{":status", "200"}
	for _, h := range rec.Headers {
		hs = append(hs, strings.ToLower(h.Name), h.Value)
	}
	hs = append(hs, grpcmw.ReplayedKey, "true")
	if form == grpcTrailersOnly {
		for _, h := range trailers {
			hs = append(hs, h.Name, h.Value)
		}
		return one(streamedHeaders(true, hs...)), nil
	}
	end := len(msgs) == 0 && len(trailers) == 0
	out := []*extprocv3.ProcessingResponse{streamedHeaders(end, hs...)}
	if len(msgs) > 0 {
		out = append(out, streamedImmediate(&extprocv3.StreamedImmediateResponse{Response: &extprocv3.StreamedImmediateResponse_BodyResponse{
			BodyResponse: &extprocv3.StreamedBodyResponse{Body: msgs, EndOfStream: len(trailers) == 0}}}))
	}
	if len(trailers) > 0 {
		out = append(out, streamedImmediate(&extprocv3.StreamedImmediateResponse{Response: &extprocv3.StreamedImmediateResponse_TrailersResponse{
			TrailersResponse: headerMap(fieldPairs(trailers)...)}}))
	}
	return out, nil
}

// grpcProblem answers a refusal as grpcmw's status for it, trailers-only.
func grpcProblem(pr *idempotency.Problem) *extprocv3.ProcessingResponse {
	st := grpcmw.StatusOf(pr)
	hs := []string{":status", "200", "content-type", "application/grpc",
		"grpc-status", strconv.Itoa(int(st.Code())), "grpc-message", encodeGRPCMessage(st.Message())}
	if details, err := proto.Marshal(st.Proto()); err == nil && len(st.Proto().GetDetails()) > 0 {
		hs = append(hs, "grpc-status-details-bin", base64.RawStdEncoding.EncodeToString(details))
	}
	return streamedHeaders(true, hs...)
}

// encodeGRPCMessage percent-encodes a grpc-message value as the gRPC
// HTTP/2 protocol requires (bytes outside printable ASCII, and '%').
func encodeGRPCMessage(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func fieldPairs(hs []idempotency.Header) []string {
	out := make([]string, 0, 2*len(hs))
	for _, h := range hs {
		out = append(out, h.Name, h.Value)
	}
	return out
}

func headerMap(kv ...string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, 0, len(kv)/2)}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return m
}

func streamedImmediate(r *extprocv3.StreamedImmediateResponse) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_StreamedImmediateResponse{StreamedImmediateResponse: r}}
}

func streamedHeaders(eos bool, kv ...string) *extprocv3.ProcessingResponse {
	return streamedImmediate(&extprocv3.StreamedImmediateResponse{Response: &extprocv3.StreamedImmediateResponse_HeadersResponse{
		HeadersResponse: &extprocv3.HttpHeaders{Headers: headerMap(kv...), EndOfStream: eos}}})
}

// streamedResponseBody passes a response body chunk on unchanged.
func streamedResponseBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
		BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: b.GetBody(), EndOfStream: b.GetEndOfStream()}}}}}}}
}

// streamedBody passes a request body chunk on unchanged
// (FULL_DUPLEX_STREAMED drops what is not sent back).
func streamedBody(b []byte, eos bool) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
		BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: b, EndOfStream: eos}}}}}}}
}
