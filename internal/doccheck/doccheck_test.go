// Package doccheck compiles every Go snippet of README.md and docs/*.md, so
// the docs cannot drift from the API: a renamed function or a changed
// signature fails this test, naming the Markdown file and line.
//
// # Convention
//
// Every fenced block opened with ```go is checked; label a block that is not
// Go (shell, YAML, output) with its own language, or none. A block becomes
// one package of its own, built and vetted inside this module (so imports of
// github.com/gopotency/gopotency/... resolve to the working tree):
//
//   - A block starting with a package clause is a whole file, used as is.
//   - A block made only of declarations (func, type, var, const) is a file's
//     body.
//   - Anything else is a fragment: statements, put in a function body.
//     Variables a fragment declares at its top level and leaves unused are
//     used by the test (a snippet shows how to get a value, not what to do
//     with it next), so declare them with := once and assign with = after.
//
// Imports are added by the test: the standard library and third-party
// packages the docs use by the names in the imports table below, then the
// packages under pkg/ of this module by their names (memstore, stdhttp,
// idempotency, …). A package name found in neither fails the test; add it
// to the table.
//
// What a fragment uses but does not show (your handler, a client you
// already have) is declared in an HTML comment right before the block,
// which Markdown does not render:
//
//	<!-- doccheck
//	var rdb redis.UniversalClient
//	func createOrder(http.ResponseWriter, *http.Request) {}
//	-->
//	```go
//
// The declarations go at package level next to the block. ctx (a
// context.Context) and store (an idempotency.Store) are declared for every
// block; a block may declare its own, which shadows them. A package the
// module does not require (Echo's middleware package) may be stood in for
// by such a declaration. `<!-- doccheck skip: reason -->` leaves a block
// out; give the reason.
package doccheck

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// imports are the packages outside this module that snippets may name.
var imports = map[string]string{
	"context":  "context",
	"errors":   "errors",
	"fmt":      "fmt",
	"log":      "log",
	"http":     "net/http",
	"httptest": "net/http/httptest",
	"slog":     "log/slog",
	"sql":      "database/sql",
	"strings":  "strings",
	"testing":  "testing",
	"time":     "time",

	"echo":     "github.com/labstack/echo/v4",
	"fiber":    "github.com/gofiber/fiber/v3",
	"gin":      "github.com/gin-gonic/gin",
	"gorm":     "gorm.io/gorm",
	"grpc":     "google.golang.org/grpc",
	"metadata": "google.golang.org/grpc/metadata",
	"otel":     "go.opentelemetry.io/otel",
	"postgres": "gorm.io/driver/postgres",
	"recover":  "github.com/gofiber/fiber/v3/middleware/recover",
	"redis":    "github.com/redis/go-redis/v9",
}

// prelude is declared for every block.
const prelude = `
var (
	ctx   = context.Background()
	store idempotency.Store
)
`

// A snippet is one ```go block.
type snippet struct {
	file  string // relative to the repository root
	line  int    // of the first line of code
	code  string
	setup string // the doccheck comment's declarations
	skip  bool
}

func TestDocSnippetsCompile(t *testing.T) {
	root := repoRoot(t)
	files := []string{"README.md"}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		files = append(files, filepath.Join("docs", filepath.Base(d)))
	}
	var all []snippet
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		s, err := extract(f, string(b))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, s...)
	}
	if len(all) < 10 {
		t.Fatalf("found %d Go snippets; the docs hold more: is the extraction broken?", len(all))
	}
	if out, err := build(t, root, all); err != nil {
		t.Fatalf("doc snippets do not compile (%v):\n%s", err, out)
	}
}

// TestBrokenSnippetFails proves the check bites: a snippet calling an API
// that does not exist fails, and the error names the Markdown line.
func TestBrokenSnippetFails(t *testing.T) {
	root := repoRoot(t)
	md := "# Doc\n\nSome text.\n\n```go\nidem, err := stdhttp.New(store)\nstdhttp.NoSuchOption(idem, err)\n```\n"
	s, err := extract("docs/broken.md", md)
	if err != nil {
		t.Fatal(err)
	}
	out, err := build(t, root, s)
	if err == nil {
		t.Fatal("a snippet calling stdhttp.NoSuchOption compiled")
	}
	if !strings.Contains(out, "docs/broken.md:7") || !strings.Contains(out, "NoSuchOption") {
		t.Errorf("the error does not name docs/broken.md:7 and NoSuchOption:\n%s", out)
	}
}

