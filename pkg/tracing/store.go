package tracing

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Store wraps s so each call is a span, the child of the span in its
// context (the ext_proc stream's, the library request's). Wrap the store
// the engine uses; the admin API needs no spans.
func Store(s idempotency.Store, tp trace.TracerProvider) idempotency.Store {
	return &store{s: s, t: tp.Tracer(ScopeName)}
}

type store struct {
	s idempotency.Store
	t trace.Tracer
}

// clientKind is allocated once: a store call under an unsampled request
// costs as little as the SDK allows.
var clientKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

// start opens a store call's span (name is "gopotency.store "+op). The
// storage key is a hash of the caller's scope and key: it is never an
// attribute.
func (s *store) start(ctx context.Context, name, op string) (context.Context, trace.Span) {
	ctx, span := s.t.Start(ctx, name, clientKind...)
	if span.IsRecording() {
		span.SetAttributes(AttrStoreOp.String(op))
	}
	return ctx, span
}

// end closes a span with err's class: store errors may quote the storage
// key or a server's reply, so their text stays out of the trace.
func end(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, errorClass(err))
	}
	span.End()
}

func errorClass(err error) string {
	for _, c := range []struct {
		err  error
		name string
	}{
		{context.DeadlineExceeded, "timeout"}, {context.Canceled, "canceled"},
		{idempotency.ErrStoreUnavailable, "store_unavailable"}, {idempotency.ErrLeaseLost, "lease_lost"},
		{idempotency.ErrCorruptRecord, "corrupt_record"}, {idempotency.ErrNotFound, "not_found"},
		{idempotency.ErrInvalidClaim, "invalid_claim"},
	} {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return "error"
}

func (s *store) Acquire(ctx context.Context, c idempotency.Claim, o idempotency.AcquireOptions) (idempotency.AcquireResult, error) {
	ctx, span := s.start(ctx, "gopotency.store acquire", "acquire")
	r, err := s.s.Acquire(ctx, c, o)
	if err == nil && span.IsRecording() {
		span.SetAttributes(AttrStoreResult.String(r.State.String()))
	}
	end(span, err)
	return r, err
}

func (s *store) Complete(ctx context.Context, c idempotency.Claim, rec *idempotency.Record) error {
	ctx, span := s.start(ctx, "gopotency.store complete", "complete")
	err := s.s.Complete(ctx, c, rec)
	end(span, err)
	return err
}

func (s *store) Release(ctx context.Context, c idempotency.Claim) error {
	ctx, span := s.start(ctx, "gopotency.store release", "release")
	err := s.s.Release(ctx, c)
	end(span, err)
	return err
}

func (s *store) Extend(ctx context.Context, c idempotency.Claim) error {
	ctx, span := s.start(ctx, "gopotency.store extend", "extend")
	err := s.s.Extend(ctx, c)
	end(span, err)
	return err
}

func (s *store) Get(ctx context.Context, key string) (*idempotency.Entry, error) {
	ctx, span := s.start(ctx, "gopotency.store get", "get")
	e, err := s.s.Get(ctx, key)
	end(span, err)
	return e, err
}

func (s *store) Delete(ctx context.Context, key string, seen *idempotency.Entry) error {
	ctx, span := s.start(ctx, "gopotency.store delete", "delete")
	err := s.s.Delete(ctx, key, seen)
	end(span, err)
	return err
}
