// Package testenv finds or starts the real services integration tests run
// against (Redis, Redis Cluster, PostgreSQL, Envoy).
//
// Each finder first reads its GOPOTENCY_TEST_* variable; when unset it
// starts the service itself if the binary is installed, else it skips the
// test. GOPOTENCY_REQUIRE_SERVICES=1 (set by .ci/run) turns every such skip
// into a failure, so CI can never pass without the real service.
package testenv

import (
	"os"
	"testing"
)

// RequireServices reports whether skips must become failures.
func RequireServices() bool { return os.Getenv("GOPOTENCY_REQUIRE_SERVICES") == "1" }

// Unavailable skips t, or fails it when services are required.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if RequireServices() {
		t.Fatalf("GOPOTENCY_REQUIRE_SERVICES=1 but "+format, args...)
	}
	t.Skipf(format, args...)
}
