package e2e

import (
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

func listen(t *testing.T) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return l
}

func fmtSscan(s string, f *float64) (int, error) { return fmt.Sscan(s, f) }
