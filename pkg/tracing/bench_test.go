package tracing_test

import (
	"context"
	"strconv"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
	"github.com/gopotency/gopotency/pkg/tracing"
)

// BenchmarkStoreCall: what the span around a store call costs, against
// the bare store in the same run (the memory store, so the span is most
// of the difference): an acquire and a complete per iteration, in a
// sampled trace (spans made and batched) and in an unsampled one (the
// caller's trace was not sampled: no span is recorded).
func BenchmarkStoreCall(b *testing.B) {
	for _, tc := range []struct {
		name    string
		wrap    func(idempotency.Store) idempotency.Store
		sampled bool
	}{
		{"bare", func(s idempotency.Store) idempotency.Store { return s }, true},
		{"traced-sampled", nil, true},
		{"traced-unsampled", nil, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			mem := memstore.New(memstore.Options{})
			defer mem.Close()
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}))
			defer tp.Shutdown(context.Background())
			s := idempotency.Store(mem)
			if tc.wrap != nil {
				s = tc.wrap(mem)
			} else {
				s = tracing.Store(mem, tp)
			}
			ctx := context.Background()
			if !tc.sampled {
				ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
					TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Remote: true}))
			}
			rec := &idempotency.Record{Status: 201}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				c := idempotency.Claim{Key: "k" + strconv.Itoa(i), Token: "t", Lease: 1e9, Retention: 1e9}
				if _, err := s.Acquire(ctx, c, idempotency.AcquireOptions{}); err != nil {
					b.Fatal(err)
				}
				if err := s.Complete(ctx, c, rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// discard is an exporter that drops spans: the cost measured is the
// SDK's, not a network's.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }
