package testenv

import (
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/gopotency/gopotency/internal/pgserver"
)

// sharedPostgres starts the binary's shared cluster on first use.
var sharedPostgres = sync.OnceValues(func() (string, error) {
	s, err := pgserver.Start()
	if err != nil {
		return "", err
	}
	OnCleanup(s.Stop)
	return s.URL, nil
})

// Postgres returns the URL of a PostgreSQL database: GOPOTENCY_TEST_POSTGRES_URL,
// or a throwaway cluster this test binary starts once (internal/pgserver:
// initdb, then postgres on a free loopback port with fsync off) and stops
// at Cleanup. Tests share the database, so each must use tables of its own.
func Postgres(t testing.TB) string {
	t.Helper()
	SkipShort(t, "PostgreSQL")
	if u := os.Getenv("GOPOTENCY_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	if _, err := pgserver.BinDir(); errors.Is(err, pgserver.ErrNoBinaries) {
		Unavailable(t, "GOPOTENCY_TEST_POSTGRES_URL is unset and %v", err)
	}
	url, err := sharedPostgres()
	if err != nil {
		t.Fatalf("testenv: start postgres: %v", err)
	}
	return url
}
