// The module's dependency rule, checked over the whole module from its
// root (this was the package pkg/internal/deps): heavy dependencies (web
// frameworks, GORM, SQL drivers) may be imported only by the leaf package
// that adapts them, so the server binary and the light library packages
// stay light. It is a test alone, so it lives beside go.mod rather than in
// a package of its own.
package gopotency_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/gopotency/gopotency/"

// leaves maps each heavy dependency (a module path prefix) to the only
// packages of this module that may import it.
var leaves = map[string][]string{
	"github.com/gin-gonic/":       {"pkg/middleware/ginmw"},
	"github.com/labstack/echo":    {"pkg/middleware/echomw"},
	"github.com/gofiber/":         {"pkg/middleware/fibermw"},
	"github.com/valyala/fasthttp": {"pkg/middleware/fibermw"},
	"gorm.io/":                    {"pkg/store/gormstore"},
	"github.com/glebarez/":        {"pkg/store/gormstore"},
	"github.com/jackc/pgx":        {"pkg/store/sqlstore"},
	"modernc.org/sqlite":          {"pkg/store/sqlstore"},
	// OpenTelemetry stays out of the core: one package adapts it.
	"go.opentelemetry.io/": {"pkg/tracing"},
}

// goList runs go list in the module root and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), append([]string{"list"}, args...)...)
	cmd.Dir = "."
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(strings.TrimSpace(string(out)))
}

func heavy(path string) (string, bool) {
	for prefix := range leaves {
		if strings.HasPrefix(path, prefix) {
			return prefix, true
		}
	}
	return "", false
}

// TestHeavyImportsOnlyInLeaves: no package of the module but a heavy
// dependency's own adapter imports it (tests are free to).
func TestHeavyImportsOnlyInLeaves(t *testing.T) {
	for _, line := range strings.Split(strings.Join(goList(t, "-f", `{{.ImportPath}}{{range .Imports}},{{.}}{{end}}`, "./..."), "\n"), "\n") {
		parts := strings.Split(line, ",")
		pkg := strings.TrimPrefix(parts[0], module)
		for _, imp := range parts[1:] {
			if prefix, ok := heavy(imp); ok && !slices.ContainsFunc(leaves[prefix], func(l string) bool { return pkg == l || strings.HasPrefix(pkg, l+"/") }) {
				t.Errorf("%s imports %s; only %v may", pkg, imp, leaves[prefix])
			}
		}
	}
}

// TestLightDependencies: what the server binary and the light library
// packages link.
func TestLightDependencies(t *testing.T) {
	for _, tc := range []struct {
		pkg string
		// allowed non-standard dependencies (prefixes); nil means only the
		// heavy ones are checked.
		only []string
		// heavy dependencies it must not link even indirectly
		not []string
	}{
		// The server links the SQL drivers through sqlstore (postgres://,
		// sqlite:// store URLs) but no web framework and no GORM.
		{pkg: "./cmd/gopotency", not: []string{"github.com/gin-gonic/", "github.com/labstack/echo", "github.com/gofiber/", "github.com/valyala/fasthttp", "gorm.io/", "github.com/glebarez/"}},
		{pkg: "./pkg/idempotency", only: []string{module + "pkg/idempotency"}},
		{pkg: "./pkg/idempotent", only: []string{module + "pkg/idempotency", module + "pkg/idempotent"}},
		{pkg: "./pkg/middleware/guard", only: []string{module + "pkg/idempotency", module + "pkg/middleware/guard"}},
		{pkg: "./pkg/middleware/stdhttp", only: []string{module + "pkg/idempotency", module + "pkg/middleware/"}},
		{pkg: "./pkg/middleware/grpcmw", not: slices.Collect(func(yield func(string) bool) {
			for p := range leaves {
				if !yield(p) {
					return
				}
			}
		})},
	} {
		t.Run(strings.TrimPrefix(tc.pkg, "./"), func(t *testing.T) {
			deps := goList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", tc.pkg)
			if len(deps) == 0 {
				t.Fatalf("go list found no dependencies of %s", tc.pkg)
			}
			for _, d := range deps {
				if tc.only != nil && !slices.ContainsFunc(tc.only, func(p string) bool { return strings.HasPrefix(d, p) }) {
					t.Errorf("%s links %s; it may link only %v and the standard library", tc.pkg, d, tc.only)
				}
				if slices.ContainsFunc(tc.not, func(p string) bool { return strings.HasPrefix(d, p) }) {
					t.Errorf("%s links %s", tc.pkg, d)
				}
			}
		})
	}
}
