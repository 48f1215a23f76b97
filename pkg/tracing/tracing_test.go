package tracing_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gopotency/gopotency/pkg/extproc"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/stdhttp"
	"github.com/gopotency/gopotency/pkg/store/memstore"
	"github.com/gopotency/gopotency/pkg/tracing"
)

func recorder() (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	rec := tracetest.NewSpanRecorder()
	return rec, sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
}

func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// failing is a store whose calls fail with a text that quotes a secret.
type failing struct{ idempotency.Store }

func (failing) Complete(context.Context, idempotency.Claim, *idempotency.Record) error {
	return fmt.Errorf("%w: redis said no to key secret-key-123", idempotency.ErrStoreUnavailable)
}

// TestStoreSpans: each call is a child of the span in its context, an
// acquire says what it found, and a failure's class is kept but never
// its text, which may quote a key.
func TestStoreSpans(t *testing.T) {
	rec, tp := recorder()
	mem := memstore.New(memstore.Options{})
	defer mem.Close()
	s := tracing.Store(failing{mem}, tp)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "stream")
	c := idempotency.Claim{Key: "storage-key-xyz", Token: "t", Fingerprint: "f", Lease: 1e9, Retention: 1e9}
	r, err := s.Acquire(ctx, c, idempotency.AcquireOptions{})
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, r.State)
	require.Error(t, s.Complete(ctx, c, &idempotency.Record{Status: 201}))
	require.NoError(t, s.Release(ctx, c))
	parent.End()

	spans := rec.Ended()
	require.Len(t, spans, 4)
	for _, sp := range spans[:3] {
		assert.Equal(t, parent.SpanContext().SpanID(), sp.Parent().SpanID(), sp.Name())
		assert.Equal(t, trace.SpanKindClient, sp.SpanKind())
		for _, kv := range sp.Attributes() {
			assert.NotContains(t, kv.Value.Emit(), "storage-key-xyz", "the storage key is no attribute")
		}
	}
	assert.Equal(t, map[string]string{"gopotency.store.operation": "acquire", "gopotency.store.result": "acquired"}, attrs(spans[0]))
	assert.Equal(t, "gopotency.store complete", spans[1].Name())
	assert.Equal(t, codes.Error, spans[1].Status().Code)
	assert.Equal(t, "store_unavailable", spans[1].Status().Description)
	assert.Empty(t, spans[1].Events(), "no error event with the error's text")
	assert.Equal(t, codes.Unset, spans[2].Status().Code)
}

// TestDecided puts the decision on the stream's span.
func TestDecided(t *testing.T) {
	rec, tp := recorder()
	ctx, sp := tp.Tracer("test").Start(context.Background(), "stream")
	tracing.Decided(ctx, extproc.Decision{Policy: "payments", Outcome: "reject", Problem: "key-reused"})
	sp.End()
	tracing.Decided(context.Background(), extproc.Decision{Outcome: "pass"}) // no span: nothing to do
	assert.Equal(t, map[string]string{"gopotency.policy": "payments", "gopotency.outcome": "reject", "gopotency.problem.type": "key-reused"}, attrs(rec.Ended()[0]))
}

// TestMiddlewareJoinsTheCallersTrace: the library's request span is the
// child of the caller's span (W3C traceparent), or of a span already in
// the request's context; the store calls are its children; a replay is
// marked; nothing carries the key.
func TestMiddlewareJoinsTheCallersTrace(t *testing.T) {
	rec, tp := recorder()
	mem := memstore.New(memstore.Options{})
	defer mem.Close()
	mw, err := stdhttp.New(tracing.Store(mem, tp))
	require.NoError(t, err)
	runs := 0
	h := tracing.Middleware(tp, propagation.TraceContext{})(mw(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		runs++
		w.WriteHeader(http.StatusCreated)
	})))
	const caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	send := func(ctx context.Context) *httptest.ResponseRecorder {
		r := httptest.NewRequestWithContext(ctx, "POST", "/orders", strings.NewReader(`{}`))
		r.Header.Set("Idempotency-Key", "the-key-42")
		r.Header.Set("Traceparent", caller)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	require.Equal(t, 201, send(context.Background()).Code)
	require.Equal(t, "true", send(context.Background()).Header().Get("Idempotent-Replayed"))
	require.Equal(t, 1, runs)

	var requests []sdktrace.ReadOnlySpan
	byParent := map[trace.SpanID][]string{}
	for _, sp := range rec.Ended() {
		if strings.HasPrefix(sp.Name(), "gopotency POST") {
			requests = append(requests, sp)
		} else {
			byParent[sp.Parent().SpanID()] = append(byParent[sp.Parent().SpanID()], sp.Name())
		}
		for _, kv := range sp.Attributes() {
			assert.NotContains(t, kv.Value.Emit(), "the-key-42")
		}
	}
	require.Len(t, requests, 2)
	for i, sp := range requests {
		assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", sp.SpanContext().TraceID().String())
		assert.Equal(t, "00f067aa0ba902b7", sp.Parent().SpanID().String())
		assert.True(t, sp.Parent().IsRemote())
		assert.Equal(t, trace.SpanKindServer, sp.SpanKind())
		assert.Contains(t, byParent[sp.SpanContext().SpanID()], "gopotency.store acquire", "request %d", i)
	}
	assert.Equal(t, "201", attrs(requests[0])["http.response.status_code"])
	assert.NotContains(t, attrs(requests[0]), "gopotency.replayed")
	assert.Equal(t, "true", attrs(requests[1])["gopotency.replayed"])

	// Behind otelhttp (a span in the context already): a child of it.
	ctx, outer := tp.Tracer("test").Start(context.Background(), "outer")
	send(ctx)
	outer.End()
	last := rec.Ended()
	var inner sdktrace.ReadOnlySpan
	for _, sp := range last {
		if strings.HasPrefix(sp.Name(), "gopotency POST") {
			inner = sp
		}
	}
	assert.Equal(t, outer.SpanContext().SpanID(), inner.Parent().SpanID())
	assert.Equal(t, trace.SpanKindInternal, inner.SpanKind())
}

func TestNewRefusesAnUnknownProtocol(t *testing.T) {
	_, err := tracing.New(context.Background(), tracing.Options{URL: "http://c:4318", Protocol: "http/json"})
	require.Error(t, err)
	require.Contains(t, err.Error(), "http/json")
}

// TestNewExportsOverHTTP: with http/protobuf, spans are POSTed to the URL
// as given (the configuration has added /v1/traces), and Shutdown sends
// what is still batched.
func TestNewExportsOverHTTP(t *testing.T) {
	got := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Method + " " + r.URL.Path + " " + r.Header.Get("Content-Type")
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	tr, err := tracing.New(context.Background(), tracing.Options{URL: srv.URL + "/v1/traces", Protocol: "http/protobuf", ServiceVersion: "test"})
	require.NoError(t, err)
	_, sp := tr.Provider.Tracer("test").Start(context.Background(), "x")
	sp.End()
	require.NoError(t, tr.Shutdown(context.Background()))
	require.Equal(t, "POST /v1/traces application/x-protobuf", <-got)
}
