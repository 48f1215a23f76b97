-- Version 1: the idempotency table and the index the reaper scans.
--   key          opaque storage key: a hash, never the raw client key
--   fingerprint  request fingerprint, compared byte for byte
--   token        owner of an in-flight claim, NULL once completed
--   status       response status, NULL while in flight
--   headers      replayed headers, length-prefixed, in order
--   body         response body, NULL when empty or too large
--   too_large    tombstone: the body exceeded the cap
--   created_at   when the response was recorded
--   updated_at   last write
--   expires_at   lease deadline while in flight, retention deadline once completed
-- Times are unix milliseconds on the database clock.
CREATE TABLE IF NOT EXISTS "{TABLE}" (
    key         TEXT    NOT NULL PRIMARY KEY,
    fingerprint BLOB    NOT NULL,
    token       TEXT,
    status      INTEGER,
    headers     BLOB,
    body        BLOB,
    too_large   BOOLEAN NOT NULL DEFAULT 0,
    created_at  INTEGER,
    updated_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS "idx_{TABLE}_expires_at" ON "{TABLE}" (expires_at);
