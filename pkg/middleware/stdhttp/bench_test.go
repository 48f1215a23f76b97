package stdhttp_test

import (
	"testing"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/middleware/stdhttp"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// BenchmarkOverhead: the middleware over the memory store against the bare
// handler, miss and replay, in one run.
func BenchmarkOverhead(b *testing.B) {
	store := memstore.New(memstore.Options{})
	b.Cleanup(func() { _ = store.Close() })
	mw, err := stdhttp.New(store)
	if err != nil {
		b.Fatal(err)
	}
	behaviortest.BenchOverhead(b, behaviortest.BenchHandler, mw(behaviortest.BenchHandler))
}
