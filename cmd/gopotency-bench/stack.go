package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gopotency/gopotency/internal/envoyrun"
)

// redisServer is a throwaway redis-server on loopback: no persistence.
type redisServer struct {
	cmd     *exec.Cmd
	URL     string
	Version string
}

// startRedis runs redis-server from PATH in dir. ok is false when there is
// none.
func startRedis(dir string) (r *redisServer, ok bool, err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, false, nil
	}
	port, err := envoyrun.FreePort()
	if err != nil {
		return nil, true, err
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return nil, true, fmt.Errorf("start redis-server: %w", err)
	}
	r = &redisServer{cmd: cmd, URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port)}
	r.Version = "redis-server (version unknown)"
	if out, err := exec.Command(bin, "--version").Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if v, ok := strings.CutPrefix(f, "v="); ok {
				r.Version = "Redis " + v
			}
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if pingRedis(addr) == nil {
			return r, true, nil
		}
	}
	r.Stop()
	return nil, true, errors.New("redis-server did not answer PING within 10s")
}

func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("redis answered %q", line)
	}
	return nil
}

func (r *redisServer) Stop() {
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
}

// startEnvoy runs Envoy on cfg in dir; listen and admin are the ports
// cfg uses.
func startEnvoy(ctx context.Context, bin, dir string, cfg []byte, listen, admin int) (*envoyrun.Envoy, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return envoyrun.Start(ctx, bin, dir, cfg, envoyrun.Addrs{Listen: listen, Admin: admin})
}

// envoyVersion asks the binary, e.g. "1.40.0/Clean/RELEASE/BoringSSL".
func envoyVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	s := strings.TrimSpace(string(out))
	if _, v, ok := strings.Cut(s, "version: "); ok {
		if _, rest, ok := strings.Cut(v, "/"); ok {
			return rest // drop the commit hash
		}
		return v
	}
	return s
}
