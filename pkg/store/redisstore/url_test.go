package redisstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

func TestParseURLStandalone(t *testing.T) {
	opts, prefix, err := parseURL("redis://u:s3cret@127.0.0.1:6380/2?dial_timeout=2s&prefix=app1")
	require.NoError(t, err)
	o := opts.(*redis.Options)
	assert.Equal(t, "127.0.0.1:6380", o.Addr)
	assert.Equal(t, "u", o.Username)
	assert.Equal(t, "s3cret", o.Password)
	assert.Equal(t, 2, o.DB)
	assert.Equal(t, 2*time.Second, o.DialTimeout)
	assert.True(t, o.ContextTimeoutEnabled, "on by default")
	assert.Nil(t, o.TLSConfig)
	assert.Equal(t, "app1", prefix)

	opts, prefix, err = parseURL("rediss://h.example:6390?context_timeout_enabled=false")
	require.NoError(t, err)
	o = opts.(*redis.Options)
	assert.NotNil(t, o.TLSConfig)
	assert.False(t, o.ContextTimeoutEnabled, "an explicit choice is kept")
	assert.Empty(t, prefix)

	opts, _, err = parseURL("unix:///run/redis.sock?db=3")
	require.NoError(t, err)
	o = opts.(*redis.Options)
	assert.Equal(t, "unix", o.Network)
	assert.Equal(t, "/run/redis.sock", o.Addr)
	assert.Equal(t, 3, o.DB)
}

func TestParseURLCluster(t *testing.T) {
	opts, prefix, err := parseURL("redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[::1]:7002,node4/?password=pw&pool_size=7&prefix=p")
	require.NoError(t, err)
	o := opts.(*redis.ClusterOptions)
	assert.Equal(t, []string{"10.0.0.1:7000", "10.0.0.2:7001", "[::1]:7002", "node4:6379"}, o.Addrs)
	assert.Equal(t, "pw", o.Password)
	assert.Equal(t, 7, o.PoolSize)
	assert.True(t, o.ContextTimeoutEnabled)
	assert.Nil(t, o.TLSConfig)
	assert.Equal(t, "p", prefix)

	opts, _, err = parseURL("rediss+cluster://user:pw@a:1,b:2")
	require.NoError(t, err)
	o = opts.(*redis.ClusterOptions)
	assert.Equal(t, []string{"a:1", "b:2"}, o.Addrs)
	assert.Equal(t, "user", o.Username)
	assert.Equal(t, "pw", o.Password)
	assert.NotNil(t, o.TLSConfig)
}

func TestParseURLSentinel(t *testing.T) {
	opts, _, err := parseURL("redis+sentinel://su:sp@s1:26380,s2/mymaster/4?password=masterpw")
	require.NoError(t, err)
	o := opts.(*redis.FailoverOptions)
	assert.Equal(t, "mymaster", o.MasterName)
	assert.Equal(t, []string{"s1:26380", "s2:26379"}, o.SentinelAddrs)
	assert.Equal(t, "su", o.SentinelUsername)
	assert.Equal(t, "sp", o.SentinelPassword)
	assert.Equal(t, "masterpw", o.Password)
	assert.Equal(t, 4, o.DB)
	assert.True(t, o.ContextTimeoutEnabled)

	opts, _, err = parseURL("rediss+sentinel://s1/m")
	require.NoError(t, err)
	o = opts.(*redis.FailoverOptions)
	assert.Equal(t, "m", o.MasterName)
	assert.Equal(t, 0, o.DB)
	assert.NotNil(t, o.TLSConfig)
}

func TestParseURLErrors(t *testing.T) {
	cases := map[string]string{
		"no scheme":                 "localhost:6379",
		"unknown scheme":            "http://localhost",
		"unknown topology":          "redis+ring://a:1",
		"unix topology":             "unix+cluster:///x",
		"host list without cluster": "redis://a:1,b:2",
		"empty host in list":        "redis+cluster://a:1,,b:2",
		"bad port":                  "redis+cluster://a:99999",
		"non-numeric port":          "redis+cluster://a:http",
		"no hosts":                  "redis+cluster:///",
		"cluster with db":           "redis+cluster://a:1/3",
		"cluster addr option":       "redis+cluster://a:1?addr=b:2",
		"credentials twice":         "redis+cluster://u:p@a:1?password=q",
		"sentinel without master":   "redis+sentinel://s1:26379",
		"sentinel path too deep":    "redis+sentinel://s1/m/1/x",
		"sentinel bad db":           "redis+sentinel://s1/m/x",
		"sentinel master option":    "redis+sentinel://s1/m?master_name=n",
		"unknown option":            "redis://a:1?no_such_option=1",
		"bad option value":          "redis://a:1?dial_timeout=soon",
		"cluster unknown option":    "redis+cluster://a:1?no_such_option=1",
		"bad db":                    "redis://a:1/db",
		"braces in prefix":          "redis://a:1?prefix=x{y}",
		"fragment":                  "redis://a:1#frag",
		"bad escape":                "redis://u:p%zz@a:1",
		"bad context option":        "redis+cluster://a:1?context_timeout_enabled=maybe",
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			opts, _, err := parseURL(raw)
			require.Error(t, err, "parsed as %#v", opts)
			assert.Contains(t, err.Error(), "bad Redis URL")
		})
	}
}

func TestParseURLErrorHidesPassword(t *testing.T) {
	for _, raw := range []string{
		"redis://user:hunter2@a:1/notadb",
		"redis://user:hunter2@a:1?x=%zz",
		"redis+cluster://user:hunter2@a:1,b:bad",
		"redis+sentinel://user:hunter2@s1",
	} {
		_, _, err := parseURL(raw)
		require.Error(t, err, raw)
		assert.NotContains(t, err.Error(), "hunter2")
	}
}

