package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
	// Logger receives reports of corrupt stored records (discarded by
	// default).
	Logger *slog.Logger
}

// Store implements idempotency.Store over Redis. It is safe for concurrent
// use.
type Store struct {
	client redis.UniversalClient
	prefix string
	logger *slog.Logger
	owned  bool // Close closes client: NewFromURL made it
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
	return &Store{client: o.Client, prefix: o.Prefix, logger: o.Logger}, nil
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

func (s *Store) Acquire(ctx context.Context, key, fingerprint string, lease time.Duration) (idempotency.AcquireResult, error) {
	var none idempotency.AcquireResult
	if err := ctx.Err(); err != nil {
		return none, fmt.Errorf("redisstore: acquire: %w", err)
	}
	tok := newToken()
	v, err := acquireScript.Run(ctx, s.client, []string{s.Key(key)}, fingerprint, tok, millis(lease)).Slice()
	if err != nil {
		return none, s.fail(ctx, "acquire", err)
	}
	code, _ := elem[int64](v, 0)
	switch code {
	case replyAcquired:
		return idempotency.AcquireResult{Outcome: idempotency.Acquired, Token: tok}, nil
	case replyMismatch:
		return idempotency.AcquireResult{Outcome: idempotency.Mismatch}, nil
	case replyInFlight:
		ms, _ := elem[int64](v, 1)
		return idempotency.AcquireResult{Outcome: idempotency.InFlight, RetryAfter: max(time.Duration(ms)*time.Millisecond, time.Millisecond)}, nil
	case replyCompleted:
		raw, ok := elem[string](v, 1)
		if !ok {
			return none, s.corrupt(ctx, "acquire", key, errors.New("no record in reply"))
		}
		rec, err := recordcodec.Unmarshal([]byte(raw))
		if err != nil {
			return none, s.corrupt(ctx, "acquire", key, err)
		}
		return idempotency.AcquireResult{Outcome: idempotency.Completed, Record: rec}, nil
	}
	return none, s.corrupt(ctx, "acquire", key, fmt.Errorf("unexpected reply %v", v))
}

func (s *Store) Complete(ctx context.Context, key, token string, rec *idempotency.Record, retention time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: complete: %w", err)
	}
	b, err := recordcodec.Marshal(rec)
	if err != nil {
		return fmt.Errorf("redisstore: complete: %w", err)
	}
	return s.runOwned(ctx, "complete", completeScript, key, token, b, millis(retention))
}

func (s *Store) Release(ctx context.Context, key, token string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: release: %w", err)
	}
	return s.runOwned(ctx, "release", releaseScript, key, token)
}

func (s *Store) Extend(ctx context.Context, key, token string, lease time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: extend: %w", err)
	}
	return s.runOwned(ctx, "extend", extendScript, key, token, millis(lease))
}

// runOwned runs a token-checked script that replies 1 on success and 0 when the
// token does not own the key.
func (s *Store) runOwned(ctx context.Context, op string, sc *redis.Script, key, token string, args ...any) error {
	n, err := sc.Run(ctx, s.client, []string{s.Key(key)}, append([]any{token}, args...)...).Int64()
	if err != nil {
		return s.fail(ctx, op, err)
	}
	if n != 1 {
		return fmt.Errorf("redisstore: %s: %w", op, idempotency.ErrLeaseLost)
	}
	return nil
}

func (s *Store) Get(ctx context.Context, key string) (*idempotency.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redisstore: get: %w", err)
	}
	v, err := getScript.Run(ctx, s.client, []string{s.Key(key)}).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redisstore: get: %w", idempotency.ErrNotFound)
	}
	if err != nil {
		return nil, s.fail(ctx, "get", err)
	}
	fp, ok1 := elem[string](v, 0)
	ms, ok2 := elem[int64](v, 1)
	if !ok1 || !ok2 {
		return nil, s.corrupt(ctx, "get", key, fmt.Errorf("unexpected reply %v", v))
	}
	e := &idempotency.Entry{State: idempotency.StateInFlight, Fingerprint: fp, ExpiresAt: time.Now().Add(time.Duration(ms) * time.Millisecond)}
	if raw, ok := elem[string](v, 2); ok {
		rec, err := recordcodec.Unmarshal([]byte(raw))
		if err != nil {
			return nil, s.corrupt(ctx, "get", key, err)
		}
		e.State, e.Record = idempotency.StateCompleted, rec
	}
	return e, nil
}

func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	if err := s.client.Del(ctx, s.Key(key)).Err(); err != nil {
		return s.fail(ctx, "delete", err)
	}
	return nil
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

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
