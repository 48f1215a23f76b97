// Package sqlcore is the driver-free half of the SQL stores: the statements
// for each dialect, the embedded schema migrations and the
// idempotency.Store logic over any database/sql-shaped connection.
//
// sqlstore (database/sql with its own drivers) and gormstore (a caller's
// *gorm.DB) both build on it. It imports no driver, so gormstore can use it
// without linking sqlstore's SQLite driver, which registers the same
// database/sql name ("sqlite") as GORM's pure-Go SQLite driver.
package sqlcore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Config says how to talk to the database.
type Config struct {
	Dialect Dialect
	Bind    Bind
	// Table defaults to DefaultTable; see ValidateTable.
	Table string
	// Name prefixes error messages ("sqlstore", "gormstore").
	Name string
}

// Store implements idempotency.Store over a Conn. It holds no state of its
// own beyond the compiled statements, so any number of Stores (in any
// number of processes) may share a table.
type Store struct {
	conn Conn
	name string
	d    Dialect
	st   statements
}

var _ idempotency.Store = (*Store)(nil)

// New checks cfg and compiles the statements; it does not touch the
// database.
func New(conn Conn, cfg Config) (*Store, error) {
	if cfg.Name == "" {
		cfg.Name = "sqlcore"
	}
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if !cfg.Dialect.valid() {
		return nil, fmt.Errorf("%s: unsupported dialect %v", cfg.Name, cfg.Dialect)
	}
	if cfg.Bind != BindDollar && cfg.Bind != BindQuestion {
		return nil, fmt.Errorf("%s: unsupported bind style %d", cfg.Name, cfg.Bind)
	}
	if err := ValidateTable(cfg.Table); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	return &Store{conn: conn, name: cfg.Name, d: cfg.Dialect, st: compileAll(cfg.Dialect, cfg.Bind, cfg.Table)}, nil
}

// maxClaimAttempts bounds Acquire's retries. A retry happens only when a
// concurrent writer changed the key between the claim's conflict check and
// the read that reports the winner, so even a few in a row mean a key
// churning faster than it can be observed.
const maxClaimAttempts = 5

func (s *Store) Acquire(ctx context.Context, c idempotency.Claim, o idempotency.AcquireOptions) (idempotency.AcquireResult, error) {
	if err := s.check(ctx, "acquire", c); err != nil {
		return idempotency.AcquireResult{}, err
	}
	var lastErr error
	for range maxClaimAttempts {
		won, r, err := s.claim(ctx, c, o.TakeOverExpired)
		if err != nil && retryable(err) && ctx.Err() == nil {
			lastErr = err
			continue
		}
		if err != nil {
			return idempotency.AcquireResult{}, s.fail(ctx, "acquire", err)
		}
		if won {
			return idempotency.AcquireResult{State: idempotency.Acquired}, nil
		}
		if r == nil || !r.live() {
			continue // the key changed under us: look again
		}
		switch {
		case string(r.fingerprint) != c.Fingerprint:
			return idempotency.AcquireResult{State: idempotency.Mismatch}, nil
		case r.status.Valid:
			rec, err := r.record()
			if err != nil {
				return idempotency.AcquireResult{}, s.fail(ctx, "acquire", err)
			}
			return idempotency.AcquireResult{State: idempotency.Completed, Record: rec}, nil
		case r.now < r.lease():
			left := time.Duration(r.lease()-r.now) * time.Millisecond
			return idempotency.AcquireResult{State: idempotency.InFlight, RetryAfter: max(left, time.Millisecond)}, nil
		case o.TakeOverExpired:
			continue // taken over by someone else meanwhile: look again
		default:
			return idempotency.AcquireResult{State: idempotency.LeaseExpired}, nil
		}
	}
	if lastErr != nil {
		return idempotency.AcquireResult{}, s.fail(ctx, "acquire", lastErr)
	}
	return idempotency.AcquireResult{}, fmt.Errorf("%s: acquire: %w: the key changed under %d claims in a row", s.name, idempotency.ErrStoreUnavailable, maxClaimAttempts)
}

