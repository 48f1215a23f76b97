package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/sqlstore/sqlcore"
)

// Dialect is the SQL flavour of a database.
type Dialect = sqlcore.Dialect

// The supported dialects.
const (
	Postgres = sqlcore.Postgres
	SQLite   = sqlcore.SQLite
)

// DefaultTable is the table used when Options.Table is empty.
const DefaultTable = sqlcore.DefaultTable

// Options configure a Store. The zero value is ready to use.
type Options struct {
	// Table is the table name (DefaultTable when empty): 1 to 48 lower-case
	// letters, digits and underscores, not starting with a digit. Several
	// tables can share a database; for a PostgreSQL schema, set
	// search_path in the URL.
	Table string
	// SkipMigrations leaves the schema alone, for teams that apply the DDL
	// in the package documentation themselves.
	SkipMigrations bool
	// ReapInterval is how often expired rows are deleted (30s when zero);
	// negative disables the reaper (another instance, or a cron job calling
	// Reap, does it). Expiry is enforced on every read regardless.
	ReapInterval time.Duration
	// ReapBatch bounds the rows one reap statement deletes (500 when zero).
	ReapBatch int
	// MaxOpenConns sizes the pool OpenURL creates: 16 for PostgreSQL and 1
	// for SQLite when zero. One SQLite connection serialises writers in the
	// process instead of letting them fail with SQLITE_BUSY; more only
	// help reads, which every Acquire is not.
	MaxOpenConns int
	// Logger receives reaper failures; nil discards.
	Logger *slog.Logger
}

// Store is an idempotency.Store on a SQL database.
type Store struct {
	*sqlcore.Store
	db     *sql.DB
	owned  bool
	reaper *sqlcore.Reaper
	once   sync.Once
	// durability, durable: what checkDurability found (OpenURL).
	durability string
	durable    bool
}

var _ idempotency.Store = (*Store)(nil)

// New returns a Store on db, which the caller keeps owning (Close does not
// close it). It applies the embedded migrations unless SkipMigrations is
// set, and starts the reaper unless ReapInterval is negative.
//
// db must speak dialect. For PostgreSQL, any driver using $n parameters
// works (pgx's stdlib, lib/pq); for SQLite, any driver using ? (this
// package links modernc.org/sqlite as "sqlite"). Enable WAL and a busy
// timeout on SQLite connections, as OpenURL does.
func New(ctx context.Context, db *sql.DB, dialect Dialect, o Options) (*Store, error) {
	bind := sqlcore.BindQuestion
	if dialect == Postgres {
		bind = sqlcore.BindDollar
	}
	core, err := sqlcore.New(db, sqlcore.Config{Dialect: dialect, Bind: bind, Table: o.Table, Name: "sqlstore"})
	if err != nil {
		return nil, err
	}
	if !o.SkipMigrations {
		if err := sqlcore.Migrate(ctx, db, dialect, o.Table); err != nil {
			return nil, fmt.Errorf("sqlstore: %w", err)
		}
	}
	s := &Store{Store: core, db: db}
	if o.ReapInterval >= 0 {
		s.reaper = sqlcore.StartReaper(core, o.ReapInterval, o.ReapBatch, o.Logger)
	}
	return s, nil
}

// DB returns the underlying pool.
func (s *Store) DB() *sql.DB { return s.db }

// Close stops the reaper, releases prepared statements and, for a Store
// made by OpenURL, closes the pool. It is safe to call more than once.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		if s.reaper != nil {
			s.reaper.Stop()
		}
		err = s.Store.Close()
		if s.owned {
			err = errors.Join(err, s.db.Close())
		}
	})
	return err
}

// DDL returns the schema of table in dialect as one script, the same
// statements the embedded migrations apply.
func DDL(dialect Dialect, table string) (string, error) {
	if table == "" {
		table = DefaultTable
	}
	return sqlcore.DDL(dialect, table)
}
