package ginmw_test

import (
	"testing"

	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
