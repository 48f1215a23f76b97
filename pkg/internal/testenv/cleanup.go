package testenv

import (
	"os"
	"sync"
	"testing"
)

// Services started by a finder are shared by every test of the test binary,
// so they outlive any one test's t.Cleanup. Finders register their teardown
// here and the package's TestMain runs it once, after all tests:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

// OnCleanup registers fn to run at Cleanup. Functions run in reverse order
// of registration, like defers.
func OnCleanup(fn func()) {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	cleanups = append(cleanups, fn)
}

// Cleanup stops every service the finders started. It is safe to call more
// than once; each function runs once.
func Cleanup() {
	cleanupMu.Lock()
	fns := cleanups
	cleanups = nil
	cleanupMu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// Main runs the tests, then Cleanup, then exits with the tests' status. Use
// it as the whole TestMain of a package whose tests start services.
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}
