package guard

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Recorder accumulates what a handler sent: the status and header fields at
// the moment the head went out, and the body up to a cap. It needs no
// http.ResponseWriter: net/http front ends feed it through Writer, others
// (fasthttp) call Head and Body with what their response holds. It is not
// safe for concurrent use; a handler writes its response from one
// goroutine.
type Recorder struct {
	max      int64
	outer    http.Header
	status   int
	headers  []idempotency.Header
	body     []byte
	sent     bool
	tooLarge bool
	implicit bool
	hijacked bool
}

// NewRecorder returns a recorder keeping at most maxBody body bytes. before
// is the response header map as the handler is about to run: fields outer
// middleware already set there (CORS, request ids) belong to every answer,
// not to this one, so they are recorded only if the handler changes them,
// and a replay gets the outer middleware's fresh values.
func NewRecorder(maxBody int64, before http.Header) *Recorder {
	r := &Recorder{max: maxBody}
	if len(before) > 0 {
		// Set replaces a field's slice and Add appends past its old length,
		// so a shallow copy keeps the old values.
		r.outer = maps.Clone(before)
	}
	return r
}

// Head records the status and a snapshot of h, the fields sent with it.
// Only the first call counts: later changes to the header map were never
// sent, so they are not recorded either.
func (r *Recorder) Head(status int, h http.Header) {
	if r.sent {
		return
	}
	r.sent, r.status = true, status
	names := make([]string, 0, len(h))
	n := 0
	for name, vs := range h {
		// Trailers announced with the "Trailer:" prefix are not head fields.
		if !strings.HasPrefix(name, http.TrailerPrefix) && !r.fromOuter(name, vs) {
			names = append(names, name)
			n += len(vs)
		}
	}
	// Distinct names have no order on the wire (net/http sorts them); sorting
	// keeps records deterministic. Repeated values keep their order.
	slices.Sort(names)
	r.headers = make([]idempotency.Header, 0, n)
	for _, name := range names {
		for _, v := range h[name] {
			r.headers = append(r.headers, idempotency.Header{Name: name, Value: v})
		}
	}
	if cl, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil && cl > 0 {
		if cl > r.max {
			r.tooLarge = true // announced too large: do not accumulate at all
		} else {
			r.body = make([]byte, 0, cl)
		}
	}
}

// fromOuter reports whether a field is as outer middleware left it.
func (r *Recorder) fromOuter(name string, vs []string) bool {
	old, ok := r.outer[name]
	return ok && slices.Equal(old, vs)
}

// Body records p, or marks the response too large once the cap is passed
// (the client still gets every byte; only the stored copy stops).
func (r *Recorder) Body(p []byte) {
	if r.tooLarge || len(p) == 0 {
		return
	}
	if int64(len(r.body))+int64(len(p)) > r.max {
		r.tooLarge, r.body = true, nil
		return
	}
	r.body = append(r.body, p...)
}

// Sent reports whether the head was recorded.
func (r *Recorder) Sent() bool { return r.sent }

// SetImplicit notes that the handler returned without sending anything, so
// the head about to be recorded is the framework's default answer.
func (r *Recorder) SetImplicit() { r.implicit = true }

// Implicit reports whether the handler returned without answering.
func (r *Recorder) Implicit() bool { return r.implicit }

// SetHijacked notes that the handler took over the connection: whatever it
// sent cannot be known.
func (r *Recorder) SetHijacked() { r.hijacked = true }

// Hijacked reports whether the handler took over the connection.
func (r *Recorder) Hijacked() bool { return r.hijacked }

// Response returns what was recorded, for Lease.Complete.
func (r *Recorder) Response() *idempotency.Record {
	status := r.status
	if !r.sent {
		status = http.StatusOK
	}
	rec := &idempotency.Record{Status: status, Headers: r.headers, Body: r.body}
	if r.tooLarge {
		rec.Mark = idempotency.MarkTooLarge
	}
	return rec
}
