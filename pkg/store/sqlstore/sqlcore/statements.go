package sqlcore

// The statements, written with PostgreSQL's $n parameters and compiled for
// each dialect and bind style. Times are unix milliseconds from the database
// clock ({NOW}); a row is live while {NOW} < expires_at (its retention).
// status IS NULL marks a claim, whose token is its owner and which is in
// flight while {NOW} < lease_until. A completed row keeps the token that
// completed it (rows completed before it did hold NULL), so a retry of a
// Complete whose first try landed can be told it succeeded; no statement
// changes a completed row. Excluded values are written excluded.col, which
// both dialects accept.

// claimPostgres is the whole Acquire in one statement and one round trip.
//
// The INSERT … ON CONFLICT is the claim: it inserts a new row, or replaces
// one past its retention, or (with $6, TakeOverExpired) takes over a claim
// of the same fingerprint whose lease ran out, atomically (the conflicting
// row is locked and its newest committed version re-checked by the WHERE).
// Only this statement ever grants ownership. A claim is kept for the
// retention ($5), its lease ($4) only says whether its holder is alive.
//
// When the claim fails, the second SELECT reports the row that beat us so
// the caller can tell Completed, InFlight, LeaseExpired and Mismatch apart.
// That SELECT reads the statement's snapshot, which may predate a row
// committed by a concurrent claim; it then returns nothing, or a dead
// version, and the caller simply runs the statement again. That retry
// decides nothing the claim did not: it can only report a state, or claim a
// key that has since become free.
const claimPostgres = `WITH claimed AS (
` + claimSQLite + `
	RETURNING 1
)
SELECT TRUE, {NOW}, 0, NULL, NULL, NULL, NULL, NULL, FALSE, 0, NULL FROM claimed
UNION ALL
SELECT FALSE, {NOW}, e.expires_at, e.lease_until, e.fingerprint, e.status, e.headers, e.body, e.too_large, e.mark, e.created_at
FROM "{TABLE}" e WHERE e.key = $1 AND NOT EXISTS (SELECT 1 FROM claimed)`

// claimSQLite is the claim itself, which claimPostgres wraps. SQLite has no
// data-modifying CTEs, so there the losing case is reported by lookup in a
// second statement, with the same retry rule as above when the row changed
// in between. (The database is in process, so the second statement costs
// no network round trip.)
const claimSQLite = `INSERT INTO "{TABLE}" AS e (key, fingerprint, token, status, headers, body, too_large, mark, created_at, updated_at, lease_until, expires_at)
VALUES ($1, $2, $3, NULL, NULL, NULL, FALSE, 0, NULL, {NOW}, {NOW} + $4, {NOW} + $5)
ON CONFLICT (key) DO UPDATE SET
	fingerprint = excluded.fingerprint, token = excluded.token, status = NULL,
	headers = NULL, body = NULL, too_large = FALSE, mark = 0, created_at = NULL,
	updated_at = excluded.updated_at, lease_until = excluded.lease_until, expires_at = excluded.expires_at
WHERE e.expires_at <= excluded.updated_at
	OR ($6 AND e.status IS NULL AND e.fingerprint = excluded.fingerprint AND COALESCE(e.lease_until, e.expires_at) <= excluded.updated_at)`

// lookup returns the row whatever its expiry, with the clock, so the caller
// judges liveness with the same clock the writes use. The token comes last
// (row.dest leaves it out: the claim's own report has none).
const lookup = `SELECT {NOW}, expires_at, lease_until, fingerprint, status, headers, body, too_large, mark, created_at, token
FROM "{TABLE}" WHERE key = $1`

