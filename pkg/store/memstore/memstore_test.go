package memstore_test

import (
	"testing"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
	"github.com/gopotency/gopotency/pkg/store/storetest"
)

func newStore(tb testing.TB) idempotency.Store {
	s := memstore.New(memstore.Options{})
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// The suite runs in synctest bubbles: memstore's clock is the process's,
// so its lease windows are exact and load cannot make them flaky.
func TestConformance(t *testing.T) {
	storetest.RunSynctest(t, func(t *testing.T) idempotency.Store { return newStore(t) })
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) idempotency.Store { return newStore(b) })
}
