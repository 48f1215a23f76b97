package idempotency

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ProblemTypeBase prefixes every problem type URI. The URIs are stable API:
// clients may switch on them. docs/problems.md describes each one.
const ProblemTypeBase = "https://gopotency.dev/problems/"

// Problem is an RFC 9457 problem detail that a transport sends as
// application/problem+json.
type Problem struct {
	Status int    `json:"status"`
	Type   string `json:"type"`
	Title  string `json:"title"`
	Detail string `json:"detail,omitempty"`
	// OriginalStatus is the status of the earlier response a
	// response-incomplete problem reports (an RFC 9457 extension member).
	OriginalStatus int `json:"original_status,omitempty"`
	// RetryAfter, when positive, is sent as a Retry-After header (whole
	// seconds, rounded up).
	RetryAfter time.Duration `json:"-"`
}

// problemRow is one line of the error table.
type problemRow struct {
	err    error
	status int
	slug   string
	title  string
	// clientDetail: the wrapped message describes the client's own input
	// and may be shown; otherwise detail is fixed so internals never leak.
	clientDetail bool
	detail       string
	retryAfter   time.Duration
}

// problems is the one table mapping every engine outcome to HTTP. Order
// matters: the first row whose error matches wins.
var problems = []problemRow{
	{err: ErrKeyMissing, status: http.StatusBadRequest, slug: "key-missing", title: "Idempotency-Key header required",
		detail: "This endpoint requires an Idempotency-Key header; send a unique value per logical operation."},
	{err: ErrKeyMalformed, status: http.StatusBadRequest, slug: "key-malformed", title: "Idempotency-Key header malformed", clientDetail: true},
	{err: ErrInFlight, status: http.StatusConflict, slug: "request-in-progress", title: "A request with this Idempotency-Key is still being processed",
		detail: "Retry after the time given in Retry-After."},
	{err: ErrMismatch, status: http.StatusUnprocessableEntity, slug: "key-reused", title: "Idempotency-Key reused with a different request",
		detail: "This key was first used with a different method, path, headers or body. Use a new key for a new request."},
	{err: ErrRecordTooLarge, status: http.StatusRequestEntityTooLarge, slug: "response-too-large", title: "The original response was too large to store",
		detail: "The request with this key was executed, but its response exceeded the storage cap and cannot be replayed. It will not be executed again."},
	{err: ErrRequestTooLarge, status: http.StatusRequestEntityTooLarge, slug: "request-too-large", title: "Request body too large for idempotency checking", clientDetail: true},
	{err: ErrOutcomeUnknown, status: http.StatusFailedDependency, slug: "outcome-unknown", title: "The outcome of the earlier request with this Idempotency-Key is unknown",
		detail: "An earlier request with this key was forwarded but no response came back (the connection dropped, the upstream was reset or timed out, or the server handling it stopped). It may have been executed. It will not be executed again under this key: check the resource's state before retrying the operation with a new key."},
	{err: errResponseIncomplete, status: http.StatusFailedDependency, slug: "response-incomplete", title: "The response to the earlier request with this Idempotency-Key was cut off",
		detail: "An earlier request with this key was executed and answered with the status in original_status, but the response body did not arrive whole, so it cannot be replayed. It will not be executed again: check the resource's state."},
	{err: errRecordEvicted, status: http.StatusFailedDependency, slug: "response-evicted", title: "The response to the earlier request with this Idempotency-Key is no longer stored",
		detail: "An earlier request with this key was executed and answered with the status in original_status; its response was dropped to keep the idempotency store within its memory budget. It will not be executed again: check the resource's state."},
	{err: ErrServerBusy, status: http.StatusServiceUnavailable, slug: "server-busy", title: "The idempotency layer is at capacity",
		detail: "The request was not executed. Retry later with the same key.", retryAfter: time.Second},
	{err: ErrMisconfigured, status: http.StatusInternalServerError, slug: "proxy-misconfigured", title: "The proxy configuration does not match the idempotency layer",
		detail: "The request was not executed. The operator must regenerate the proxy configuration (gopotency envoy-config)."},
	{err: ErrProtocol, status: http.StatusBadGateway, slug: "protocol-error", title: "The idempotency layer lost track of this request",
		detail: "The request reached the application without being checked; its outcome is recorded as unknown. Check the resource's state before retrying with a new key."},
	{err: ErrStoreUnavailable, status: http.StatusServiceUnavailable, slug: "store-unavailable", title: "Idempotency store unavailable",
		detail: "The request was not executed. Retry later with the same key.", retryAfter: time.Second},
}

// ProblemFor maps err to its problem through the table. Errors the table
// does not know become a 500 "internal" problem without internal detail.
func ProblemFor(err error) *Problem {
	for _, row := range problems {
		if errors.Is(err, row.err) || row.err == ErrStoreUnavailable && storeDown(err) {
			p := &Problem{Status: row.status, Type: ProblemTypeBase + row.slug, Title: row.title, Detail: row.detail, RetryAfter: row.retryAfter}
			if row.clientDetail {
				p.Detail = err.Error()
			}
			var inc *statusError
			if errors.As(err, &inc) {
				p.OriginalStatus = inc.Status
			}
			return p
		}
	}
	return &Problem{Status: http.StatusInternalServerError, Type: ProblemTypeBase + "internal", Title: "Internal error in the idempotency layer",
		Detail: "The request was not executed."}
}

// Slug is the last segment of the type URI, used as a metrics label.
func (p *Problem) Slug() string { return strings.TrimPrefix(p.Type, ProblemTypeBase) }

// Body returns the problem as JSON.
func (p *Problem) Body() []byte {
	b, _ := json.Marshal(p) // a struct of strings and an int cannot fail
	return b
}

// Headers returns the headers a transport sends with the problem.
func (p *Problem) Headers() []Header {
	h := []Header{{Name: "Content-Type", Value: "application/problem+json"}}
	if p.RetryAfter > 0 {
		secs := int64((p.RetryAfter + time.Second - 1) / time.Second)
		h = append(h, Header{Name: "Retry-After", Value: strconv.FormatInt(secs, 10)})
	}
	return h
}
