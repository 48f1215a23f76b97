package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/internal/recordcodec"
)

// DefaultPrefix starts every key the store writes.
const DefaultPrefix = "gopotency"

// Options configure a Store.
type Options struct {
	// Client is the connection: *redis.Client, *redis.ClusterClient or a
	// Sentinel failover client. Required. Set ContextTimeoutEnabled on it
	// so a ctx deadline bounds each call; otherwise only the client's own
	// read/write timeouts do. The Store does not close it.
	Client redis.UniversalClient
	// Prefix starts every key ("gopotency" by default). It must not contain
	// braces, which would change the Cluster hash tag.
	Prefix string
	// Logger receives reports of corrupt stored records and of lost data
	// (discarded by default).
	Logger *slog.Logger
	// RestartGrace is NewFromURL's grace period when the URL sets none
	// (DefaultRestartGrace when zero); see Watch.
	RestartGrace time.Duration
	// Replicas is how many replicas must confirm a claim (Redis WAIT)
	// before Acquire reports it acquired, so a failover cannot lose it and
	// run its key again; an unconfirmed claim is released and reported as
	// ErrStoreUnavailable. 0 confirms nothing. It needs a *redis.Client
	// (standalone or Sentinel) or a *redis.ClusterClient.
	Replicas int
	// Watch detects restarts and failovers through the client's OnConnect
	// hook (see Watch); NewFromURL sets it up. Without one, a lost claim is
	// noticed only when a renewal finds it gone, and new claims are then
	// refused for DefaultRestartGrace.
	Watch *Watch
}

// Store implements idempotency.Store over Redis. It is safe for concurrent
// use.
type Store struct {
	client redis.UniversalClient
	prefix string
	logger *slog.Logger
	watch  *Watch
	owned  bool // Close closes client: NewFromURL made it
	// replicas: Options.Replicas.
	replicas int
	// deadlineBound: the client bounds its I/O by a ctx's deadline
	// (ContextTimeoutEnabled), so a call with a near deadline runs inline.
	deadlineBound bool

	durMu      sync.Mutex
	durability string // what checkDurability found
	durable    bool

	held held // claims to re-create when Redis loses data

	batch batcher // sends the script calls of a client of one server
}

var _ idempotency.Store = (*Store)(nil)

