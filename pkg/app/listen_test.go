package app

import (
	"context"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gopotency/gopotency/pkg/config"
)

// socketDir is a short directory: sun_path holds 108 bytes.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gp-sock-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func startOnSocket(t *testing.T, path string, extra ...string) (*Running, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gopotency.yaml")
	require.NoError(t, os.WriteFile(p, []byte("drain_delay: 0s\n"+`grpc_socket: {mode: "0600"}`+"\n"), 0o600))
	args := append([]string{"--config", p, "--grpc-addr", "unix://" + path, "--admin-addr", "127.0.0.1:0"}, extra...)
	cfg, err := config.Load(args, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	return Start(cfg, io.Discard)
}

func TestServesOnAUnixSocket(t *testing.T) {
	path := filepath.Join(socketDir(t), "gp.sock")
	r, err := startOnSocket(t, path)
	require.NoError(t, err)
	require.Equal(t, "unix://"+path, r.GRPCAddr())
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, fs.ModeSocket, fi.Mode().Type())
	require.Equal(t, fs.FileMode(0o600), fi.Mode().Perm(), "grpc_socket.mode")

	conn, err := grpc.NewClient(r.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())

	require.NoError(t, r.Stop())
	_, err = os.Lstat(path)
	require.ErrorIs(t, err, fs.ErrNotExist, "the socket is removed at shutdown")
}

func TestReplacesAStaleSocket(t *testing.T) {
	path := filepath.Join(socketDir(t), "gp.sock")
	// A server that died: its socket file stays, nobody answers on it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	ln.SetUnlinkOnClose(false)
	require.NoError(t, ln.Close())
	_, err = os.Lstat(path)
	require.NoError(t, err, "the stale socket is there")

	r, err := startOnSocket(t, path)
	require.NoError(t, err)
	require.NoError(t, r.Stop())
}

func TestRefusesALiveSocketAndOtherFiles(t *testing.T) {
	dir := socketDir(t)
	live := filepath.Join(dir, "live.sock")
	ln, err := net.Listen("unix", live)
	require.NoError(t, err)
	defer ln.Close()
	_, err = startOnSocket(t, live)
	require.ErrorContains(t, err, "another server is listening")

	file := filepath.Join(dir, "file.sock")
	require.NoError(t, os.WriteFile(file, []byte("keep me"), 0o600))
	_, err = startOnSocket(t, file)
	require.ErrorContains(t, err, "is not a socket")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, "keep me", string(b), "never removed")
}

func TestSocketIsRemovedWhenTheAdminPortIsBusy(t *testing.T) {
	path := filepath.Join(socketDir(t), "gp.sock")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	_, err = startOnSocket(t, path, "--admin-addr", busy.Addr().String())
	require.ErrorContains(t, err, "admin listener")
	_, err = os.Lstat(path)
	require.ErrorIs(t, err, fs.ErrNotExist)
}

func TestPprofOnlyWhenAskedFor(t *testing.T) {
	off := start(t, "")
	code, _ := off.get(t, "/debug/pprof/")
	require.Equal(t, 404, code)
	on := start(t, "pprof: true\n")
	code, body := on.get(t, "/debug/pprof/")
	require.Equal(t, 200, code)
	require.Contains(t, body, "goroutine")
	code, _ = on.get(t, "/debug/pprof/profile?seconds=1")
	require.Equal(t, 200, code)
}
