package sqlcore

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// row is a table row as read back, with the database clock of the read.
type row struct {
	now, expires  int64
	fingerprint   []byte
	status        sql.NullInt64
	headers, body []byte
	tooLarge      bool
	created       sql.NullInt64
}

func (r *row) dest() []any {
	return []any{&r.now, &r.expires, &r.fingerprint, &r.status, &r.headers, &r.body, &r.tooLarge, &r.created}
}

func (r *row) live() bool { return r.now < r.expires }

func (r *row) record() (*idempotency.Record, error) {
	hs, err := decodeHeaders(r.headers)
	if err != nil {
		return nil, err
	}
	rec := &idempotency.Record{Status: int(r.status.Int64), Headers: hs, Body: nonEmpty(r.body), TooLarge: r.tooLarge}
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

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
