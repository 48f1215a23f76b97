// Package sqlstore is the idempotency.Store on PostgreSQL or SQLite, for
// teams that already run PostgreSQL or want a single-file store without
// Redis. It uses database/sql with pgx's stdlib driver for PostgreSQL and
// modernc.org/sqlite (pure Go, no cgo) for SQLite:
//
//	s, err := sqlstore.OpenURL(ctx, "postgres://app@db:5432/app", sqlstore.Options{})
//	s, err := sqlstore.OpenURL(ctx, "sqlite:///var/lib/gopotency/keys.db", sqlstore.Options{})
//
// # How it keeps the contract
//
// Acquire is one INSERT … ON CONFLICT (key) DO UPDATE … WHERE <the existing
// row is past its retention, or (when asked) is a claim whose lease ran
// out>: it inserts a claim for a new key, or takes a dead one over,
// atomically, and nothing else ever grants a claim. On PostgreSQL the same
// statement also returns the row that beat it (one round trip); on SQLite a
// second statement reads it. Complete and Extend are upserts whose DO
// UPDATE only applies while token = ? still holds the claim (or the row is
// gone), and Release is DELETE … WHERE token = ?, so a fenced-off token
// changes nothing, and a claim that vanished is re-created by its holder.
//
// Time is the database's clock, in unix milliseconds: statement_timestamp()
// on PostgreSQL, so servers with skewed clocks still agree, and 'now' on
// SQLite (the host clock). Every read treats a row whose expires_at has
// passed as absent; a background reaper only reclaims space, deleting
// expired rows in bounded batches (Options.ReapInterval, ReapBatch).
//
// # Schema
//
// OpenURL and New create and upgrade the table with embedded, versioned
// migrations recorded in "<table>_migrations". Teams that manage schemas
// themselves set Options.SkipMigrations and apply the DDL below (DDL
// returns it for any table name, with a comment on each column). Times are
// unix milliseconds on the database clock; status IS NULL marks a claim,
// owned by token and in flight until lease_until; a completed row keeps
// the token that completed it (so that token's retried Complete succeeds)
// but no statement changes it; expires_at is the retention deadline of
// both.
// PostgreSQL:
//
//	CREATE TABLE IF NOT EXISTS "gopotency_keys" (
//	    key         TEXT    NOT NULL PRIMARY KEY,
//	    fingerprint BYTEA   NOT NULL,
//	    token       TEXT,
//	    status      INTEGER,
//	    headers     BYTEA,
//	    body        BYTEA,
//	    too_large   BOOLEAN NOT NULL DEFAULT FALSE,
//	    created_at  BIGINT,
//	    updated_at  BIGINT  NOT NULL,
//	    expires_at  BIGINT  NOT NULL
//	);
//	CREATE INDEX IF NOT EXISTS "idx_gopotency_keys_expires_at" ON "gopotency_keys" (expires_at);
//	ALTER TABLE "gopotency_keys" ADD COLUMN IF NOT EXISTS lease_until BIGINT;
//	ALTER TABLE "gopotency_keys" ADD COLUMN IF NOT EXISTS mark SMALLINT NOT NULL DEFAULT 0;
//	UPDATE "gopotency_keys" SET lease_until = expires_at WHERE status IS NULL AND lease_until IS NULL;
//	UPDATE "gopotency_keys" SET mark = 1 WHERE too_large AND mark = 0;
//
// SQLite:
//
//	CREATE TABLE IF NOT EXISTS "gopotency_keys" (
//	    key         TEXT    NOT NULL PRIMARY KEY,
//	    fingerprint BLOB    NOT NULL,
//	    token       TEXT,
//	    status      INTEGER,
//	    headers     BLOB,
//	    body        BLOB,
//	    too_large   BOOLEAN NOT NULL DEFAULT 0,
//	    created_at  INTEGER,
//	    updated_at  INTEGER NOT NULL,
//	    expires_at  INTEGER NOT NULL
//	);
//	CREATE INDEX IF NOT EXISTS "idx_gopotency_keys_expires_at" ON "gopotency_keys" (expires_at);
//	ALTER TABLE "gopotency_keys" ADD COLUMN lease_until INTEGER;
//	ALTER TABLE "gopotency_keys" ADD COLUMN mark INTEGER NOT NULL DEFAULT 0;
//	UPDATE "gopotency_keys" SET lease_until = expires_at WHERE status IS NULL AND lease_until IS NULL;
//	UPDATE "gopotency_keys" SET mark = 1 WHERE too_large AND mark = 0;
//
// The headers column holds a version byte (1), a uvarint count, then for
// each header a uvarint length and the name, a uvarint length and the
// value, so repeated headers keep their order and exact bytes.
//
// # Linking
//
// This package links modernc.org/sqlite, which registers the database/sql
// driver name "sqlite". So does github.com/glebarez/sqlite (GORM's pure-Go
// SQLite driver), and database/sql panics on a duplicate name: a binary
// cannot link both. Applications on GORM use gormstore instead, which links
// no driver of its own.
package sqlstore
