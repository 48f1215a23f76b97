package app

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"time"

	"github.com/gopotency/gopotency/pkg/config"
)

// listenGRPC binds the gRPC address: host:port, or unix:///path for a
// socket beside Envoy. The socket gets mode (config.DefaultGRPCSocketMode
// when 0); closing the listener removes it, which grpc.Server does on
// Stop and GracefulStop.
func listenGRPC(addr string, mode os.FileMode) (net.Listener, error) {
	path := config.UnixSocketPath(addr)
	if path == "" {
		return net.Listen("tcp", addr)
	}
	if mode == 0 {
		mode = config.DefaultGRPCSocketMode
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// Until this chmod the socket has the umask's mode, which (022, 027,
	// 077) lets no other user connect: there is no window where it is
	// wider than asked.
	if err := os.Chmod(path, mode); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return ln, nil
}

// removeStaleSocket removes a socket left by a server that died without
// closing it, so a restart can bind again. It refuses to touch anything
// that is not a socket, or a socket some server still answers on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; not removing it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return fmt.Errorf("%s: another server is listening on this socket", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	return nil
}
