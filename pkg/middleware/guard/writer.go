package guard

import (
	"bufio"
	"net"
	"net/http"
)

// Writer is an http.ResponseWriter that passes everything through to the
// wrapped writer and records it in a Recorder. Flush, Hijack and the
// deadlines of http.ResponseController keep working through Unwrap.
type Writer struct {
	rw  http.ResponseWriter
	rec *Recorder
}

// NewWriter wraps rw, recording into rec.
func NewWriter(rw http.ResponseWriter, rec *Recorder) *Writer { return &Writer{rw: rw, rec: rec} }

// Header returns the wrapped writer's header map.
func (w *Writer) Header() http.Header { return w.rw.Header() }

// WriteHeader records the final status and the fields sent with it.
// Informational answers (1xx other than 101) go out unrecorded, as they do
// not end the head.
func (w *Writer) WriteHeader(code int) {
	if !w.rec.Sent() && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.rec.Head(code, w.rw.Header())
	}
	w.rw.WriteHeader(code)
}

// Write records p and passes it on. The whole of p is recorded even when the
// client is gone: the handler produced it, so a retry should replay it.
func (w *Writer) Write(p []byte) (int, error) {
	if !w.rec.Sent() {
		w.rec.Head(http.StatusOK, w.rw.Header())
	}
	w.rec.Body(p)
	return w.rw.Write(p)
}

// FlushError flushes the wrapped writer (http.ResponseController prefers it
// to Flush, so errors reach the handler).
func (w *Writer) FlushError() error {
	if !w.rec.Sent() {
		w.rec.Head(http.StatusOK, w.rw.Header())
	}
	return http.NewResponseController(w.rw).Flush()
}

// Flush implements http.Flusher.
func (w *Writer) Flush() { _ = w.FlushError() }

// Hijack hands the connection to the handler; the response then cannot be
// recorded.
func (w *Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, b, err := http.NewResponseController(w.rw).Hijack()
	if err == nil {
		w.rec.SetHijacked()
	}
	return c, b, err
}

// Unwrap lets http.ResponseController reach the wrapped writer.
func (w *Writer) Unwrap() http.ResponseWriter { return w.rw }

// Finish sends the default 200 head if the handler returned without
// answering, so what is recorded is exactly what the client gets.
func (w *Writer) Finish() {
	if !w.rec.Sent() && !w.rec.Hijacked() {
		w.rec.SetImplicit()
		w.WriteHeader(http.StatusOK)
	}
}