func TestExtract(t *testing.T) {
	md := "text\n\n<!-- doccheck\nvar rdb int\n-->\n```go\nx := rdb\n```\n\n```sh\nls\n```\n\n<!-- doccheck skip: pseudo code -->\n```go\n...\n```\n"
	got, err := extract("a.md", md)
	if err != nil {
		t.Fatal(err)
	}
	want := []snippet{
		{file: "a.md", line: 7, code: "x := rdb\n", setup: "var rdb int\n"},
		{file: "a.md", line: 16, code: "...\n", skip: true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

var (
	fence       = regexp.MustCompile("^```")
	setupOpen   = "<!-- doccheck"
	setupClose  = "-->"
	skipComment = regexp.MustCompile(`^<!-- doccheck skip: \S.*-->$`)
)

// extract returns the ```go blocks of md, each with the doccheck comment
// right before it.
func extract(file, md string) ([]snippet, error) {
	lines := strings.Split(md, "\n")
	var out []snippet
	var setup string
	skip, setupEnd := false, -2 // setupEnd: the line the last comment ended on
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case skipComment.MatchString(l):
			skip, setup, setupEnd = true, "", i
		case strings.HasPrefix(l, setupOpen):
			var b strings.Builder
			if rest := strings.TrimPrefix(l, setupOpen); strings.TrimSpace(rest) != "" {
				return nil, fmt.Errorf("%s:%d: put the declarations of a doccheck comment on the lines after %q", file, i+1, setupOpen)
			}
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != setupClose; i++ {
				b.WriteString(lines[i] + "\n")
			}
			if i == len(lines) {
				return nil, fmt.Errorf("%s: a doccheck comment is not closed with a line %q", file, setupClose)
			}
			skip, setup, setupEnd = false, b.String(), i
		case fence.MatchString(l):
			lang := strings.TrimSpace(strings.TrimPrefix(l, "```"))
			start := i + 1
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			}
			if i == len(lines) {
				return nil, fmt.Errorf("%s:%d: a code block is not closed", file, start)
			}
			if lang == "go" {
				s := snippet{file: file, line: start + 1, code: strings.Join(lines[start:i], "\n") + "\n"}
				if setupEnd == start-2 { // the comment is on the line before the fence
					s.setup, s.skip = setup, skip
				}
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// build writes each snippet as a package under testdata (which ./...
// leaves out, so a concurrent go build of the module never sees them),
// then builds and vets them together. The output names Markdown lines.
func build(t *testing.T, root string, snippets []snippet) (string, error) {
	t.Helper()
	dir, err := os.MkdirTemp(filepath.Join(root, "internal", "doccheck", "testdata"), "snippets-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	local, err := modulePackages(root)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, s := range snippets {
		if s.skip {
			continue
		}
		src, err := source(s, local)
		if err != nil {
			return err.Error(), err
		}
		pkg := filepath.Join(dir, fmt.Sprintf("s%03d", i))
		if err := os.Mkdir(pkg, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pkg, "snippet.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		return "", nil
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	pattern := "./" + filepath.ToSlash(rel) + "/..."
	for _, args := range [][]string{{"build", "-o", os.DevNull, pattern}, {"vet", pattern}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("go %s: %w", args[0], err)
		}
	}
	return "", nil
}

// source is the Go file of one snippet. //line directives make the
// compiler report positions in the Markdown file.
func source(s snippet, local map[string]string) (string, error) {
	code := s.code
	if strings.HasPrefix(strings.TrimSpace(code), "package ") {
		return fmt.Sprintf("//line %s:%d\n%s", s.file, s.line, code), nil
	}
	head := "package snippet\n" + prelude + s.setup
	var body string
	if declsOnly(head + code) {
		body = fmt.Sprintf("//line %s:%d\n%s", s.file, s.line, code)
	} else {
		uses, err := unused(code)
		if err != nil {
			return "", fmt.Errorf("%s:%d: %w", s.file, s.line, err)
		}
		body = fmt.Sprintf("func _() {\n//line %s:%d\n%s%s}\n", s.file, s.line, code, uses)
	}
	file := head + body
	f, err := parser.ParseFile(token.NewFileSet(), "", file, parser.SkipObjectResolution)
	if err != nil {
		return "", fmt.Errorf("%s:%d: %w", s.file, s.line, err)
	}
	var imps strings.Builder
	for _, name := range packagesNamed(f) {
		path, ok := imports[name]
		if !ok {
			path, ok = local[name]
		}
		if !ok {
			return "", fmt.Errorf("%s:%d: package %q is neither in this module nor in doccheck's imports table", s.file, s.line, name)
		}
		fmt.Fprintf(&imps, "import %s %q\n", name, path)
	}
	return "package snippet\n" + imps.String() + prelude + s.setup + body, nil
}

// declsOnly reports whether src parses as a file of declarations.
func declsOnly(src string) bool {
	_, err := parser.ParseFile(token.NewFileSet(), "", src, parser.SkipObjectResolution)
	return err == nil
}

// unused returns "_ = x" lines for the variables code declares at its top
// level, so a fragment that only shows how to get a value compiles.
func unused(code string) (string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), "", "package p\nfunc _() {\n"+code+"\n}\n", parser.SkipObjectResolution)
	if err != nil {
		return "", err
	}
	var names []string
	add := func(id *ast.Ident) {
		if id.Name != "_" && !slices.Contains(names, id.Name) {
			names = append(names, id.Name)
		}
	}
	for _, st := range f.Decls[0].(*ast.FuncDecl).Body.List {
		switch st := st.(type) {
		case *ast.AssignStmt:
			if st.Tok == token.DEFINE {
				for _, e := range st.Lhs {
					add(e.(*ast.Ident))
				}
			}
		case *ast.DeclStmt:
			if g, ok := st.Decl.(*ast.GenDecl); ok && g.Tok == token.VAR {
				for _, sp := range g.Specs {
					for _, id := range sp.(*ast.ValueSpec).Names {
						add(id)
					}
				}
			}
		}
	}
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "_ = %s\n", n)
	}
	return b.String(), nil
}

// packagesNamed returns the names used as pkg.X in f that f does not
// declare itself: the packages it needs (a local variable of the same name
// as a package would hide it, which the docs avoid).
func packagesNamed(f *ast.File) []string {
	declared := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.ValueSpec:
			for _, id := range n.Names {
				declared[id.Name] = true
			}
		case *ast.TypeSpec:
			declared[n.Name.Name] = true
		case *ast.FuncDecl:
			declared[n.Name.Name] = true
		case *ast.AssignStmt:
			if n.Tok == token.DEFINE {
				for _, e := range n.Lhs {
					if id, ok := e.(*ast.Ident); ok {
						declared[id.Name] = true
					}
				}
			}
		case *ast.Field:
			for _, id := range n.Names {
				declared[id.Name] = true
			}
		}
		return true
	})
	var names []string
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok && !declared[id.Name] && !slices.Contains(names, id.Name) {
				names = append(names, id.Name)
			}
		}
		return true
	})
	slices.Sort(names)
	return names
}

// modulePackages maps the package names of this module's pkg/ tree to their
// import paths (names used twice are left out: a snippet must not be
// ambiguous).
func modulePackages(root string) (map[string]string, error) {
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return nil, err
	}
	first, _, _ := bytes.Cut(mod, []byte("\n"))
	modPath := strings.TrimSpace(strings.TrimPrefix(string(first), "module"))
	pkgs, seen := map[string]string{}, map[string]int{}
	err = filepath.WalkDir(filepath.Join(root, "pkg"), func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if d.Name() == "testdata" || d.Name() == "internal" {
			return filepath.SkipDir
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		name := filepath.Base(path)
		if goFiles, _ := filepath.Glob(filepath.Join(path, "*.go")); len(goFiles) == 0 {
			return nil // a folder of packages, no package itself
		}
		seen[name]++
		pkgs[name] = modPath + "/" + filepath.ToSlash(rel)
		return nil
	})
	for name, n := range seen {
		if n > 1 {
			delete(pkgs, name)
		}
	}
	return pkgs, err
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s: %v", root, err)
	}
	return root
}
