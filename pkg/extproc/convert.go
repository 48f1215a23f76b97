package extproc

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// headerValue reads a header value. Envoy sends raw_value only (1.32+);
// value is read as a fallback for older proxies and test clients.
func headerValue(h *corev3.HeaderValue) string {
	if h.GetRawValue() != nil {
		return string(h.GetRawValue())
	}
	return h.GetValue()
}

// responseHeaders turns an Envoy response header map into a status and an
// ordered header list.
func responseHeaders(m *corev3.HeaderMap) (int, []idempotency.Header) {
	status := 0
	out := make([]idempotency.Header, 0, len(m.GetHeaders()))
	for _, hv := range m.GetHeaders() {
		if hv.GetKey() == ":status" {
			status, _ = strconv.Atoi(headerValue(hv))
			continue
		}
		if strings.HasPrefix(hv.GetKey(), ":") {
			continue
		}
		out = append(out, idempotency.Header{Name: hv.GetKey(), Value: headerValue(hv)})
	}
	return status, out
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

// hasHeader reports whether hs holds a field named name (lower case).
func hasHeader(hs []idempotency.Header, name string) bool {
	for _, h := range hs {
		if h.Name == name {
			return true
		}
	}
	return false
}

// headerMutation sets headers in raw_value only (Envoy rejects value and
// raw_value together). The first field of a name overwrites whatever Envoy
// put there (the local reply's text/plain content-type); repeats append, so
// Set-Cookie-like fields stay separate.
func headerMutation(hs []idempotency.Header) *extprocv3.HeaderMutation {
	seen := make(map[string]bool, len(hs))
	set := make([]*corev3.HeaderValueOption, 0, len(hs))
	for _, h := range hs {
		name := strings.ToLower(h.Name)
		set = append(set, &corev3.HeaderValueOption{
			Header:         &corev3.HeaderValue{Key: name, RawValue: []byte(h.Value)},
			Append:         wrapperspb.Bool(seen[name]),
			KeepEmptyValue: h.Value == "",
		})
		seen[name] = true
	}
	return &extprocv3.HeaderMutation{SetHeaders: set}
}

func immediate(status int, hs []idempotency.Header, body []byte, details string) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
			Headers: headerMutation(hs),
			Body:    body,
			Details: details,
		},
	}}
}

// replayResponse answers with a stored record.
func replayResponse(rec *idempotency.Record) *extprocv3.ProcessingResponse {
	hs := append(append([]idempotency.Header(nil), rec.Headers...), idempotency.Header{Name: idempotency.ReplayedHeader, Value: "true"})
	return immediate(rec.Status, hs, rec.Body, "gopotency_replay")
}

// problemResponse answers with a problem+json body.
func problemResponse(p *idempotency.Problem) *extprocv3.ProcessingResponse {
	return immediate(p.Status, p.Headers(), p.Body(), "gopotency_"+strings.ReplaceAll(p.Slug(), "-", "_"))
}

var (
	// recording turns on the response phases for a request that holds a
	// lease: headers, every body chunk (STREAMED, accumulated up to the
	// cap) and trailers (SEND, so completion is seen even when trailers
	// would hide end_of_stream on the last chunk).
	recording = filterv3.ProcessingMode{
		ResponseHeaderMode:  filterv3.ProcessingMode_SEND,
		ResponseBodyMode:    filterv3.ProcessingMode_STREAMED,
		ResponseTrailerMode: filterv3.ProcessingMode_SEND,
	}
	// settled skips the response body and trailers of a request whose
	// lease was settled at its response headers.
	settled = filterv3.ProcessingMode{ResponseTrailerMode: filterv3.ProcessingMode_SKIP}
	// passThrough skips every later phase. Body modes in an override are
	// literal (unset means NONE), which is what we want here.
	passThrough = filterv3.ProcessingMode{
		ResponseHeaderMode:  filterv3.ProcessingMode_SKIP,
		RequestTrailerMode:  filterv3.ProcessingMode_SKIP,
		ResponseTrailerMode: filterv3.ProcessingMode_SKIP,
	}
)

// continueHeaders answers a headers message with CONTINUE and an optional
// mode override.
func continueRequestHeaders(mode *filterv3.ProcessingMode) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{
		Response:     &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}},
		ModeOverride: mode,
	}
}

func continueRequestBody() *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
}

func continueResponseHeaders(mode *filterv3.ProcessingMode) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{
		Response:     &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}},
		ModeOverride: mode,
	}
}

func continueResponseBody() *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
}

func continueRequestTrailers() *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
}

func continueResponseTrailers() *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
}
