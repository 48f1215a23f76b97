package config

import (
	"fmt"
	"os"
	"strconv"
)

// DefaultGRPCSocketMode lets the socket's owner and group connect: run
// Envoy in GoPotency's group (or the reverse) to share a socket.
const DefaultGRPCSocketMode os.FileMode = 0o660

// socketFile is the grpc_socket section, for a unix:// grpc_addr.
type socketFile struct {
	// Mode is an octal permission string such as "0660".
	Mode string `yaml:"mode"`
}

func (c *Config) socket(f *socketFile) []error {
	c.GRPCSocketMode = DefaultGRPCSocketMode
	if f.Mode == "" {
		return nil
	}
	m, err := strconv.ParseUint(f.Mode, 8, 32)
	if err != nil || m > 0o777 {
		return []error{fmt.Errorf("grpc_socket.mode: %q is not an octal permission like 0660", f.Mode)}
	}
	if m&0o600 != 0o600 {
		return []error{fmt.Errorf("grpc_socket.mode: %s must let the owner read and write (0600), or the server cannot use its own socket", f.Mode)}
	}
	c.GRPCSocketMode = os.FileMode(m)
	return nil
}
