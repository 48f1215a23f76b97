// Package recordcodec converts idempotency.Record to and from its compact
// binary form, the gopotency.v1.Record protobuf message, for stores that
// keep records as opaque bytes (Redis).
package recordcodec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/gopotency/gopotency/pkg/idempotency"
	gopotencyv1 "github.com/gopotency/gopotency/proto/gopotency/v1"
)

// ErrCorrupt is returned by Decode for bytes that are not a stored record.
var ErrCorrupt = errors.New("recordcodec: corrupt record")

// Marshal encodes rec. CreatedAt keeps millisecond precision; a zero
// CreatedAt is left unset so it decodes as the zero time again.
//
// It writes the bytes proto.Marshal writes for the equivalent
// gopotencyv1.Record (fields in number order, proto3 defaults omitted;
// TestMarshalMatchesProto holds it to that) into one buffer: building the
// message first cost three allocations per header on every first request.
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
	size := 2*(1+binary.MaxVarintLen64) + 4 + len(rec.Body) + binary.MaxVarintLen64 + 1 + binary.MaxVarintLen64
	for _, h := range rec.Headers {
		size += 3*(1+binary.MaxVarintLen64) + len(h.Name) + len(h.Value)
	}
	b := make([]byte, 0, size)
	if rec.Status != 0 {
		b = protowire.AppendTag(b, fieldStatus, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(rec.Status)))
	}
	for _, h := range rec.Headers {
		n := 0
		if h.Name != "" {
			n += 1 + protowire.SizeBytes(len(h.Name))
		}
		if h.Value != "" {
			n += 1 + protowire.SizeBytes(len(h.Value))
		}
		b = protowire.AppendTag(b, fieldHeaders, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		if h.Name != "" {
			b = protowire.AppendTag(b, fieldHeaderName, protowire.BytesType)
			b = protowire.AppendString(b, h.Name)
		}
		if h.Value != "" {
			b = protowire.AppendTag(b, fieldHeaderValue, protowire.BytesType)
			b = protowire.AppendString(b, h.Value)
		}
	}
	if len(rec.Body) > 0 {
		b = protowire.AppendTag(b, fieldBody, protowire.BytesType)
		b = protowire.AppendBytes(b, rec.Body)
	}
	if rec.Mark == idempotency.MarkTooLarge {
		b = protowire.AppendTag(b, fieldTooLarge, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if !rec.CreatedAt.IsZero() {
		b = protowire.AppendTag(b, fieldCreatedAt, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(rec.CreatedAt.UnixMilli()))
	}
	if rec.Mark != idempotency.MarkNone {
		b = protowire.AppendTag(b, fieldMark, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(rec.Mark)))
	}
	return b, nil
}

// Field numbers of gopotency.v1.Record and gopotency.v1.Header.
const (
	fieldStatus      protowire.Number = 1
	fieldHeaders     protowire.Number = 2
	fieldBody        protowire.Number = 3
	fieldTooLarge    protowire.Number = 4
	fieldCreatedAt   protowire.Number = 5
	fieldMark        protowire.Number = 6
	fieldHeaderName  protowire.Number = 1
	fieldHeaderValue protowire.Number = 2
)

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
