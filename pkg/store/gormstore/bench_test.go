package gormstore_test

import (
	"strconv"
	"testing"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/gormstore"
	"github.com/gopotency/gopotency/pkg/store/storetest"
)

// BenchmarkStore is sqlstore's benchmark through GORM (see docs/sql.md):
//
//	go test -run '^$' -bench 'Store/.*/conns=1/(Miss|Hit)$' ./pkg/store/gormstore/
//	go test -run '^$' -bench 'Store/.*/conns=16/.*Parallel$' ./pkg/store/gormstore/
func BenchmarkStore(b *testing.B) {
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			dsn := tg.dsn(b)
			for _, conns := range []int{1, storetest.Workers} {
				b.Run("conns="+strconv.Itoa(conns), func(b *testing.B) {
					storetest.Bench(b, func(b *testing.B) idempotency.Store {
						db := openDB(b, tg, dsn, conns)
						return newStore(b, db, gormstore.Options{Table: newTable(b, db), AutoMigrate: true})
					})
				})
			}
		})
	}
}
