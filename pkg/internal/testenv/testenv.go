// Package testenv is the environment this module's tests run in, the one
// internal test-support package: it finds or starts the real services
// integration tests run against (Redis, Redis Cluster, Redis Sentinel,
// PostgreSQL), stops them after the tests (Main), and makes the faults and
// credentials they need: a StallProxy that keeps connections open but
// stops answering, and throwaway certificate authorities (NewCA). The
// processes themselves are started and stopped by internal/proc, as the
// benchmark's and the demo's are. The suites library users run live
// elsewhere: pkg/store/storetest for stores, pkg/behaviortest for front
// ends.
//
// Each finder first reads its GOPOTENCY_TEST_* variable; when unset it
// starts the service itself if the binary is installed, else it skips the
// test. GOPOTENCY_REQUIRE_SERVICES=1 (set by .ci/run) turns every such skip
// into a failure, so CI can never pass without the real service.
//
// Under `go test -short` (make test-short) every finder skips its test at
// once, before looking at any variable, and GOPOTENCY_REQUIRE_SERVICES does
// not turn that skip into a failure: short mode is the developer explicitly
// asking for only the tests that need no service. Other helpers that run a
// service (the Envoy stack of pkg/e2e) call SkipShort the same way.
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

// SkipShort skips t under -short, whatever GOPOTENCY_REQUIRE_SERVICES says
// (see the package comment). Every finder calls it first; service names
// what t would have needed.
func SkipShort(t testing.TB, service string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("testenv: needs %s; skipped in -short mode, which runs only tests needing no service", service)
	}
}
