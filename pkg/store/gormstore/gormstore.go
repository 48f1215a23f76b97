// Package gormstore is the idempotency.Store on a caller's *gorm.DB, for
// applications already on GORM: it shares their connection pool, logger
// and plugins. PostgreSQL (gorm.io/driver/postgres) and SQLite
// (github.com/glebarez/sqlite, pure Go; or gorm.io/driver/sqlite with cgo)
// are supported.
//
// It runs the same statements as sqlstore (package sqlstore/sqlcore): an
// atomic INSERT … ON CONFLICT claim (an expired lease is reported, or taken over on request),
// token-checked UPDATE/DELETE for completion and release, expiry checked on
// every read against the database clock, and a background reaper deleting
// expired rows in bounded batches. See sqlstore's documentation for the
// details and the DDL.
//
// The table is created only when asked: set Options.AutoMigrate to run
// GORM's AutoMigrate on Model, or apply sqlstore's DDL with your own
// migrations.
//
// gormstore links no database driver and does not import sqlstore: sqlstore
// links modernc.org/sqlite, which registers the database/sql name "sqlite"
// like github.com/glebarez/sqlite does, so one binary cannot hold both.
package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/sqlstore/sqlcore"
)

// DefaultTable is the table used when Options.Table is empty.
const DefaultTable = sqlcore.DefaultTable

// Options configure a Store. The zero value is ready to use.
type Options struct {
	// Table is the table name (DefaultTable when empty): 1 to 48 lower-case
	// letters, digits and underscores, not starting with a digit.
	Table string
	// AutoMigrate creates or updates the table with GORM's AutoMigrate
	// (inside a transaction; on PostgreSQL under an advisory lock, so
	// instances starting together do not race).
	AutoMigrate bool
	// ReapInterval is how often expired rows are deleted (30s when zero);
	// negative disables the reaper. Expiry is enforced on every read
	// regardless.
	ReapInterval time.Duration
	// ReapBatch bounds the rows one reap statement deletes (500 when zero).
	ReapBatch int
	// Logger receives reaper failures; nil discards. Statements are also
	// logged by the *gorm.DB's own logger.
	Logger *slog.Logger
}

// Model is the table row as GORM sees it, for AutoMigrate. The store reads
// and writes it with its own SQL, never through GORM's model methods.
// Times are unix milliseconds on the database clock.
type Model struct {
	Key         string  `gorm:"column:key;primaryKey;not null"`
	Fingerprint []byte  `gorm:"column:fingerprint;not null"`
	Token       *string `gorm:"column:token"`
	Status      *int32  `gorm:"column:status"`
	Headers     []byte  `gorm:"column:headers"`
	Body        []byte  `gorm:"column:body"`
	TooLarge    bool    `gorm:"column:too_large;type:boolean;not null;default:false"`
	Mark        int16   `gorm:"column:mark;not null;default:0"`
	RecordedAt  *int64  `gorm:"column:created_at"`
	WrittenAt   int64   `gorm:"column:updated_at;not null"`
	LeaseUntil  *int64  `gorm:"column:lease_until"`
	ExpiresAt   int64   `gorm:"column:expires_at;not null;index"`
}

// Store is an idempotency.Store on a *gorm.DB.
type Store struct {
	*sqlcore.Store
	reaper *sqlcore.Reaper
	once   sync.Once
}

var _ idempotency.Store = (*Store)(nil)

// New returns a Store on db. db stays the caller's: Close does not close
// it. A *gorm.DB inside a transaction binds the store to that transaction
// (useful in tests; a claim is only visible once it commits).
func New(ctx context.Context, db *gorm.DB, o Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("gormstore: nil *gorm.DB")
	}
	var d sqlcore.Dialect
	switch name := db.Dialector.Name(); name {
	case "postgres":
		d = sqlcore.Postgres
	case "sqlite":
		d = sqlcore.SQLite
	default:
		return nil, fmt.Errorf("gormstore: unsupported dialect %q (want postgres or sqlite)", name)
	}
	if o.Table == "" {
		o.Table = DefaultTable
	}
	db = db.Session(&gorm.Session{NewDB: true})
	// GORM rewrites ? for its dialect ($n on PostgreSQL).
	core, err := sqlcore.New(conn{db}, sqlcore.Config{Dialect: d, Bind: sqlcore.BindQuestion, Table: o.Table, Name: "gormstore"})
	if err != nil {
		return nil, err
	}
	if o.AutoMigrate {
		if err := autoMigrate(ctx, db, d, o.Table); err != nil {
			return nil, err
		}
	}
	s := &Store{Store: core}
	if o.ReapInterval >= 0 {
		s.reaper = sqlcore.StartReaper(core, o.ReapInterval, o.ReapBatch, o.Logger)
	}
	return s, nil
}

// Close stops the reaper. It is safe to call more than once.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		if s.reaper != nil {
			s.reaper.Stop()
		}
		err = s.Store.Close()
	})
	return err
}

func autoMigrate(ctx context.Context, db *gorm.DB, d sqlcore.Dialect, table string) error {
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if d == sqlcore.Postgres {
			if err := tx.Exec("SELECT pg_advisory_xact_lock(hashtext(?))", "gopotency/gormstore/"+table).Error; err != nil {
				return err
			}
		}
		return tx.Table(table).AutoMigrate(&Model{})
	})
	if err != nil {
		return fmt.Errorf("gormstore: auto-migrate %s: %w", table, err)
	}
	return nil
}

// conn runs sqlcore's statements through GORM, so they pass its callbacks
// and logger like the application's own queries.
type conn struct{ db *gorm.DB }

func (c conn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	r := c.db.WithContext(ctx).Exec(query, args...)
	if r.Error != nil {
		return nil, r.Error
	}
	return result(r.RowsAffected), nil
}

func (c conn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return c.db.WithContext(ctx).Raw(query, args...).Rows()
}

type result int64

func (r result) LastInsertId() (int64, error) { return 0, errors.New("gormstore: no insert ids") }
func (r result) RowsAffected() (int64, error) { return int64(r), nil }
