package testenv

import "testing"

// Every finder's shared services stop after the tests.
func TestMain(m *testing.M) { Main(m) }
