package sqlstore_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/store/sqlstore"
)

// The package documentation repeats the DDL for teams that manage schemas
// themselves; it must be the DDL the migrations apply.
func TestDocShowsDDL(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	for _, d := range []sqlstore.Dialect{sqlstore.Postgres, sqlstore.SQLite} {
		ddl, err := sqlstore.DDL(d, "")
		require.NoError(t, err)
		var lines []string
		for l := range strings.Lines(ddl) {
			if !strings.HasPrefix(l, "--") {
				lines = append(lines, "//\t"+strings.TrimRight(l, "\n"))
			}
		}
		require.Contains(t, string(doc), strings.Join(lines, "\n"), "doc.go shows a stale %s DDL", d)
	}
}
