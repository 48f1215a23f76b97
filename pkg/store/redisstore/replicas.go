package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Why claims, not records, are confirmed: Redis replicates asynchronously,
// so a failover loses the master's last writes. A claim confirmed on a
// replica before its request runs survives any failover that promotes that
// replica, and a surviving claim never lets its key run again (a record
// lost with the old master leaves the claim, whose retries are answered
// in-progress and then outcome-unknown). One WAIT on the claim's own
// connection, pipelined after the script, makes that one round trip.

// defaultWaitTimeout bounds WAIT when the caller's ctx has no deadline.
const defaultWaitTimeout = time.Second

// acquireConfirmed runs the acquire script and, pipelined on the same
// connection (WAIT covers the writes of its own connection), WAIT for
// s.replicas replicas. It returns the script's reply and how many replicas
// acknowledged it; waitErr reports a WAIT that failed after the script ran.
func (s *Store) acquireConfirmed(ctx context.Context, key string, args ...any) (v []any, acked int64, waitErr error, err error) {
	c, err := s.masterFor(ctx, key)
	if err != nil {
		return nil, 0, nil, err
	}
	for try := 0; ; try++ {
		pipe := c.Pipeline()
		res := acquireScript.EvalSha(ctx, pipe, []string{key}, args...)
		wait := pipe.Do(ctx, "WAIT", s.replicas, waitMillis(ctx))
		_, _ = pipe.Exec(ctx) // each command's own error is read below
		if err := res.Err(); err != nil {
			if try == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
				if err := acquireScript.Load(ctx, c).Err(); err != nil {
					return nil, 0, nil, err
				}
				continue
			}
			return nil, 0, nil, err
		}
		v, err := res.Slice()
		if err != nil {
			return nil, 0, nil, err
		}
		acked, waitErr = wait.Int64()
		return v, acked, waitErr, nil
	}
}

// masterFor is the client of the master that holds key.
func (s *Store) masterFor(ctx context.Context, key string) (*redis.Client, error) {
	switch c := s.client.(type) {
	case *redis.Client:
		return c, nil
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, key)
	}
	return nil, fmt.Errorf("replicas need a *redis.Client or *redis.ClusterClient, not %T", s.client)
}

// waitMillis is WAIT's timeout: most of what remains of ctx, so an
// unconfirmed claim is answered (and released) within the store timeout.
// Never 0, which would make WAIT block for ever.
func waitMillis(ctx context.Context) int64 {
	d := defaultWaitTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl) * 3 / 4
	}
	return max(millis(d), 1)
}

// Durability says what a failover or restart of the server can cost, as
// measured at start (NewFromURL): the replicas setting, the replicas and
// persistence each master reports. ok is false when the setup cannot keep
// every claim across a failover or restart.
func (s *Store) Durability() (summary string, ok bool) {
	s.durMu.Lock()
	defer s.durMu.Unlock()
	return s.durability, s.durable
}

// checkDurability reads INFO replication and persistence on every master
// and sets what Durability reports. A server that denies INFO is taken at
// its worst.
func (s *Store) checkDurability(ctx context.Context) {
	var mu sync.Mutex
	var parts []string
	durable := true
	check := func(ctx context.Context, c *redis.Client) error {
		addr := c.Options().Addr
		info, err := c.Info(ctx, "replication", "persistence").Result()
		if err != nil {
			mu.Lock()
			defer mu.Unlock()
			parts, durable = append(parts, addr+": INFO denied ("+err.Error()+"): durability not checked"), false
			return nil
		}
		fields := infoFields(info)
		connected, _ := strconv.Atoi(fields["connected_slaves"])
		var repl string
		replOK := true
		switch {
		case s.replicas > 0 && connected >= s.replicas:
			repl = fmt.Sprintf("every claim is confirmed on %d of its %d replicas before its request runs, so a failover keeps it (a record not yet replicated answers outcome-unknown, never runs again)", s.replicas, connected)
		case s.replicas > 0:
			repl, replOK = fmt.Sprintf("replicas=%d but %d replicas are connected: new keys get 503 until enough replicas are", s.replicas, connected), false
		case connected > 0:
			repl, replOK = fmt.Sprintf("%d replicas but replicas=0: a failover can lose the claims and records of the last moments, and those keys may run again; set replicas=1 in the Redis URL", connected), false
		default:
			repl = "no replicas"
		}
		// A master that restarts before any failover comes back with what
		// it persisted, and its replicas resync to that: persistence decides
		// what a restart keeps, replicas or not.
		var persist string
		persistOK := false
		switch fsync := appendfsync(ctx, c); {
		case fields["aof_enabled"] != "1":
			persist = "no AOF: a restart of the master loses the records (and its replicas resync to that), so those keys may run again; claims in flight are re-asserted by the servers holding them"
		case fsync == "always":
			persist, persistOK = "AOF with appendfsync always: a restart keeps every claim and record", true
		case fsync != "":
			persist = "AOF with appendfsync " + fsync + ": a crash of the master can lose about the last second of claims and records"
		default:
			persist = "AOF on, appendfsync unreadable: a crash may lose the last writes"
		}
		mu.Lock()
		defer mu.Unlock()
		parts = append(parts, addr+": "+repl+"; "+persist)
		durable = durable && replOK && persistOK
		return nil
	}
	switch c := s.client.(type) {
	case *redis.ClusterClient:
		if err := c.ForEachMaster(ctx, check); err != nil {
			parts, durable = append(parts, "cluster masters could not all be read: "+err.Error()), false
		}
	case *redis.Client:
		_ = check(ctx, c)
	default:
		parts, durable = []string{fmt.Sprintf("unknown client %T: durability not checked", s.client)}, false
	}
	s.durMu.Lock()
	defer s.durMu.Unlock()
	s.durability, s.durable = strings.Join(parts, "; "), durable
}

// errUnconfirmed explains a claim the replicas did not confirm in time.
var errUnconfirmed = errors.New("the claim was not confirmed on enough replicas in time (a replica is down or lagging); the request was not executed")

// appendfsync reads the AOF fsync policy ("" when CONFIG is denied, as on
// some managed servers).
func appendfsync(ctx context.Context, c *redis.Client) string {
	v, err := c.ConfigGet(ctx, "appendfsync").Result()
	if err != nil {
		return ""
	}
	return v["appendfsync"]
}
