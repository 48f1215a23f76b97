package recordcodec

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/gopotency/gopotency/pkg/idempotency"
	gopotencyv1 "github.com/gopotency/gopotency/proto/gopotency/v1"
)

func TestRoundTrip(t *testing.T) {
	created := time.Date(2026, 3, 1, 12, 30, 45, 123_000_000, time.UTC)
	cases := map[string]*idempotency.Record{
		"full": {
			Status: 201,
			Headers: []idempotency.Header{
				{Name: "Content-Type", Value: "application/json"},
				{Name: "Set-Cookie", Value: "a=1"},
				{Name: "Set-Cookie", Value: "b=2"},
				{Name: "X-Obs-Text", Value: "caf\xe9"}, // not UTF-8: must survive
				{Name: "X-Empty", Value: ""},
			},
			Body:      []byte(`{"id":42}`),
			CreatedAt: created,
		},
		"tombstone":   {Status: 200, Mark: idempotency.MarkTooLarge, CreatedAt: created},
		"incomplete":  {Status: 201, Mark: idempotency.MarkIncomplete, Headers: []idempotency.Header{{Name: "Location", Value: "/o/1"}}, CreatedAt: created},
		"unknown":     {Mark: idempotency.MarkUnknown, CreatedAt: created},
		"evicted":     {Status: 202, Mark: idempotency.MarkEvicted, CreatedAt: created},
		"zero time":   {Status: 204},
		"epoch":       {Status: 200, CreatedAt: time.UnixMilli(0).UTC()},
		"binary body": {Status: 200, Body: []byte{0, 1, 2, 0xff}, CreatedAt: created},
	}
	for name, rec := range cases {
		t.Run(name, func(t *testing.T) {
			b, err := Marshal(rec)
			require.NoError(t, err)
			got, err := Unmarshal(b)
			require.NoError(t, err)
			assert.Equal(t, rec, got)
		})
	}
}

// A tombstone written before marks existed (too_large only) still reads
// as one: an upgrade must not turn it into a replayable empty response.
func TestUnmarshalLegacyTombstone(t *testing.T) {
	b, err := proto.Marshal(&gopotencyv1.Record{Status: 200, TooLarge: true})
	require.NoError(t, err)
	got, err := Unmarshal(b)
	require.NoError(t, err)
	assert.Equal(t, idempotency.MarkTooLarge, got.Mark)
}

func TestUnmarshalUnknownMarkIsCorrupt(t *testing.T) {
	b, err := proto.Marshal(&gopotencyv1.Record{Status: 200, Mark: 99})
	require.NoError(t, err)
	_, err = Unmarshal(b)
	assert.ErrorIs(t, err, ErrCorrupt, "a mark from a newer version must not replay as a response")
}

func TestMarshalKeepsMilliseconds(t *testing.T) {
	in := time.Date(2026, 1, 2, 3, 4, 5, 6_789_999, time.FixedZone("x", 3600))
	b, err := Marshal(&idempotency.Record{Status: 200, CreatedAt: in})
	require.NoError(t, err)
	got, err := Unmarshal(b)
	require.NoError(t, err)
	assert.True(t, got.CreatedAt.Equal(in.Truncate(time.Millisecond)), "got %v", got.CreatedAt)
}

func TestMarshalRejects(t *testing.T) {
	_, err := Marshal(nil)
	assert.Error(t, err)
	_, err = Marshal(&idempotency.Record{Status: 1 << 40})
	assert.Error(t, err)
	_, err = Marshal(&idempotency.Record{Status: 200, Mark: 99})
	assert.Error(t, err)
}

func TestUnmarshalCorrupt(t *testing.T) {
	_, err := Unmarshal([]byte{0x0a, 0xff}) // field 1 as a truncated length-delimited value
	assert.ErrorIs(t, err, ErrCorrupt)
}

// FuzzUnmarshal feeds garbage to the decoder: it must never panic, and
// whatever it accepts must survive a second round trip unchanged.
func FuzzUnmarshal(f *testing.F) {
	seed, err := Marshal(&idempotency.Record{
		Status:    200,
		Headers:   []idempotency.Header{{Name: "A", Value: "b"}},
		Body:      []byte("hi"),
		CreatedAt: time.UnixMilli(1_700_000_000_000),
	})
	require.NoError(f, err)
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff})
	f.Add([]byte{0x28, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := Unmarshal(b)
		if err != nil {
			return
		}
		again, err := Marshal(rec)
		if err != nil {
			return // e.g. a status outside int range cannot be written back
		}
		rec2, err := Unmarshal(again)
		require.NoError(t, err)
		assert.Equal(t, rec, rec2)
		again2, err := Marshal(rec2)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(again, again2), "encoding is not stable")
	})
}

// protoRecord is what Marshal encodes, built as a message: proto.Marshal
// of it is the reference Marshal's bytes must equal.
func protoRecord(rec *idempotency.Record) *gopotencyv1.Record {
	m := &gopotencyv1.Record{Status: int32(rec.Status), Body: rec.Body, TooLarge: rec.Mark == idempotency.MarkTooLarge, Mark: gopotencyv1.Mark(rec.Mark)}
	for _, h := range rec.Headers {
		m.Headers = append(m.Headers, &gopotencyv1.Header{Name: []byte(h.Name), Value: []byte(h.Value)})
	}
	if !rec.CreatedAt.IsZero() {
		ms := rec.CreatedAt.UnixMilli()
		m.CreatedAtUnixMs = &ms
	}
	return m
}

// Marshal writes the protobuf encoding by hand: byte for byte what
// proto.Marshal writes, so records stay readable by any version.
func TestMarshalMatchesProto(t *testing.T) {
	created := time.Date(2026, 3, 1, 12, 30, 45, 123_000_000, time.UTC)
	big := bytes.Repeat([]byte("x"), 70_000) // a length of three varint bytes
	cases := map[string]*idempotency.Record{
		"full":             {Status: 201, Headers: []idempotency.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "X-Empty", Value: ""}, {Name: "", Value: "v"}, {}}, Body: []byte(`{"id":42}`), CreatedAt: created},
		"negative status":  {Status: -5, CreatedAt: created},
		"max status":       {Status: math.MaxInt32, Body: big},
		"tombstone":        {Status: 200, Mark: idempotency.MarkTooLarge, CreatedAt: created},
		"incomplete":       {Status: 201, Mark: idempotency.MarkIncomplete, Headers: []idempotency.Header{{Name: "Location", Value: "/o/1"}}},
		"unknown":          {Mark: idempotency.MarkUnknown, CreatedAt: created},
		"evicted":          {Status: 202, Mark: idempotency.MarkEvicted},
		"empty":            {},
		"epoch":            {Status: 200, CreatedAt: time.UnixMilli(0).UTC()},
		"before the epoch": {Status: 200, CreatedAt: time.UnixMilli(-1).UTC()},
		"long header":      {Status: 200, Headers: []idempotency.Header{{Name: "X-Long", Value: string(big[:300])}}},
	}
	for name, rec := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := Marshal(rec)
			require.NoError(t, err)
			want, err := proto.Marshal(protoRecord(rec))
			require.NoError(t, err)
			assert.Equal(t, want, got)
		})
	}
}

func BenchmarkMarshal(b *testing.B) {
	rec := &idempotency.Record{Status: 201, Headers: []idempotency.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Location", Value: "/orders/1"}}, Body: bytes.Repeat([]byte("x"), 213), CreatedAt: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Marshal(rec); err != nil {
			b.Fatal(err)
		}
	}
}
