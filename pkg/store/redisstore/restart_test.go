package redisstore

import (
	"context"
	"net"
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

// A Redis restart without persistence wipes the claim of a running
// request. Each store notices the new run id when it reconnects: the
// holder's store re-creates its claim at once, and new keys are refused
// for the grace, so a duplicate arriving anywhere never finds the key free.
func TestRestartReassertsClaims(t *testing.T) {
	srv := testenv.StartRedis(t)
	ctx := context.Background()
	holderStore, err := NewFromURL(ctx, srv.URL()+"?restart_grace=2s", Options{})
	require.NoError(t, err)
	defer holderStore.Close()
	otherStore, err := NewFromURL(ctx, srv.URL()+"?restart_grace=2s", Options{})
	require.NoError(t, err)
	defer otherStore.Close()
	holder, other := idempotency.New(holderStore), idempotency.New(otherStore)
	p := idempotency.DefaultPolicy()
	p.Lease = time.Minute // renewal would come in 20s: only the re-assertion can help
	req := func() *idempotency.Request {
		return &idempotency.Request{Method: "POST", Path: "/pay", Header: map[string][]string{"Idempotency-Key": {"k-restart"}}}
	}
	d := holder.Begin(ctx, &p, req())
	require.Equal(t, idempotency.Proceed, d.Kind)
	// Both stores have met the first server.
	require.Equal(t, idempotency.Reject, other.Begin(ctx, &p, req()).Kind)

	srv.Stop()
	require.NoError(t, srv.Start()) // empty: the claim is gone

	// The other server reconnects first: a new key waits out the grace,
	// and this key is not handed out.
	fresh := &idempotency.Request{Method: "POST", Path: "/pay", Header: map[string][]string{"Idempotency-Key": {"k-new"}}}
	got := other.Begin(ctx, &p, fresh)
	require.Equal(t, idempotency.Reject, got.Kind)
	assert.Equal(t, "store-unavailable", got.Problem.Slug())
	dup := other.Begin(ctx, &p, req())
	require.Equal(t, idempotency.Reject, dup.Kind, "the wiped key is not free: %v", dup.Err)

	// The holder reconnects (any call does: here its own renewal check)
	// and re-asserts; the duplicate then sees the running request.
	require.Eventually(t, func() bool {
		_, _ = holderStore.Get(ctx, "probe") // reconnects, runs OnConnect
		e, err := otherStore.Get(ctx, d.Lease.StorageKey())
		return err == nil && e.State == idempotency.InFlight
	}, 5*time.Second, 20*time.Millisecond, "the claim was re-created")
	time.Sleep(2 * time.Second) // the grace ends
	dup = other.Begin(ctx, &p, req())
	requireSlug(t, dup, "request-in-progress")
	require.NoError(t, d.Lease.Complete(ctx, &idempotency.Record{Status: 201, Body: []byte("once")}))
	rep := other.Begin(ctx, &p, req())
	require.Equal(t, idempotency.Replay, rep.Kind)
	assert.Equal(t, "once", string(rep.Record.Body))
}

func requireSlug(t *testing.T, d idempotency.Decision, slug string) {
	t.Helper()
	require.Equal(t, idempotency.Reject, d.Kind, "%+v", d)
	require.Equal(t, slug, d.Problem.Slug(), "%v", d.Err)
}

// Without a watch (a client the caller built without its OnConnect hook),
// a renewal that finds its claim gone still re-creates it, tells the
// other leases, and starts the grace.
func TestRenewalFindingItsClaimGoneStartsTheGrace(t *testing.T) {
	c := redisClient(t)
	s := newStore(t, c)
	eng := idempotency.New(s)
	p := idempotency.DefaultPolicy()
	ctx := context.Background()
	a := eng.Begin(ctx, &p, &idempotency.Request{Method: "POST", Path: "/", Header: map[string][]string{"Idempotency-Key": {"a"}}})
	b := eng.Begin(ctx, &p, &idempotency.Request{Method: "POST", Path: "/", Header: map[string][]string{"Idempotency-Key": {"b"}}})
	require.Equal(t, idempotency.Proceed, a.Kind)
	require.Equal(t, idempotency.Proceed, b.Kind)
	ent, err := s.Get(ctx, a.Lease.StorageKey())
	require.NoError(t, err)
	claimA := idempotency.Claim{Key: a.Lease.StorageKey(), Token: ent.Token, Fingerprint: ent.Fingerprint, Lease: p.Lease, Retention: p.Retention}
	for _, k := range []string{a.Lease.StorageKey(), b.Lease.StorageKey()} {
		require.NoError(t, c.Del(ctx, s.Key(k)).Err()) // wiped behind the store's back
	}
	require.NoError(t, s.Extend(ctx, claimA), "a renewal re-creates its own claim")
	require.Eventually(t, func() bool {
		e, err := s.Get(ctx, b.Lease.StorageKey())
		return err == nil && e.State == idempotency.InFlight
	}, 5*time.Second, 10*time.Millisecond, "and the store re-created the other claim it holds")
	assert.Positive(t, s.watch.graceLeft(), "new keys wait")
}

// In a Cluster, nodes are known by address: a failover puts a master at an
// address the store did not meet at start, whose data may lack the latest
// claims. Such a master counts as a loss; a replica met later does not.
func TestClusterMasterMetAfterStartIsALoss(t *testing.T) {
	ctx := context.Background()
	a, b, replica := testenv.StartRedis(t), testenv.StartRedis(t), testenv.StartRedis(t)
	connect := func(srv *testenv.RedisServer) *redis.Conn {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr})
		t.Cleanup(func() { _ = c.Close() })
		cn := c.Conn()
		t.Cleanup(func() { _ = cn.Close() })
		return cn
	}
	host, port, err := net.SplitHostPort(a.Addr)
	require.NoError(t, err)
	rc := connect(replica)
	require.NoError(t, rc.Do(ctx, "REPLICAOF", host, port).Err())

	w := NewWatch(time.Minute)
	require.NoError(t, w.NodeHook(a.Addr)(ctx, connect(a)))
	require.NoError(t, w.NodeHook(b.Addr)(ctx, connect(b)), "masters met before NodesKnown are the start topology")
	require.Zero(t, w.losses.Load())
	w.NodesKnown()
	require.NoError(t, w.NodeHook(replica.Addr)(ctx, rc))
	require.Zero(t, w.losses.Load(), "a replica holds no claims of its own")
	require.NoError(t, w.NodeHook(a.Addr)(ctx, connect(a)))
	require.Zero(t, w.losses.Load(), "a known master reconnecting is no loss")

	promoted := testenv.StartRedis(t)
	require.NoError(t, w.NodeHook(promoted.Addr)(ctx, connect(promoted)))
	assert.Equal(t, int64(1), w.losses.Load(), "a master at a new address after start")
	assert.Positive(t, w.graceLeft())
}

