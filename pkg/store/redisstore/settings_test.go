package redisstore

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// Every key the store writes has a TTL, so any eviction policy but
// noeviction can drop a running request's claim: the start-up check says so.
func TestCheckSettingsWarnsOnEviction(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		args []string
		warn bool
	}{
		{nil, false}, // no maxmemory: nothing is ever evicted
		{[]string{"--maxmemory", "64mb", "--maxmemory-policy", "noeviction"}, false},
		{[]string{"--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"}, true},
		{[]string{"--maxmemory", "64mb", "--maxmemory-policy", "volatile-ttl"}, true},
	} {
		srv := testenv.StartRedis(t, c.args...)
		s, err := NewFromURL(ctx, srv.URL(), Options{})
		require.NoError(t, err)
		w := s.CheckSettings(ctx)
		if c.warn {
			require.Len(t, w, 1, "%v", c.args)
			assert.Contains(t, w[0], "noeviction")
		} else {
			assert.Empty(t, w, "%v", c.args)
		}
		_ = s.Close()
	}
}

// A full server under noeviction answers OOM: the store reports it as
// unavailable (503), never as a key that can run.
func TestFullServerFailsClosed(t *testing.T) {
	srv := testenv.StartRedis(t, "--maxmemory", "3mb", "--maxmemory-policy", "noeviction")
	ctx := context.Background()
	s, err := NewFromURL(ctx, srv.URL(), Options{})
	require.NoError(t, err)
	defer s.Close()
	rec := &idempotency.Record{Status: 200, Body: []byte(strings.Repeat("x", 256<<10))}
	var full error
	for i := 0; i < 100 && full == nil; i++ {
		c := idempotency.Claim{Key: "k" + itoa(i), Token: idempotency.NewToken(), Fingerprint: "fp", Lease: time.Minute, Retention: time.Hour}
		if _, err := s.Acquire(ctx, c, idempotency.AcquireOptions{}); err != nil {
			full = err
			break
		}
		full = s.Complete(ctx, c, rec)
	}
	info, _ := s.client.Info(ctx, "memory").Result()
	require.Error(t, full, "the server filled up: %s", info)
	require.True(t, errors.Is(full, idempotency.ErrStoreUnavailable), "%v", full)
	assert.Contains(t, full.Error(), "OOM")
	// What the full server refused changed nothing: no half-written record.
	keys, err := s.client.Keys(ctx, s.prefix+":*").Result()
	require.NoError(t, err)
	for _, k := range keys {
		fields, err := s.client.HKeys(ctx, k).Result()
		require.NoError(t, err)
		if slices.Contains(fields, "r") {
			assert.NotContains(t, fields, "l", "%s: a record never keeps its claim's lease", k)
		} else {
			assert.Contains(t, fields, "t", "%s: a claim keeps its token", k)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