// claim runs one claim attempt. It reports whether c won, and otherwise
// the row that stopped it as seen just after (nil if none was visible).
func (s *Store) claim(ctx context.Context, c idempotency.Claim, takeOver bool) (bool, *row, error) {
	args := s.st.claim.args(c.Key, fingerprint(c), c.Token, millis(c.Lease), millis(max(c.Retention, c.Lease)), takeOver)
	if s.d == SQLite {
		n, err := s.exec(ctx, s.st.claim, args)
		if err != nil || n == 1 {
			return err == nil, nil, err
		}
		r, err := s.lookup(ctx, c.Key)
		return false, r, err
	}
	rows, err := s.query(ctx, s.st.claim, args)
	if err != nil {
		return false, nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		return false, nil, rows.Err()
	}
	var won bool
	r := &row{}
	if err := rows.Scan(append([]any{&won}, r.dest()...)...); err != nil {
		return false, nil, corruptRow(err)
	}
	return won, r, rows.Close()
}

// fingerprint is never a nil slice: drivers bind nil as NULL, and an
// empty fingerprint is a value.
func fingerprint(c idempotency.Claim) []byte {
	return append(make([]byte, 0, len(c.Fingerprint)), c.Fingerprint...)
}

func (s *Store) Complete(ctx context.Context, c idempotency.Claim, rec *idempotency.Record) error {
	if err := s.check(ctx, "complete", c); err != nil {
		return err
	}
	if rec == nil {
		return fmt.Errorf("%s: complete: nil record", s.name)
	}
	if !rec.Mark.Valid() {
		return fmt.Errorf("%s: complete: invalid mark %v", s.name, rec.Mark)
	}
	var created any
	if !rec.CreatedAt.IsZero() {
		created = rec.CreatedAt.UnixMilli()
	}
	args := s.st.complete.args(c.Key, c.Token, int64(rec.Status), encodeHeaders(rec.Headers), nonEmpty(rec.Body),
		rec.Mark == idempotency.MarkTooLarge, created, millis(c.Retention), fingerprint(c), int64(rec.Mark))
	for range maxClaimAttempts {
		n, err := s.exec(ctx, s.st.complete, args)
		if err != nil {
			return s.fail(ctx, "complete", err)
		}
		if n > 0 {
			return nil
		}
		// Nothing written: our own record (a retry whose first try
		// landed), or another token's claim or record.
		held, token, done, err := s.owner(ctx, c.Key)
		switch {
		case err != nil:
			return s.fail(ctx, "complete", err)
		case !held:
			continue // gone meanwhile (expired, purged): record anew
		case token == c.Token && done:
			return nil
		}
		return fmt.Errorf("%s: complete: %w", s.name, idempotency.ErrLeaseLost)
	}
	return fmt.Errorf("%s: complete: %w: the key changed under %d attempts in a row", s.name, idempotency.ErrStoreUnavailable, maxClaimAttempts)
}

// owner reads who holds key now: held is false when no live row is there;
// otherwise token is its token ("" for rows completed before completed rows
// kept theirs) and done says whether it is completed.
func (s *Store) owner(ctx context.Context, key string) (held bool, token string, done bool, err error) {
	rows, err := s.query(ctx, s.st.owner, s.st.owner.args(key))
	if err != nil {
		return false, "", false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return false, "", false, rows.Err()
	}
	var tok sql.NullString
	if err := rows.Scan(&tok, &done); err != nil {
		return false, "", false, corruptRow(err)
	}
	return true, tok.String, done, rows.Close()
}

func (s *Store) Release(ctx context.Context, c idempotency.Claim) error {
	if err := s.check(ctx, "release", c); err != nil {
		return err
	}
	n, err := s.exec(ctx, s.st.release, s.st.release.args(c.Key, c.Token))
	if err != nil {
		return s.fail(ctx, "release", err)
	}
	if n > 0 {
		return nil
	}
	// Not ours to delete: fine if the key is absent, lost if someone else
	// holds it (another claim, or a completed record, even our own).
	held, _, _, err := s.owner(ctx, c.Key)
	if err != nil {
		return s.fail(ctx, "release", err)
	}
	if held {
		return fmt.Errorf("%s: release: %w", s.name, idempotency.ErrLeaseLost)
	}
	return nil
}