// After a restart the re-assertion renews each held lease once: the claims
// it re-creates are not reported again (each report would renew every
// lease: N² scripts right when Redis came back). Counted on the server.
func TestReassertAfterRestartRenewsEachLeaseOnce(t *testing.T) {
	srv := testenv.StartRedis(t)
	ctx := context.Background()
	s, err := NewFromURL(ctx, srv.URL()+"?restart_grace=1s", Options{})
	require.NoError(t, err)
	defer s.Close()
	eng := idempotency.New(s)
	p := idempotency.DefaultPolicy()
	p.Lease = time.Minute // no renewal timer within the test
	const n = 30
	var keys []string
	for i := range n {
		d := eng.Begin(ctx, &p, &idempotency.Request{Method: "POST", Path: "/", Header: map[string][]string{"Idempotency-Key": {"once-" + strconv.Itoa(i)}}})
		require.Equal(t, idempotency.Proceed, d.Kind)
		keys = append(keys, s.Key(d.Lease.StorageKey()))
	}
	srv.Stop()
	require.NoError(t, srv.Start()) // empty: every claim is gone
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer raw.Close()
	_, _ = s.Get(ctx, "probe") // the store reconnects and sees the new run id
	require.Eventually(t, func() bool {
		m, err := raw.Exists(ctx, keys...).Result()
		return err == nil && m == n
	}, 5*time.Second, 20*time.Millisecond, "every claim re-created")
	time.Sleep(300 * time.Millisecond) // any further pass would be under way
	info, err := raw.Info(ctx, "commandstats").Result()
	require.NoError(t, err)
	scripts := 0
	for _, name := range []string{"cmdstat_evalsha", "cmdstat_eval"} {
		calls, _, _ := strings.Cut(strings.TrimPrefix(infoFields(info)[name], "calls="), ",")
		c, _ := strconv.Atoi(calls)
		scripts += c
	}
	t.Logf("scripts run after the restart: %d for %d leases", scripts, n)
	// One pass: n renewals, the probe, and up to 16 (the pass's
	// concurrency) NOSCRIPT replies retried as EVAL; a second pass would
	// add n more.
	assert.LessOrEqual(t, scripts, n+16+3, "one renewal per lease")
	assert.GreaterOrEqual(t, scripts, n)
}
