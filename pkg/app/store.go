package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
	"github.com/gopotency/gopotency/pkg/store/redisstore"
	"github.com/gopotency/gopotency/pkg/store/sqlstore"
)

// OpenStore opens the store a URL names and returns it with its closer.
func OpenStore(ctx context.Context, rawURL string, log *slog.Logger) (idempotency.Store, func() error, error) {
	scheme, _, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, nil, fmt.Errorf("store: %q is not a URL", redactURL(rawURL))
	}
	switch strings.ToLower(scheme) {
	case "memory", "mem":
		s := memstore.New(memstore.Options{})
		return s, s.Close, nil
	case "redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel":
		s, err := redisstore.NewFromURL(ctx, rawURL, redisstore.Options{Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("store: %w", err)
		}
		return s, s.Close, nil
	case "postgres", "postgresql", "sqlite":
		s, err := sqlstore.OpenURL(ctx, rawURL, sqlstore.Options{Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("store: %w", err)
		}
		return s, s.Close, nil
	}
	return nil, nil, fmt.Errorf("store: unsupported scheme %q (use memory://, redis://, rediss://, unix://, redis+cluster://, redis+sentinel://, postgres://, sqlite:///path)", scheme)
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