func (s *Store) Extend(ctx context.Context, c idempotency.Claim) error {
	if err := s.check(ctx, "extend", c); err != nil {
		return err
	}
	n, err := s.exec(ctx, s.st.extend, s.st.extend.args(c.Key, c.Token, millis(c.Lease), fingerprint(c), millis(max(c.Retention, c.Lease))))
	if err != nil {
		return s.fail(ctx, "extend", err)
	}
	if n == 0 {
		return fmt.Errorf("%s: extend: %w", s.name, idempotency.ErrLeaseLost)
	}
	return nil
}

func (s *Store) check(ctx context.Context, op string, c idempotency.Claim) error {
	if err := ctx.Err(); err != nil {
		return s.fail(ctx, op, err)
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%s: %s: %w", s.name, op, err)
	}
	return nil
}

func (s *Store) Get(ctx context.Context, key string) (*idempotency.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.fail(ctx, "get", err)
	}
	r, err := s.lookup(ctx, key)
	if err != nil {
		return nil, s.fail(ctx, "get", err)
	}
	if r == nil || !r.live() {
		return nil, fmt.Errorf("%s: get: %w", s.name, idempotency.ErrNotFound)
	}
	e := &idempotency.Entry{
		State:          idempotency.InFlight,
		Token:          r.token.String,
		Fingerprint:    string(r.fingerprint),
		ExpiresAt:      time.UnixMilli(r.expires).UTC(),
		LeaseExpiresAt: time.UnixMilli(r.lease()).UTC(),
	}
	switch {
	case r.status.Valid:
		if e.Record, err = r.record(); err != nil {
			return nil, s.fail(ctx, "get", err)
		}
		e.State, e.LeaseExpiresAt = idempotency.Completed, time.Time{}
	case r.now >= r.lease():
		e.State = idempotency.LeaseExpired
	}
	return e, nil
}

func (s *Store) Delete(ctx context.Context, key string, seen *idempotency.Entry) error {
	if err := ctx.Err(); err != nil {
		return s.fail(ctx, "delete", err)
	}
	if seen == nil {
		if _, err := s.exec(ctx, s.st.purge, s.st.purge.args(key)); err != nil {
			return s.fail(ctx, "delete", err)
		}
		return nil
	}
	n, err := s.exec(ctx, s.st.purgeSeen, s.st.purgeSeen.args(key, seen.Token, int64(seen.State)))
	if err != nil {
		return s.fail(ctx, "delete", err)
	}
	if n == 0 {
		return fmt.Errorf("%s: delete: %w: the entry changed since it was read", s.name, idempotency.ErrNotFound)
	}
	return nil
}

// Reap deletes at most batch expired rows and returns how many it deleted.
// Expiry is already enforced on every read; reaping only reclaims space.
func (s *Store) Reap(ctx context.Context, batch int) (int64, error) {
	n, err := s.exec(ctx, s.st.reap, s.st.reap.args(int64(max(batch, 1))))
	if err != nil {
		return 0, s.fail(ctx, "reap", err)
	}
	return n, nil
}

// lookup returns key's row whatever its expiry, or nil if there is none.
func (s *Store) lookup(ctx context.Context, key string) (*row, error) {
	rows, err := s.query(ctx, s.st.lookup, s.st.lookup.args(key))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	r := &row{}
	if err := rows.Scan(append(r.dest(), &r.token)...); err != nil {
		return nil, corruptRow(err)
	}
	return r, rows.Close()
}

// fail wraps err for op: a cancelled or expired ctx is reported as such
// (the caller gave up, the store did not fail); a row that cannot be read
// stays an ErrCorruptRecord, which no engine lets through; anything else
// is a store failure, so callers can fail closed.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(err, cerr) {
			return fmt.Errorf("%s: %s: %w", s.name, op, err)
		}
		return fmt.Errorf("%s: %s: %w (%v)", s.name, op, cerr, err)
	}
	if errors.Is(err, idempotency.ErrCorruptRecord) {
		return fmt.Errorf("%s: %s: %w", s.name, op, err)
	}
	return fmt.Errorf("%s: %s: %w: %w", s.name, op, idempotency.ErrStoreUnavailable, err)
}

// corruptRow marks a failed Scan as an unreadable entry: the row arrived,
// but a column holds what no store wrote (possible in SQLite, whose columns
// take any type). A Scan that failed because ctx closed the rows is still
// reported as ctx's error by fail, which looks at ctx first.
func corruptRow(err error) error {
	return fmt.Errorf("%w: %w", idempotency.ErrCorruptRecord, err)
}
