package idempotent_test

import (
	"context"
	"testing"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/idempotent"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// BenchmarkOverhead: a small function called bare against the same
// function through Func.Do over the memory store (JSON codec), miss and
// replay, in one run.
func BenchmarkOverhead(b *testing.B) {
	store := memstore.New(memstore.Options{})
	b.Cleanup(func() { _ = store.Close() })
	runner, err := idempotent.NewRunner(store, "bench")
	if err != nil {
		b.Fatal(err)
	}
	fn := func(_ context.Context, req ChargeRequest) (Receipt, error) {
		return Receipt{ChargeID: "ch_" + req.OrderID, Cents: req.Cents}, nil
	}
	charge := idempotent.New(runner, fn)
	ctx := context.Background()
	req := ChargeRequest{OrderID: "order-42", Cents: 1250}
	behaviortest.BenchOverheadFunc(b,
		func(string) bool { r, err := fn(ctx, req); return err == nil && r.Cents == 1250 },
		func(key string) bool { r, err := charge.Do(ctx, key, req); return err == nil && r.Cents == 1250 })
}
