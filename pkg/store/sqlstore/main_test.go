package sqlstore_test

import (
	"testing"

	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// The PostgreSQL cluster testenv starts is shared by every test here and
// stopped after them.
func TestMain(m *testing.M) { testenv.Main(m) }
