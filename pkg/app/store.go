package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
	"github.com/gopotency/gopotency/pkg/store/redisstore"
	"github.com/gopotency/gopotency/pkg/store/sqlstore"
)

// StoreOptions tune the stores OpenStore opens from what the server
// knows (its policies).
type StoreOptions struct {
	// RestartGrace: see redisstore.Watch; the URL's restart_grace wins.
	RestartGrace time.Duration
}

// OpenStore opens the store a URL names and returns it with its closer.
func OpenStore(ctx context.Context, rawURL string, log *slog.Logger, so StoreOptions) (idempotency.Store, func() error, error) {
	scheme, _, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, nil, fmt.Errorf("store: %q is not a URL", redactURL(rawURL))
	}
	switch strings.ToLower(scheme) {
	case "memory", "mem":
		o, err := memstore.ParseURL(rawURL)
		if err != nil {
			return nil, nil, fmt.Errorf("store: %w", err)
		}
		s := memstore.New(o)
		return s, s.Close, nil
	case "redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel":
		s, err := redisstore.NewFromURL(ctx, rawURL, redisstore.Options{Logger: log, RestartGrace: so.RestartGrace})
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
	secret := u.User != nil
	q := u.Query()
	for k := range q {
		// libpq takes a password in the query too.
		if l := strings.ToLower(k); strings.Contains(l, "pass") || strings.Contains(l, "secret") || strings.Contains(l, "token") {
			q.Set(k, "xxxxx")
			u.RawQuery, secret = q.Encode(), true
		}
	}
	if !secret {
		return raw
	}
	return u.Redacted()
}

// endpointOf shows where spans go without what an OTLP endpoint may carry
// in its user part or query (a token).
func endpointOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		return raw
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// restartGrace covers what the Redis restart grace must: every lease held
// anywhere is renewed within a third of its length (the longest policy's),
// plus a renewal's own store time and a second of slack.
func restartGrace(cfg *config.Config) time.Duration {
	lease := cfg.Default.Lease
	for _, p := range cfg.Policies {
		lease = max(lease, p.Lease)
	}
	return lease/3 + 2*cfg.StoreTimeout + time.Second
}
