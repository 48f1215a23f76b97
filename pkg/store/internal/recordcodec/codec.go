// Package recordcodec converts idempotency.Record to and from its compact
// binary form, the gopotency.v1.Record protobuf message, for stores that
// keep records as opaque bytes (Redis).
package recordcodec

import (
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gopotency/gopotency/pkg/idempotency"
	gopotencyv1 "github.com/gopotency/gopotency/proto/gopotency/v1"
)

// ErrCorrupt is returned by Decode for bytes that are not a stored record.
var ErrCorrupt = errors.New("recordcodec: corrupt record")

// Marshal encodes rec. CreatedAt keeps millisecond precision; a zero
// CreatedAt is left unset so it decodes as the zero time again.
func Marshal(rec *idempotency.Record) ([]byte, error) {
	if rec == nil {
		return nil, errors.New("recordcodec: nil record")
	}
	if rec.Status < math.MinInt32 || rec.Status > math.MaxInt32 {
		return nil, fmt.Errorf("recordcodec: status %d out of range", rec.Status)
	}
	if !rec.Mark.Valid() {
		return nil, fmt.Errorf("recordcodec: invalid mark %v", rec.Mark)
	}
	m := &gopotencyv1.Record{
		Status:   int32(rec.Status),
		Body:     rec.Body,
		TooLarge: rec.Mark == idempotency.MarkTooLarge,
		Mark:     gopotencyv1.Mark(rec.Mark),
	}
	if len(rec.Headers) > 0 {
		m.Headers = make([]*gopotencyv1.Header, len(rec.Headers))
		for i, h := range rec.Headers {
			m.Headers[i] = &gopotencyv1.Header{Name: []byte(h.Name), Value: []byte(h.Value)}
		}
	}
	if !rec.CreatedAt.IsZero() {
		ms := rec.CreatedAt.UnixMilli()
		m.CreatedAtUnixMs = &ms
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("recordcodec: %w", err)
	}
	return b, nil
}

// Unmarshal decodes b. It never panics on arbitrary input; bytes that are not
// a record give an error wrapping ErrCorrupt. CreatedAt comes back in UTC.
func Unmarshal(b []byte) (*idempotency.Record, error) {
	var m gopotencyv1.Record
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	rec := &idempotency.Record{
		Status: int(m.GetStatus()),
		Body:   m.GetBody(),
		Mark:   idempotency.Mark(m.GetMark()),
	}
	if m.GetMark() == gopotencyv1.Mark_MARK_NONE && m.GetTooLarge() {
		rec.Mark = idempotency.MarkTooLarge // written before marks existed
	}
	if m.GetMark() < 0 || !rec.Mark.Valid() {
		return nil, fmt.Errorf("%w: unknown mark %d", ErrCorrupt, m.GetMark())
	}
	if len(m.Headers) > 0 {
		rec.Headers = make([]idempotency.Header, len(m.Headers))
		for i, h := range m.Headers {
			rec.Headers[i] = idempotency.Header{Name: string(h.GetName()), Value: string(h.GetValue())}
		}
	}
	if m.CreatedAtUnixMs != nil {
		rec.CreatedAt = time.UnixMilli(m.GetCreatedAtUnixMs()).UTC()
	}
	return rec, nil
}