// complete records the outcome of the claim of token $2: it succeeds while
// $2 holds the claim (lease running or not) and when no live row is there
// (the claim vanished: the record is stored under fingerprint $9). Another
// token's claim or a completed row leave it with no row changed; the caller
// then tells its own record from another token's (owner).
const complete = `INSERT INTO "{TABLE}" AS e (key, fingerprint, token, status, headers, body, too_large, mark, created_at, updated_at, lease_until, expires_at)
VALUES ($1, $9, $2, $3, $4, $5, $6, $10, $7, {NOW}, NULL, {NOW} + $8)
ON CONFLICT (key) DO UPDATE SET
	fingerprint = excluded.fingerprint, token = excluded.token, status = excluded.status, headers = excluded.headers,
	body = excluded.body, too_large = excluded.too_large, mark = excluded.mark, created_at = excluded.created_at,
	updated_at = excluded.updated_at, lease_until = NULL, expires_at = excluded.expires_at
WHERE (e.token = $2 AND e.status IS NULL) OR e.expires_at <= excluded.updated_at`

// release deletes the caller's own claim, even one whose lease ran out.
const release = `DELETE FROM "{TABLE}" WHERE key = $1 AND token = $2 AND status IS NULL`

// owner reads who holds a live key after complete or release changed
// nothing: no row (absent), or its token and whether it is completed.
const owner = `SELECT token, status IS NOT NULL FROM "{TABLE}" WHERE key = $1 AND expires_at > {NOW}`

// extend renews the claim of token $2 (lease running or not), keeping the
// row at least as long as the new lease, or re-creates a claim that
// vanished. Another token's claim or a completed row change nothing.
const extend = `INSERT INTO "{TABLE}" AS e (key, fingerprint, token, status, headers, body, too_large, mark, created_at, updated_at, lease_until, expires_at)
VALUES ($1, $4, $2, NULL, NULL, NULL, FALSE, 0, NULL, {NOW}, {NOW} + $3, {NOW} + $5)
ON CONFLICT (key) DO UPDATE SET
	fingerprint = excluded.fingerprint, token = excluded.token, status = NULL, headers = NULL, body = NULL,
	too_large = FALSE, mark = 0, created_at = NULL, updated_at = excluded.updated_at, lease_until = excluded.lease_until,
	expires_at = CASE WHEN e.expires_at <= excluded.updated_at THEN excluded.expires_at
		WHEN e.expires_at < excluded.lease_until THEN excluded.lease_until ELSE e.expires_at END
WHERE (e.token = $2 AND e.status IS NULL) OR e.expires_at <= excluded.updated_at`

const purge = `DELETE FROM "{TABLE}" WHERE key = $1`

// purgeSeen deletes the live row only while it is the entry the caller
// read: token $2 (NULL read as ”) in state $3 (idempotency.State: 1 in
// flight, 2 completed, 3 lease expired), judged as Get judges it. A row
// changed concurrently is re-checked in its newest version (PostgreSQL
// re-evaluates the WHERE after the row lock; SQLite has one writer).
const purgeSeen = `DELETE FROM "{TABLE}" WHERE key = $1 AND expires_at > {NOW} AND COALESCE(token, '') = $2
	AND (CASE WHEN status IS NOT NULL THEN 2 WHEN COALESCE(lease_until, expires_at) > {NOW} THEN 1 ELSE 3 END) = $3`

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
	claim, lookup, complete, release, owner, extend, purge, purgeSeen, reap stmt
}

func compileAll(d Dialect, b Bind, table string) statements {
	c := func(tmpl string) stmt { return compile(tmpl, d, b, table) }
	st := statements{
		lookup:    c(lookup),
		complete:  c(complete),
		release:   c(release),
		owner:     c(owner),
		extend:    c(extend),
		purge:     c(purge),
		purgeSeen: c(purgeSeen),
	}
	if d == Postgres {
		st.claim, st.reap = c(claimPostgres), c(reapPostgres)
	} else {
		st.claim, st.reap = c(claimSQLite), c(reapSQLite)
	}
	return st
}

func (st *statements) all() []stmt {
	return []stmt{st.claim, st.lookup, st.complete, st.release, st.owner, st.extend, st.purge, st.purgeSeen, st.reap}
}
