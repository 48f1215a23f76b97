package sqlcore

import (
	"context"
	"database/sql"
	"errors"
)

// Conn runs statements; *sql.DB, *sql.Conn and *sql.Tx satisfy it, and
// gormstore adapts a *gorm.DB to it.
type Conn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// retryable reports a PostgreSQL serialization failure or deadlock: the
// statement had no effect and may simply run again. They only occur when
// the server's default isolation is above READ COMMITTED (a concurrent
// claim committed after the statement's snapshot); drivers expose the code
// through SQLState (pgx's *pgconn.PgError does).
func retryable(err error) bool {
	var e interface{ SQLState() string }
	return errors.As(err, &e) && (e.SQLState() == "40001" || e.SQLState() == "40P01")
}

// exec runs a single-row write, again if it failed to serialize (see
// retryable; Complete and Extend of one lease can race under REPEATABLE
// READ).
func (s *Store) exec(ctx context.Context, st stmt, args []any) (int64, error) {
	var res sql.Result
	var err error
	for range 3 {
		if ps := s.prepare(ctx, st); ps != nil {
			res, err = ps.ExecContext(ctx, args...)
		} else {
			res, err = s.conn.ExecContext(ctx, st.sql, args...)
		}
		if err == nil || !retryable(err) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s *Store) query(ctx context.Context, st stmt, args []any) (*sql.Rows, error) {
	if ps := s.prepare(ctx, st); ps != nil {
		return ps.QueryContext(ctx, args...)
	}
	return s.conn.QueryContext(ctx, st.sql, args...)
}

// preparer is implemented by *sql.DB, *sql.Conn and *sql.Tx.
type preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// prepare returns st prepared on the connection, preparing it on first
// use, or nil when the connection cannot prepare or preparing failed (the
// table may not exist yet; running the statement reports the real error,
// and the next call tries again). SQLite spends most of a call parsing
// SQL otherwise; pgx caches prepared statements by itself.
func (s *Store) prepare(ctx context.Context, st stmt) *sql.Stmt {
	p, ok := s.conn.(preparer)
	if !ok {
		return nil
	}
	if ps := st.prepared.Load(); ps != nil {
		return ps
	}
	ps, err := p.PrepareContext(ctx, st.sql)
	if err != nil {
		return nil
	}
	if !st.prepared.CompareAndSwap(nil, ps) {
		_ = ps.Close()
		return st.prepared.Load()
	}
	return ps
}

// Close releases the prepared statements. The Store must not be used
// afterwards.
func (s *Store) Close() error {
	var errs []error
	for _, st := range s.st.all() {
		if ps := st.prepared.Swap(nil); ps != nil {
			errs = append(errs, ps.Close())
		}
	}
	return errors.Join(errs...)
}
