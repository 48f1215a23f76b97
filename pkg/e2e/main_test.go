package e2e

import (
	"testing"

	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// TestMain stops the services the tests started (Redis, PostgreSQL).
func TestMain(m *testing.M) { testenv.Main(m) }
