package sqlcore

import (
	"database/sql"
	"fmt"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// row is a table row as read back, with the database clock of the read.
type row struct {
	now, expires  int64
	leaseUntil    sql.NullInt64
	fingerprint   []byte
	status        sql.NullInt64
	headers, body []byte
	tooLarge      bool
	mark          int64
	created       sql.NullInt64
	token         sql.NullString // read by lookup only
}

func (r *row) dest() []any {
	return []any{&r.now, &r.expires, &r.leaseUntil, &r.fingerprint, &r.status, &r.headers, &r.body, &r.tooLarge, &r.mark, &r.created}
}

// live: within its retention.
func (r *row) live() bool { return r.now < r.expires }

// lease is a claim's lease deadline; rows written before version 2 of the
// schema expire with their lease.
func (r *row) lease() int64 {
	if r.leaseUntil.Valid {
		return r.leaseUntil.Int64
	}
	return r.expires
}

func (r *row) record() (*idempotency.Record, error) {
	hs, err := decodeHeaders(r.headers)
	if err != nil {
		return nil, err
	}
	mark := idempotency.Mark(r.mark)
	if r.mark < 0 || r.mark > 255 || !mark.Valid() {
		return nil, fmt.Errorf("%w: unknown mark %d", idempotency.ErrCorruptRecord, r.mark)
	}
	if mark == idempotency.MarkNone && r.tooLarge {
		mark = idempotency.MarkTooLarge // written before marks existed
	}
	rec := &idempotency.Record{Status: int(r.status.Int64), Headers: hs, Body: nonEmpty(r.body), Mark: mark}
	if r.created.Valid {
		rec.CreatedAt = time.UnixMilli(r.created.Int64).UTC()
	}
	return rec, nil
}

// millis converts d to whole milliseconds, rounding a positive d up so a
// sub-millisecond lease is not an already-expired one.
func millis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// nonEmpty maps an empty body to nil, stored as NULL and read back as nil.
func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
