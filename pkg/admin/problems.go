package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
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
	idempotency.Problem
	// KeyID, State, LeaseExpiresAt and Inputs say which key the request
	// named and why it was refused, so an operator can correct it.
	KeyID          string      `json:"key_id,omitempty"`
	State          string      `json:"state,omitempty"`
	LeaseExpiresAt *time.Time  `json:"lease_expires_at,omitempty"`
	Inputs         *inputsView `json:"inputs,omitempty"`

	headers http.Header
}

// problemRow is one line of the admin error table: the problem for err,
// its Type the slug (problemFor adds the base).
type problemRow struct {
	err error
	idempotency.Problem
	// clientDetail: the wrapped message describes the operator's own
	// input (never a token or a stored value) and is shown.
	clientDetail bool
}

const storeDown = "The store did not answer; nothing is known about the key. Retry; a purge that failed this way may or may not have deleted it, so inspect the key again."

// problems is the one table of the admin API, first match wins. Problems
// of the engine that fit an admin answer (a malformed key) come from
// idempotency.ProblemFor instead, so they keep their one definition.
var problems = []problemRow{
	{err: errOff, Problem: idempotency.Problem{Status: http.StatusNotFound, Type: "admin-api-off", Title: "The admin API is off",
		Detail: "Configure a bearer token (admin.token_file, --admin-token-file or GOPOTENCY_ADMIN_TOKEN) to turn it on."}},
	{err: errNoCredentials, Problem: idempotency.Problem{Status: http.StatusUnauthorized, Type: "admin-unauthorized", Title: "Bearer token required",
		Detail: "Send Authorization: Bearer <token> with a token from the configured admin token file or GOPOTENCY_ADMIN_TOKEN."}},
	{err: errWrongToken, Problem: idempotency.Problem{Status: http.StatusUnauthorized, Type: "admin-unauthorized", Title: "Bearer token required",
		Detail: "The bearer token sent is not accepted."}},
	{err: errTokenFile, Problem: idempotency.Problem{Status: http.StatusServiceUnavailable, Type: "admin-token-unavailable", Title: "The admin token file cannot be read",
		Detail: "Every request is refused until the token file loads again; the server log says why.", RetryAfter: time.Second}},
	{err: errNoRoute, Problem: idempotency.Problem{Status: http.StatusNotFound, Type: "admin-not-found", Title: "No such admin route",
		Detail: "See docs/admin.md for the routes of /admin/v1."}},
	{err: errMethod, Problem: idempotency.Problem{Status: http.StatusMethodNotAllowed, Type: "admin-method-not-allowed", Title: "Method not allowed on this admin route"}, clientDetail: true},
	{err: errBadRequest, Problem: idempotency.Problem{Status: http.StatusBadRequest, Type: "admin-bad-request", Title: "The admin request is not valid"}, clientDetail: true},
	{err: idempotency.ErrNotFound, Problem: idempotency.Problem{Status: http.StatusNotFound, Type: "admin-key-not-found", Title: "No entry for this key",
		Detail: "The store holds nothing under the key these inputs name: it was never used with them, it was released or purged, or its retention ran out. Check inputs.scope: a different scope (another Authorization value, principal or policy) names a different key."}},
	{err: errPurgeLive, Problem: idempotency.Problem{Status: http.StatusConflict, Type: "admin-purge-refused", Title: "The key is held by a request that may still be running",
		Detail: "Its holder renews the lease while it runs and would re-create a purged claim at its next renewal; a retry arriving in between would run the operation a second time. Wait for lease_expires_at, or purge with force=true if you accept that risk."}},
	{err: idempotency.ErrStoreUnavailable, Problem: idempotency.Problem{Status: http.StatusServiceUnavailable, Type: "store-unavailable", Title: "Idempotency store unavailable",
		Detail: storeDown, RetryAfter: time.Second}},
	{err: context.DeadlineExceeded, Problem: idempotency.Problem{Status: http.StatusServiceUnavailable, Type: "store-unavailable", Title: "Idempotency store unavailable",
		Detail: storeDown, RetryAfter: time.Second}},
}

// problemFor maps err through the table; what it does not know is a 500
// without internal detail.
func problemFor(err error) *problem {
	if errors.Is(err, idempotency.ErrKeyMalformed) {
		return &problem{Problem: *idempotency.ProblemFor(err)}
	}
	p := &problem{Problem: idempotency.Problem{Status: http.StatusInternalServerError, Type: "admin-internal", Title: "Internal error in the admin API",
		Detail: "The server log has the details."}}
	for _, row := range problems {
		if errors.Is(err, row.err) {
			p.Problem = row.Problem
			if row.clientDetail {
				p.Detail = err.Error()
			}
			break
		}
	}
	p.Type = idempotency.ProblemTypeBase + p.Type
	return p
}

func (p *problem) write(w http.ResponseWriter) {
	for name, vals := range p.headers {
		w.Header()[name] = vals
	}
	for _, h := range p.Headers() {
		w.Header().Set(h.Name, h.Value)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(p)
}
