package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Errors of the admin API. Each maps to one problem type in the table
// below; wrap them with %w to add detail for the operator.
var (
	errOff        = errors.New("admin: the admin API is off")
	errNoRoute    = errors.New("admin: no such admin route")
	errMethod     = errors.New("admin: method not allowed")
	errBadRequest = errors.New("admin: bad request")
	errPurgeLive  = errors.New("admin: the key is held by a request whose lease is running")
)

// problem is an RFC 9457 problem detail with the admin API's extension
// members.
type problem struct {
	Status int    `json:"status"`
	Type   string `json:"type"`
	Title  string `json:"title"`
	Detail string `json:"detail,omitempty"`
	// KeyID, State, LeaseExpiresAt and Inputs say which key the request
	// named and why it was refused, so an operator can correct it.
	KeyID          string      `json:"key_id,omitempty"`
	State          string      `json:"state,omitempty"`
	LeaseExpiresAt *time.Time  `json:"lease_expires_at,omitempty"`
	Inputs         *inputsView `json:"inputs,omitempty"`

	retryAfter time.Duration
	headers    http.Header
}

// problemRow is one line of the admin error table.
type problemRow struct {
	err    error
	status int
	slug   string
	title  string
	// clientDetail: the wrapped message describes the operator's own
	// input (never a token or a stored value) and is shown.
	clientDetail bool
	detail       string
	retryAfter   time.Duration
}

const storeDown = "The store did not answer; nothing is known about the key. Retry; a purge that failed this way may or may not have deleted it, so inspect the key again."

// problems is the one table of the admin API, first match wins. Problems
// of the engine that fit an admin answer (a malformed key) come from
// idempotency.ProblemFor instead, so they keep their one definition.
var problems = []problemRow{
	{err: errOff, status: http.StatusNotFound, slug: "admin-api-off", title: "The admin API is off",
		detail: "Configure a bearer token (admin.token_file, --admin-token-file or GOPOTENCY_ADMIN_TOKEN) to turn it on."},
	{err: errNoCredentials, status: http.StatusUnauthorized, slug: "admin-unauthorized", title: "Bearer token required",
		detail: "Send Authorization: Bearer <token> with a token from the configured admin token file or GOPOTENCY_ADMIN_TOKEN."},
	{err: errWrongToken, status: http.StatusUnauthorized, slug: "admin-unauthorized", title: "Bearer token required",
		detail: "The bearer token sent is not accepted."},
	{err: errTokenFile, status: http.StatusServiceUnavailable, slug: "admin-token-unavailable", title: "The admin token file cannot be read",
		detail: "Every request is refused until the token file loads again; the server log says why.", retryAfter: time.Second},
	{err: errNoRoute, status: http.StatusNotFound, slug: "admin-not-found", title: "No such admin route",
		detail: "See docs/admin.md for the routes of /admin/v1."},
	{err: errMethod, status: http.StatusMethodNotAllowed, slug: "admin-method-not-allowed", title: "Method not allowed on this admin route", clientDetail: true},
	{err: errBadRequest, status: http.StatusBadRequest, slug: "admin-bad-request", title: "The admin request is not valid", clientDetail: true},
	{err: idempotency.ErrNotFound, status: http.StatusNotFound, slug: "admin-key-not-found", title: "No entry for this key",
		detail: "The store holds nothing under the key these inputs name: it was never used with them, it was released or purged, or its retention ran out. Check inputs.scope: a different scope (another Authorization value, principal or policy) names a different key."},
	{err: errPurgeLive, status: http.StatusConflict, slug: "admin-purge-refused", title: "The key is held by a request that may still be running",
		detail: "Its holder renews the lease while it runs and would re-create a purged claim at its next renewal; a retry arriving in between would run the operation a second time. Wait for lease_expires_at, or purge with force=true if you accept that risk."},
	{err: idempotency.ErrStoreUnavailable, status: http.StatusServiceUnavailable, slug: "store-unavailable", title: "Idempotency store unavailable",
		detail: storeDown, retryAfter: time.Second},
	{err: context.DeadlineExceeded, status: http.StatusServiceUnavailable, slug: "store-unavailable", title: "Idempotency store unavailable",
		detail: storeDown, retryAfter: time.Second},
}

// problemFor maps err through the table; what it does not know is a 500
// without internal detail.
func problemFor(err error) *problem {
	if errors.Is(err, idempotency.ErrKeyMalformed) {
		ip := idempotency.ProblemFor(err)
		return &problem{Status: ip.Status, Type: ip.Type, Title: ip.Title, Detail: ip.Detail}
	}
	for _, row := range problems {
		if errors.Is(err, row.err) {
			p := &problem{Status: row.status, Type: idempotency.ProblemTypeBase + row.slug, Title: row.title, Detail: row.detail, retryAfter: row.retryAfter}
			if row.clientDetail {
				p.Detail = err.Error()
			}
			return p
		}
	}
	return &problem{Status: http.StatusInternalServerError, Type: idempotency.ProblemTypeBase + "admin-internal", Title: "Internal error in the admin API",
		Detail: "The server log has the details."}
}

func (p *problem) write(w http.ResponseWriter) {
	for name, vals := range p.headers {
		w.Header()[name] = vals
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	if p.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((p.retryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(p.Status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(p)
}
