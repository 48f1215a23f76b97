package redisstore

import (
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
	"github.com/gopotency/gopotency/pkg/store/storetest"
)

func BenchmarkRedis(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) idempotency.Store { return newStore(b, redisClient(b)) })
}

func BenchmarkRedisCluster(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) idempotency.Store { return newStore(b, clusterClient(b)) })
}

// BenchmarkRedisReplica is the cost of replicas=1 (each claim confirmed on
// a replica with WAIT) beside replicas=0, against the same master and
// replica in the same run.
func BenchmarkRedisReplica(b *testing.B) {
	master, replica := testenv.StartRedis(b), testenv.StartRedis(b)
	replicaOf(b, replica, master)
	c := redis.NewClient(&redis.Options{Addr: master.Addr, ContextTimeoutEnabled: true})
	b.Cleanup(func() { _ = c.Close() })
	for _, n := range []int{0, 1} {
		b.Run("replicas="+strconv.Itoa(n), func(b *testing.B) {
			storetest.Bench(b, func(b *testing.B) idempotency.Store {
				s, err := New(Options{Client: c, Prefix: testPrefix(), Replicas: n})
				if err != nil {
					b.Fatal(err)
				}
				return s
			})
		})
	}
}