// New returns a Store over o.Client. It does not touch the network; call
// Ping to check the connection and load the scripts.
func New(o Options) (*Store, error) {
	if o.Client == nil {
		return nil, errors.New("redisstore: Options.Client is required")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		return nil, fmt.Errorf("redisstore: prefix %q must not contain braces", o.Prefix)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Watch == nil {
		o.Watch = NewWatch(DefaultRestartGrace)
	}
	if o.Replicas < 0 {
		return nil, fmt.Errorf("redisstore: replicas %d is negative", o.Replicas)
	}
	o.Watch.logger.Store(o.Logger)
	s := &Store{client: o.Client, prefix: o.Prefix, logger: o.Logger, watch: o.Watch, replicas: o.Replicas}
	o.Watch.onClaimsLost(s.reassert)
	switch c := o.Client.(type) {
	case *redis.Client:
		s.deadlineBound = c.Options().ContextTimeoutEnabled
		s.batch.client = c
	case *redis.ClusterClient:
		s.deadlineBound = c.Options().ContextTimeoutEnabled
	default:
		if o.Replicas > 0 {
			return nil, fmt.Errorf("redisstore: replicas need a *redis.Client or *redis.ClusterClient, not %T", o.Client)
		}
	}
	return s, nil
}

// Close closes the client if the Store created it (NewFromURL); a client
// passed in Options stays open.
func (s *Store) Close() error {
	if !s.owned {
		return nil
	}
	if err := s.client.Close(); err != nil {
		return fmt.Errorf("redisstore: close: %w", err)
	}
	return nil
}

// Ping loads the scripts on the server (every master of a Cluster), which
// proves it is reachable and that the credentials work, and spares the first
// requests an EVALSHA miss. It is cheap enough for a readiness probe.
func (s *Store) Ping(ctx context.Context) error {
	for _, sc := range allScripts {
		if err := sc.Load(ctx, s.client).Err(); err != nil {
			return s.fail(ctx, "ping", err)
		}
	}
	return nil
}

// Key returns the Redis key that holds storage key k.
func (s *Store) Key(k string) string { return s.prefix + ":{" + k + "}" }

func (s *Store) Acquire(ctx context.Context, c idempotency.Claim, o idempotency.AcquireOptions) (idempotency.AcquireResult, error) {
	var none idempotency.AcquireResult
	if err := s.check(ctx, "acquire", c); err != nil {
		return none, err
	}
	losses, graceLeft := s.watch.losses.Load(), s.watch.graceLeft()
	start := time.Now()
	key := s.Key(c.Key)
	args := []any{c.Fingerprint, c.Token, millis(c.Lease), millis(c.Retention), flag(o.TakeOverExpired), flag(graceLeft > 0)}
	type reply struct {
		v       []any
		acked   int64
		waitErr error
	}
	var r reply
	var err error
	if s.replicas == 0 {
		r.v, err = slice(s.eval(ctx, acquireScript, key, args...))
	} else {
		r, err = call(ctx, s.deadlineBound, func(ctx context.Context) (reply, error) {
			v, acked, waitErr, err := s.acquireConfirmed(ctx, key, args...)
			return reply{v, acked, waitErr}, err
		})
	}
	if err != nil {
		return none, s.fail(ctx, "acquire", err)
	}
	v := r.v
	code, _ := elem[int64](v, 0)
	switch code {
	case replyAcquired:
		if s.replicas > 0 && (r.waitErr != nil || r.acked < int64(s.replicas)) {
			// On the master only: a failover now would lose the claim while
			// its request runs. The engine gives it back (bounded, off the
			// request's path); nothing ran.
			return none, fmt.Errorf("redisstore: acquire: %w: %w (%d of replicas=%d confirmed; WAIT error: %v)", idempotency.ErrStoreUnavailable, errUnconfirmed, r.acked, s.replicas, r.waitErr)
		}
		if s.watch.losses.Load() != losses {
			// The call dialled a server that lost its data (the loss was
			// seen in this call's OnConnect, after the grace was read):
			// the key may be another request's wiped claim. Give it back.
			return none, fmt.Errorf("redisstore: acquire: %w: Redis lost its data (restart or failover) during this call; new keys wait for held claims to be re-asserted (restart_grace)", idempotency.ErrStoreUnavailable)
		}
		s.hold(c, start)
		return idempotency.AcquireResult{State: idempotency.Acquired}, nil
	case replyMismatch:
		return idempotency.AcquireResult{State: idempotency.Mismatch}, nil
	case replyLeaseExpired:
		return idempotency.AcquireResult{State: idempotency.LeaseExpired}, nil
	case replyRefused:
		return none, fmt.Errorf("redisstore: acquire: %w: Redis lost its data (restart or failover) moments ago; new keys wait %s more so every server re-asserts the claims it holds (restart_grace)",
			idempotency.ErrStoreUnavailable, graceLeft.Round(time.Millisecond))
	case replyInFlight:
		ms, _ := elem[int64](v, 1)
		return idempotency.AcquireResult{State: idempotency.InFlight, RetryAfter: max(time.Duration(ms)*time.Millisecond, time.Millisecond)}, nil
	case replyCompleted:
		raw, ok := elem[string](v, 1)
		if !ok {
			return none, s.corrupt(ctx, "acquire", c.Key, errors.New("no record in reply"))
		}
		rec, err := recordcodec.Unmarshal([]byte(raw))
		if err != nil {
			return none, s.corrupt(ctx, "acquire", c.Key, err)
		}
		return idempotency.AcquireResult{State: idempotency.Completed, Record: rec}, nil
	}
	return none, s.corrupt(ctx, "acquire", c.Key, fmt.Errorf("unexpected reply %v", v))
}

func (s *Store) Complete(ctx context.Context, c idempotency.Claim, rec *idempotency.Record) error {
	if err := s.check(ctx, "complete", c); err != nil {
		return err
	}
	b, err := recordcodec.Marshal(rec)
	if err != nil {
		return fmt.Errorf("redisstore: complete: %w", err)
	}
	return s.settle(c, func() error {
		_, err := s.runOwned(ctx, "complete", completeScript, c, b, millis(c.Retention), c.Fingerprint)
		return err
	})
}

func (s *Store) Release(ctx context.Context, c idempotency.Claim) error {
	if err := s.check(ctx, "release", c); err != nil {
		return err
	}
	return s.settle(c, func() error {
		_, err := s.runOwned(ctx, "release", releaseScript, c)
		return err
	})
}

func (s *Store) Extend(ctx context.Context, c idempotency.Claim) error {
	if err := s.check(ctx, "extend", c); err != nil {
		return err
	}
	start := time.Now()
	err := s.extend(ctx, c, true)
	switch {
	case err == nil:
		s.hold(c, start)
	case errors.Is(err, idempotency.ErrLeaseLost):
		s.drop(c)
	}
	return err
}

// extend renews or re-creates c. A re-created claim means Redis lost data
// (or an operator purged the key): with report set it counts as a loss
// (Watch.claimVanished), so the other held claims come back too.
func (s *Store) extend(ctx context.Context, c idempotency.Claim, report bool) error {
	n, err := s.runOwned(ctx, "extend", extendScript, c, millis(c.Lease), c.Fingerprint, millis(c.Retention))
	if err == nil && n == replyRecreated {
		s.logger.WarnContext(ctx, "redisstore: a held claim had vanished (purged, evicted, or lost by Redis); re-created it", "key_id", idempotency.KeyID(c.Key))
		if report {
			s.watch.claimVanished()
		}
	}
	return err
}

// runOwned runs a token-checked script that replies 0 when the token does
// not own the key, and a positive code otherwise.
func (s *Store) runOwned(ctx context.Context, op string, sc *redis.Script, c idempotency.Claim, args ...any) (int64, error) {
	n, err := int64Of(s.eval(ctx, sc, s.Key(c.Key), append([]any{c.Token}, args...)...))
	if err != nil {
		return 0, s.fail(ctx, op, err)
	}
	if n == 0 {
		return 0, fmt.Errorf("redisstore: %s: %w", op, idempotency.ErrLeaseLost)
	}
	return n, nil
}

func (s *Store) Get(ctx context.Context, key string) (*idempotency.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redisstore: get: %w", err)
	}
	v, err := slice(s.eval(ctx, getScript, s.Key(key)))
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redisstore: get: %w", idempotency.ErrNotFound)
	}
	if err != nil {
		return nil, s.fail(ctx, "get", err)
	}
	fp, ok1 := elem[string](v, 0)
	ms, ok2 := elem[int64](v, 1)
	now, ok3 := elem[int64](v, 4)
	if !ok1 || !ok2 || !ok3 {
		return nil, s.corrupt(ctx, "get", key, fmt.Errorf("unexpected reply %v", v))
	}
	serverNow := time.UnixMilli(now)
	// Deadlines are reported on this machine's clock, measured from the
	// server's: what an operator compares them with.
	local := time.Now()
	e := &idempotency.Entry{State: idempotency.InFlight, Fingerprint: fp, ExpiresAt: local.Add(time.Duration(ms) * time.Millisecond)}
	e.Token, _ = elem[string](v, 5)
	if raw, ok := elem[string](v, 2); ok {
		rec, err := recordcodec.Unmarshal([]byte(raw))
		if err != nil {
			return nil, s.corrupt(ctx, "get", key, err)
		}
		e.State, e.Record = idempotency.Completed, rec
		return e, nil
	}
	// Every claim carries its lease deadline l (acquire.lua, extend.lua).
	raw, _ := elem[string](v, 3)
	l, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return nil, s.corrupt(ctx, "get", key, fmt.Errorf("lease deadline %q: %w", raw, err))
	}
	e.LeaseExpiresAt = local.Add(time.UnixMilli(l).Sub(serverNow))
	if l <= now {
		e.State = idempotency.LeaseExpired
	}
	return e, nil
}

