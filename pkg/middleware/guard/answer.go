package guard

import (
	"net/http"
	"strconv"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// HTTPResponder is the Responder of net/http-based front ends: it answers
// through a ResponseWriter.
type HTTPResponder struct {
	http.ResponseWriter
	// OnReject, when set, answers refusals instead of WriteProblem.
	OnReject func(p *idempotency.Problem, err error)
}

// Replay writes rec with WriteRecord.
func (h HTTPResponder) Replay(rec *idempotency.Record) { WriteRecord(h.ResponseWriter, rec) }

// Reject calls OnReject, or writes p with WriteProblem.
func (h HTTPResponder) Reject(p *idempotency.Problem, err error) {
	if h.OnReject != nil {
		h.OnReject(p, err)
		return
	}
	WriteProblem(h.ResponseWriter, p)
}

// WriteRecord replays a stored response: its status, its header fields
// (repeated fields kept apart and in order), Idempotent-Replayed: true, and
// its body. Fields of the same names already set by outer middleware are
// replaced, so the replay reads as the original did.
func WriteRecord(w http.ResponseWriter, rec *idempotency.Record) {
	h := w.Header()
	for _, f := range rec.Headers {
		delete(h, f.Name) // names are canonical in records
	}
	for _, f := range rec.Headers {
		h[f.Name] = append(h[f.Name], f.Value)
	}
	h.Set(idempotency.ReplayedHeader, "true")
	writeBody(w, rec.Status, rec.Body)
}

// WriteProblem sends p as application/problem+json (RFC 9457) with its
// Retry-After; it is the default answer to refusals.
func WriteProblem(w http.ResponseWriter, p *idempotency.Problem) {
	h := w.Header()
	for _, f := range p.Headers() {
		h.Set(f.Name, f.Value)
	}
	writeBody(w, p.Status, p.Body())
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	if bodyAllowed(status) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	if len(body) > 0 && bodyAllowed(status) {
		_, _ = w.Write(body) // a client gone mid-replay can retry
	}
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
