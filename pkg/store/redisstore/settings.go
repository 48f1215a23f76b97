package redisstore

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// CheckSettings reads the server's memory settings (INFO memory, on every
// master of a Cluster) and returns a warning for each that can lose claims.
// Every key the store writes carries a TTL, so with maxmemory set any
// policy but noeviction (volatile-* included) may evict a claim, and an
// evicted claim lets a duplicate run. With noeviction a full server answers
// OOM errors, which the store reports as unavailable (503): fail closed.
// A server that denies INFO yields no warnings.
func (s *Store) CheckSettings(ctx context.Context) []string {
	var mu sync.Mutex
	var warnings []string
	check := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			return nil
		}
		fields := infoFields(info)
		if policy := fields["maxmemory_policy"]; fields["maxmemory"] != "0" && fields["maxmemory"] != "" && policy != "noeviction" {
			mu.Lock()
			defer mu.Unlock()
			warnings = append(warnings, fmt.Sprintf("%s has maxmemory %s with maxmemory-policy %s: a full server may evict in-flight claims and let duplicates run; set maxmemory-policy noeviction (a full server then answers 503s) or give GoPotency a Redis of its own without maxmemory",
				c.Options().Addr, fields["maxmemory"], policy))
		}
		return nil
	}
	switch c := s.client.(type) {
	case *redis.ClusterClient:
		_ = c.ForEachMaster(ctx, check)
	case *redis.Client:
		_ = check(ctx, c)
	}
	return warnings
}

// infoFields splits an INFO reply into its "name:value" fields.
func infoFields(info string) map[string]string {
	fields := map[string]string{}
	for line := range strings.Lines(info) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	return fields
}