func (s *Store) Delete(ctx context.Context, key string, seen *idempotency.Entry) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	args := []any{"0", "", 0}
	if seen != nil {
		args = []any{"1", seen.Token, int(seen.State)}
	}
	n, err := int64Of(s.eval(ctx, deleteScript, s.Key(key), args...))
	if err != nil {
		return s.fail(ctx, "delete", err)
	}
	if n == 0 {
		return fmt.Errorf("redisstore: delete: %w: the entry changed since it was read", idempotency.ErrNotFound)
	}
	return nil
}

func (s *Store) check(ctx context.Context, op string, c idempotency.Claim) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	return nil
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// fail wraps a failed call: the caller's ctx ending wins (the store is not
// to blame), anything else is the store being unavailable.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("redisstore: %s: %w (%v)", op, cerr, err)
	}
	// The socket deadline (set from ctx) can fire just before ctx's own timer.
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return fmt.Errorf("redisstore: %s: %w (%v)", op, context.DeadlineExceeded, err)
	}
	return fmt.Errorf("redisstore: %s: %w: %w", op, idempotency.ErrStoreUnavailable, err)
}

// corrupt reports data the store cannot read as ErrCorruptRecord, never
// ErrStoreUnavailable: the request it stands for may already have run, so
// even a fail-open engine must not run it again.
func (s *Store) corrupt(ctx context.Context, op, key string, err error) error {
	s.logger.ErrorContext(ctx, "redisstore: unreadable entry", "op", op, "key_id", key[:min(12, len(key))], "error", err)
	return fmt.Errorf("redisstore: %s: %w: %w", op, idempotency.ErrCorruptRecord, err)
}

// eval runs sc on key with args: in a batch on a client of one server
// (batch.go), else on its own.
func (s *Store) eval(ctx context.Context, sc *redis.Script, key string, args ...any) (*redis.Cmd, error) {
	if s.batch.client != nil {
		return s.batch.eval(ctx, sc, key, args...)
	}
	return call(ctx, s.deadlineBound, func(ctx context.Context) (*redis.Cmd, error) {
		return sc.Run(ctx, s.client, []string{key}, args...), nil
	})
}

// slice and int64Of read a script's reply.
func slice(cmd *redis.Cmd, err error) ([]any, error) {
	if err != nil {
		return nil, err
	}
	return cmd.Slice()
}

func int64Of(cmd *redis.Cmd, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return cmd.Int64()
}

// elem returns v[i] as a T, reporting false if it is missing or another type.
func elem[T any](v []any, i int) (T, bool) {
	var zero T
	if i >= len(v) {
		return zero, false
	}
	x, ok := v[i].(T)
	return x, ok
}

// millis converts d to whole milliseconds for PEXPIRE, rounding up so a
// positive duration never becomes 0 (which would delete the key at once).
func millis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
