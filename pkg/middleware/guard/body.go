package guard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// readBody reads at most limit+1 bytes of r's body for the fingerprint (one
// more than allowed, so the engine can tell an oversized body) and puts
// them back in front of the rest, so the handler still reads every byte.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	size := limit + 1
	if cl := r.ContentLength; cl >= 0 && cl < size {
		size = cl + 1 // room to see EOF without growing
	}
	buf := make([]byte, 0, size)
	src := io.LimitReader(r.Body, limit+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return nil, fmt.Errorf("%w: %w", idempotency.ErrRequestTooLarge, err)
			}
			return nil, fmt.Errorf("read request body: %w", err)
		}
	}
	r.Body = &rewound{Reader: io.MultiReader(bytes.NewReader(buf), r.Body), Closer: r.Body}
	return buf, nil
}

// rewound is the request body with the bytes already read put back.
type rewound struct {
	io.Reader
	io.Closer
}
