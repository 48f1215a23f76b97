package app

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// OpenStore opens the store a URL names and returns it with its closer.
func OpenStore(ctx context.Context, rawURL string) (idempotency.Store, func() error, error) {
	scheme, _, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, nil, fmt.Errorf("store: %q is not a URL", redactURL(rawURL))
	}
	switch strings.ToLower(scheme) {
	case "memory", "mem":
		s := memstore.New(memstore.Options{})
		return s, s.Close, nil
	}
	return nil, nil, fmt.Errorf("store: unsupported scheme %q (use memory://, redis://, rediss://, redis+cluster://, redis+sentinel://, postgres://, sqlite:///path)", scheme)
}

// redactURL hides credentials in a store URL before it is logged.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	if u.User == nil {
		return raw
	}
	return u.Redacted()
}
