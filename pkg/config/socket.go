package config

import (
	"fmt"
	"os"
	"strconv"
)

// socketFile is the grpc_socket section, for a unix:// grpc_addr.
type socketFile struct {
	// Mode is an octal permission string such as "0660".
	Mode string `yaml:"mode"`
}

// socket sets GRPCSocketMode from the grpc_socket section (the default
// stays when it names no mode).
func (c *Config) socket(f *socketFile) []error {
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
