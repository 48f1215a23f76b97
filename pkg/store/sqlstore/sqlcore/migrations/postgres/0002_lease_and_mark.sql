-- Version 2: a claim's lease apart from its retention, and record marks.
--   lease_until  lease deadline of an in-flight claim, NULL once completed;
--                expires_at is now the retention deadline of claims too, so a
--                claim whose holder died stays visible as "lease expired"
--   mark         what a record stands for when it is not a whole response
--                (idempotency.Mark: 1 too large, 2 incomplete, 3 unknown,
--                4 evicted); too_large is still written for mark 1
ALTER TABLE "{TABLE}" ADD COLUMN IF NOT EXISTS lease_until BIGINT;
ALTER TABLE "{TABLE}" ADD COLUMN IF NOT EXISTS mark SMALLINT NOT NULL DEFAULT 0;
UPDATE "{TABLE}" SET lease_until = expires_at WHERE status IS NULL AND lease_until IS NULL;
UPDATE "{TABLE}" SET mark = 1 WHERE too_large AND mark = 0;
