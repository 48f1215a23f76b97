package storetest

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// BenchFactory returns the store a benchmark runs against.
type BenchFactory func(b *testing.B) idempotency.Store

// Workers is the number of concurrent goroutines of the parallel
// benchmarks.
const Workers = 16

// Bench runs the store benchmarks:
//
//   - Miss: Acquire + Complete of a new key (a first request), serially.
//   - Hit: Acquire of a completed key (a replay), serially.
//   - MissParallel / HitParallel: the same from Workers goroutines.
//
// Each reports claims/s (requests settled per second) beside ns/op.
func Bench(b *testing.B, newStore BenchFactory) {
	rec := sampleRecord()
	b.Run("Miss", func(b *testing.B) { benchMiss(b, newStore(b), rec, false) })
	b.Run("Hit", func(b *testing.B) { benchHit(b, newStore(b), rec, false) })
	b.Run("MissParallel", func(b *testing.B) { benchMiss(b, newStore(b), rec, true) })
	b.Run("HitParallel", func(b *testing.B) { benchHit(b, newStore(b), rec, true) })
}

func run(b *testing.B, parallel bool, op func(ctx context.Context)) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	if parallel {
		b.SetParallelism((Workers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				op(ctx)
			}
		})
	} else {
		for range b.N {
			op(ctx)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "claims/s")
}

func benchMiss(b *testing.B, s idempotency.Store, rec *idempotency.Record, parallel bool) {
	run(b, parallel, func(ctx context.Context) {
		c := NewClaim("fp", time.Minute, time.Minute)
		res, err := s.Acquire(ctx, c, idempotency.AcquireOptions{})
		if err != nil || res.State != idempotency.Acquired {
			b.Fatalf("acquire: %v %v", res.State, err)
		}
		if err := s.Complete(ctx, c, rec); err != nil {
			b.Fatalf("complete: %v", err)
		}
	})
}

func benchHit(b *testing.B, s idempotency.Store, rec *idempotency.Record, parallel bool) {
	ctx := context.Background()
	c := NewClaim("fp", time.Minute, time.Hour)
	if _, err := s.Acquire(ctx, c, idempotency.AcquireOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := s.Complete(ctx, c, rec); err != nil {
		b.Fatal(err)
	}
	run(b, parallel, func(ctx context.Context) {
		retry := c
		retry.Token = idempotency.NewToken()
		res, err := s.Acquire(ctx, retry, idempotency.AcquireOptions{})
		if err != nil || res.State != idempotency.Completed {
			b.Fatalf("replay: %v %v", res.State, err)
		}
	})
}
