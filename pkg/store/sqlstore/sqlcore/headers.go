package sqlcore

import (
	"encoding/binary"
	"fmt"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Headers are stored as one blob so repeated fields keep their order and
// raw bytes (header values may hold obs-text, which a JSON or text column
// would not round-trip):
//
//	version byte (1) | uvarint count | count × (uvarint len, name, uvarint len, value)
//
// No headers are stored as NULL.
const headersV1 = 1

// errCorruptHeaders is an idempotency.ErrCorruptRecord, so callers can tell
// an unreadable entry from an unreachable database.
var errCorruptHeaders = fmt.Errorf("%w: corrupt headers column", idempotency.ErrCorruptRecord)

func encodeHeaders(hs []idempotency.Header) []byte {
	if len(hs) == 0 {
		return nil
	}
	n := 1 + binary.MaxVarintLen64
	for _, h := range hs {
		n += 2*binary.MaxVarintLen64 + len(h.Name) + len(h.Value)
	}
	b := make([]byte, 0, n)
	b = append(b, headersV1)
	b = binary.AppendUvarint(b, uint64(len(hs)))
	for _, h := range hs {
		b = binary.AppendUvarint(b, uint64(len(h.Name)))
		b = append(b, h.Name...)
		b = binary.AppendUvarint(b, uint64(len(h.Value)))
		b = append(b, h.Value...)
	}
	return b
}

func decodeHeaders(b []byte) ([]idempotency.Header, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != headersV1 {
		return nil, fmt.Errorf("%w: version %d", errCorruptHeaders, b[0])
	}
	b = b[1:]
	count, err := uvarint(&b)
	// Each header takes at least two bytes, which bounds the allocation
	// whatever the count claims.
	if err != nil || count > uint64(len(b))/2 {
		return nil, fmt.Errorf("%w: bad count", errCorruptHeaders)
	}
	hs := make([]idempotency.Header, 0, count)
	for range count {
		name, err := field(&b)
		if err != nil {
			return nil, err
		}
		value, err := field(&b)
		if err != nil {
			return nil, err
		}
		hs = append(hs, idempotency.Header{Name: name, Value: value})
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCorruptHeaders, len(b))
	}
	return hs, nil
}

func uvarint(b *[]byte) (uint64, error) {
	v, n := binary.Uvarint(*b)
	if n <= 0 {
		return 0, fmt.Errorf("%w: bad length", errCorruptHeaders)
	}
	*b = (*b)[n:]
	return v, nil
}

func field(b *[]byte) (string, error) {
	n, err := uvarint(b)
	if err != nil {
		return "", err
	}
	if n > uint64(len(*b)) {
		return "", fmt.Errorf("%w: field overruns the blob", errCorruptHeaders)
	}
	s := string((*b)[:n])
	*b = (*b)[n:]
	return s, nil
}