func TestNewFromURL(t *testing.T) {
	ctx := context.Background()
	s, err := NewFromURL(ctx, testenv.Redis(t)+"?restart_grace=0&prefix="+testPrefix(), Options{})
	require.NoError(t, err)
	key := "from-url"
	res, err := s.Acquire(ctx, claim(key), idempotency.AcquireOptions{})
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, res.State)
	require.NoError(t, s.Delete(ctx, key, nil))
	require.NoError(t, s.Close())
	_, err = s.Acquire(ctx, claim(key), idempotency.AcquireOptions{})
	require.Error(t, err, "Close closes the client NewFromURL made")

	_, err = NewFromURL(ctx, "redis://a:1?prefix={x}", Options{})
	require.Error(t, err)
	_, err = NewFromURL(ctx, "redis://a:1?restart_grace=soon", Options{})
	require.ErrorContains(t, err, "restart_grace")
}

func TestNewFromURLCluster(t *testing.T) {
	addrs := testenv.RedisCluster(t)
	ctx := context.Background()
	u := "redis+cluster://" + addrs[0]
	for _, a := range addrs[1:] {
		u += "," + a
	}
	s, err := NewFromURL(ctx, u+"/?restart_grace=0&prefix="+testPrefix(), Options{})
	require.NoError(t, err)
	defer s.Close()
	_, ok := s.client.(*redis.ClusterClient)
	require.True(t, ok, "a cluster URL gives a ClusterClient")
	res, err := s.Acquire(ctx, claim("k"), idempotency.AcquireOptions{})
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, res.State)
}

func TestNewFromURLUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Port 1 on loopback: nothing listens there, the dial is refused.
	_, err := NewFromURL(ctx, "redis://127.0.0.1:1?max_retries=-1", Options{})
	require.Error(t, err)
	assert.True(t, errors.Is(err, idempotency.ErrStoreUnavailable), "%v", err)
}

func TestNewRejects(t *testing.T) {
	_, err := New(Options{})
	assert.Error(t, err, "no client")
	_, err = New(Options{Client: redis.NewClient(&redis.Options{}), Prefix: "a{b"})
	assert.Error(t, err, "braces")
	s, err := New(Options{Client: redis.NewClient(&redis.Options{})})
	require.NoError(t, err)
	assert.Equal(t, "gopotency:{k}", s.Key("k"))
	assert.NoError(t, s.Close(), "a passed-in client is not ours to close")
}

func TestNewFromURLSentinel(t *testing.T) {
	rs := testenv.StartRedisSentinel(t)
	ctx := context.Background()
	// Through Sentinel claims wait for a replica by default; this master
	// has none, so nothing may run.
	s, err := NewFromURL(ctx, "redis+sentinel://"+rs.Sentinel.Addr+"/"+rs.MasterName+"?restart_grace=0&prefix="+testPrefix(), Options{})
	require.NoError(t, err)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = s.Acquire(short, claim("k"), idempotency.AcquireOptions{})
	cancel()
	// Unconfirmed, or the call's deadline passed first on a slow machine:
	// both are the 503 problem, nothing ran.
	require.True(t, errors.Is(err, idempotency.ErrStoreUnavailable) || errors.Is(err, context.DeadlineExceeded), "%v", err)
	_ = s.Close()

	s, err = NewFromURL(ctx, "redis+sentinel://"+rs.Sentinel.Addr+"/"+rs.MasterName+"?restart_grace=0&replicas=0&prefix="+testPrefix(), Options{})
	require.NoError(t, err)
	defer s.Close()
	res, err := s.Acquire(ctx, claim("k"), idempotency.AcquireOptions{})
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, res.State)
	// The claim landed on the master the sentinel names.
	c := redis.NewClient(&redis.Options{Addr: rs.Master.Addr})
	defer c.Close()
	n, err := c.Exists(ctx, s.Key("k")).Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
}

// go-redis runs FailoverOptions.OnConnect on its Sentinel connections too:
// the Sentinel's run id must not read as a replaced master.
func TestSentinelIsNotMistakenForARestart(t *testing.T) {
	rs := testenv.StartRedisSentinel(t)
	ctx := context.Background()
	// replicas=0: a lone master (TestNewFromURLSentinel covers the default).
	s, err := NewFromURL(ctx, "redis+sentinel://"+rs.Sentinel.Addr+"/"+rs.MasterName+"?replicas=0&prefix="+testPrefix(), Options{})
	require.NoError(t, err)
	defer s.Close()
	for i := range 5 {
		res, err := s.Acquire(ctx, claim("sentinel-"+strconv.Itoa(i)), idempotency.AcquireOptions{})
		require.NoError(t, err, "no restart grace: nothing was lost")
		require.Equal(t, idempotency.Acquired, res.State)
	}
	assert.Zero(t, s.watch.losses.Load())
}

// NewFromURL meets every master of a Cluster before it returns, so keys on
// any of them are served at once: the start topology is no failover.
func TestNewFromURLClusterMeetsEveryMaster(t *testing.T) {
	addrs := testenv.RedisCluster(t)
	ctx := context.Background()
	s, err := NewFromURL(ctx, "redis+cluster://"+strings.Join(addrs, ",")+"/?prefix="+testPrefix(), Options{})
	require.NoError(t, err)
	defer s.Close()
	for i := range 30 { // spread over every master's slots
		res, err := s.Acquire(ctx, claim("cluster-"+strconv.Itoa(i)), idempotency.AcquireOptions{})
		require.NoError(t, err)
		require.Equal(t, idempotency.Acquired, res.State)
	}
	assert.Zero(t, s.watch.losses.Load())
}
