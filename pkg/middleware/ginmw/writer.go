package ginmw

import (
	"bufio"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/gopotency/gopotency/pkg/middleware/guard"
)

// writer records what a handler sends through Gin's ResponseWriter. Gin
// sends the head lazily (WriteHeader only notes the status), so the head
// is recorded just before the first call that really sends it.
type writer struct {
	gin.ResponseWriter
	rec *guard.Recorder
}

var _ gin.ResponseWriter = (*writer)(nil)

func (w *writer) head() {
	if !w.ResponseWriter.Written() && !w.rec.Sent() {
		w.rec.Head(w.ResponseWriter.Status(), w.ResponseWriter.Header())
	}
}

func (w *writer) WriteHeaderNow() {
	w.head()
	w.ResponseWriter.WriteHeaderNow()
}

func (w *writer) Write(p []byte) (int, error) {
	w.head()
	w.rec.Body(p)
	return w.ResponseWriter.Write(p)
}

func (w *writer) WriteString(s string) (int, error) {
	w.head()
	w.rec.Body([]byte(s))
	return w.ResponseWriter.WriteString(s)
}

func (w *writer) Flush() {
	w.head()
	w.ResponseWriter.Flush()
}

func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, b, err := w.ResponseWriter.Hijack()
	if err == nil {
		w.rec.SetHijacked()
	}
	return c, b, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish sends the pending head if the handler returned without sending
// one, so what is recorded is exactly what the client gets.
func (w *writer) finish() {
	if !w.ResponseWriter.Written() && !w.rec.Hijacked() {
		w.rec.SetImplicit()
		w.WriteHeaderNow()
	}
}
