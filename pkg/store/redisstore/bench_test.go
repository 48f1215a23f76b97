package redisstore

import (
	"testing"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/storetest"
)

func BenchmarkRedis(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) idempotency.Store { return newStore(b, redisClient(b)) })
}

func BenchmarkRedisCluster(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) idempotency.Store { return newStore(b, clusterClient(b)) })
}
