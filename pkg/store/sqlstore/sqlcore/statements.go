package sqlcore

// The statements, written with PostgreSQL's $n parameters and compiled for
// each dialect and bind style. Times are unix milliseconds from the database
// clock ({NOW}); a row is live while {NOW} < expires_at. status IS NULL
// marks an in-flight claim, whose token is its owner; a completed row has a
// NULL token, so no token can touch it again.

// claimPostgres is the whole Acquire in one statement and one round trip.
//
// The INSERT … ON CONFLICT is the claim: it inserts a new row, or takes over
// an expired one, atomically (the conflicting row is locked and its newest
// committed version re-checked by the WHERE). Only this statement ever
// grants ownership.
//
// When the claim fails, the second SELECT reports the row that beat us so
// the caller can tell Completed, InFlight and Mismatch apart. That SELECT
// reads the statement's snapshot, which may predate a row committed by a
// concurrent claim; it then returns nothing, or an expired version, and the
// caller simply runs the statement again. That retry decides nothing the
// claim did not: it can only report a state, or claim a key that has since
// become free.
const claimPostgres = `WITH claimed AS (
	INSERT INTO "{TABLE}" AS e (key, fingerprint, token, status, headers, body, too_large, created_at, updated_at, expires_at)
	VALUES ($1, $2, $3, NULL, NULL, NULL, FALSE, NULL, {NOW}, {NOW} + $4)
	ON CONFLICT (key) DO UPDATE SET
		fingerprint = EXCLUDED.fingerprint, token = EXCLUDED.token, status = NULL,
		headers = NULL, body = NULL, too_large = FALSE, created_at = NULL,
		updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at
	WHERE e.expires_at <= EXCLUDED.updated_at
	RETURNING 1
)
SELECT TRUE, {NOW}, 0, NULL, NULL, NULL, NULL, FALSE, NULL FROM claimed
UNION ALL
SELECT FALSE, {NOW}, e.expires_at, e.fingerprint, e.status, e.headers, e.body, e.too_large, e.created_at
FROM "{TABLE}" e WHERE e.key = $1 AND NOT EXISTS (SELECT 1 FROM claimed)`

// claimSQLite is the same claim. SQLite has no data-modifying CTEs, so the
// losing case is reported by lookup in a second statement, with the same
// retry rule as above when the row changed in between. (The database is in
// process, so the second statement costs no network round trip.)
const claimSQLite = `INSERT INTO "{TABLE}" AS e (key, fingerprint, token, status, headers, body, too_large, created_at, updated_at, expires_at)
VALUES ($1, $2, $3, NULL, NULL, NULL, 0, NULL, {NOW}, {NOW} + $4)
ON CONFLICT (key) DO UPDATE SET
	fingerprint = excluded.fingerprint, token = excluded.token, status = NULL,
	headers = NULL, body = NULL, too_large = 0, created_at = NULL,
	updated_at = excluded.updated_at, expires_at = excluded.expires_at
WHERE e.expires_at <= excluded.updated_at`

// lookup returns the row whatever its expiry, with the clock, so the caller
// judges liveness with the same clock the writes use.
const lookup = `SELECT {NOW}, expires_at, fingerprint, status, headers, body, too_large, created_at
FROM "{TABLE}" WHERE key = $1`

// complete fences on the token and on the lease still running.
const complete = `UPDATE "{TABLE}" SET token = NULL, status = $3, headers = $4, body = $5,
	too_large = $6, created_at = $7, updated_at = {NOW}, expires_at = {NOW} + $8
WHERE key = $1 AND token = $2 AND status IS NULL AND expires_at > {NOW}`

// release deletes the caller's own claim, even an expired one (it is
// absent to everyone else already, so this only tidies up).
const release = `DELETE FROM "{TABLE}" WHERE key = $1 AND token = $2 AND status IS NULL`

// liveExists tells an unowned key from an absent one after release missed.
const liveExists = `SELECT 1 FROM "{TABLE}" WHERE key = $1 AND expires_at > {NOW}`

const extend = `UPDATE "{TABLE}" SET expires_at = {NOW} + $3, updated_at = {NOW}
WHERE key = $1 AND token = $2 AND status IS NULL AND expires_at > {NOW}`

const purge = `DELETE FROM "{TABLE}" WHERE key = $1`

// reapPostgres deletes a bounded batch of expired rows. SKIP LOCKED lets
// several reapers (one per server) share the work without waiting on each
// other or on claims. The outer expiry test is re-checked against the
// newest row version after locking, so a row taken over meanwhile (its
// expires_at moved into the future) is never deleted.
const reapPostgres = `DELETE FROM "{TABLE}" WHERE key IN (
	SELECT key FROM "{TABLE}" WHERE expires_at <= {NOW} LIMIT $1 FOR UPDATE SKIP LOCKED
) AND expires_at <= {NOW}`

// reapSQLite runs under SQLite's single writer lock, so nothing can change
// between the inner SELECT and the DELETE.
const reapSQLite = `DELETE FROM "{TABLE}" WHERE key IN (
	SELECT key FROM "{TABLE}" WHERE expires_at <= {NOW} LIMIT $1
)`

// statements holds every statement compiled for one Store.
type statements struct {
	claim, lookup, complete, release, liveExists, extend, purge, reap stmt
}

func compileAll(d Dialect, b Bind, table string) statements {
	c := func(tmpl string) stmt { return compile(tmpl, d, b, table) }
	st := statements{
		lookup:     c(lookup),
		complete:   c(complete),
		release:    c(release),
		liveExists: c(liveExists),
		extend:     c(extend),
		purge:      c(purge),
	}
	if d == Postgres {
		st.claim, st.reap = c(claimPostgres), c(reapPostgres)
	} else {
		st.claim, st.reap = c(claimSQLite), c(reapSQLite)
	}
	return st
}

func (st *statements) all() []stmt {
	return []stmt{st.claim, st.lookup, st.complete, st.release, st.liveExists, st.extend, st.purge, st.reap}
}
