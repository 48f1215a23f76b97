package sqlstore_test

import (
	"strconv"
	"testing"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/sqlstore"
	"github.com/gopotency/gopotency/pkg/store/storetest"
)

// BenchmarkStore runs the storetest benchmarks on each dialect with a pool
// of one connection and of storetest.Workers connections. The figures in
// docs/sql.md take the serial cases from conns=1 and the parallel ones
// from conns=16:
//
//	go test -run '^$' -bench 'Store/.*/conns=1/(Miss|Hit)$' ./pkg/store/sqlstore/
//	go test -run '^$' -bench 'Store/.*/conns=16/.*Parallel$' ./pkg/store/sqlstore/
func BenchmarkStore(b *testing.B) {
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			url := tg.url(b) // one SQLite file per dialect run, tables per case
			for _, conns := range []int{1, storetest.Workers} {
				b.Run("conns="+strconv.Itoa(conns), func(b *testing.B) {
					storetest.Bench(b, func(b *testing.B) idempotency.Store {
						return open(b, url, sqlstore.Options{Table: newTable(b, url), MaxOpenConns: conns})
					})
				})
			}
		})
	}
}
