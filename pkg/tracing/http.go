package tracing

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Middleware gives each request a span in the caller's trace, as otelhttp
// does: a span already in the request's context (an otelhttp handler
// outside) is its parent, else the span context in the request's headers
// (W3C traceparent). Put it outside the idempotency middleware and give
// that middleware a store wrapped by Store: the store calls are then
// this span's children. A replay is marked gopotency.replayed.
func Middleware(tp trace.TracerProvider, prop propagation.TextMapPropagator) func(http.Handler) http.Handler {
	t := tp.Tracer(ScopeName)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			kind := trace.SpanKindInternal
			if !trace.SpanContextFromContext(ctx).IsValid() {
				ctx = prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
				kind = trace.SpanKindServer
			}
			ctx, span := t.Start(ctx, "gopotency "+r.Method, trace.WithSpanKind(kind),
				trace.WithAttributes(attribute.String("http.request.method", r.Method)))
			defer span.End()
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r.WithContext(ctx))
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			span.SetAttributes(attribute.Int("http.response.status_code", status))
			if sw.replayed {
				span.SetAttributes(AttrReplayed.Bool(true))
			}
			if status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
		})
	}
}

// statusWriter notes the status and whether the answer was a replay.
type statusWriter struct {
	http.ResponseWriter
	status   int
	replayed bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		w.replayed = w.Header().Get("Idempotent-Replayed") == "true"
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush, Hijack and deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
