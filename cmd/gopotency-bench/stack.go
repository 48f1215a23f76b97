package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gopotency/gopotency/internal/envoyrun"
	"github.com/gopotency/gopotency/internal/proc"
)

// redisServer is a throwaway redis-server on loopback: no persistence.
type redisServer struct {
	*proc.Proc
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
	ports, err := proc.FreePorts(1)
	if err != nil {
		return nil, true, err
	}
	port := ports[0]
	p, err := proc.Start(exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log")))
	if err != nil {
		return nil, true, fmt.Errorf("start redis-server: %w", err)
	}
	r = &redisServer{Proc: p, URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port)}
	r.Version = "redis-server (version unknown)"
	if out, err := exec.Command(bin, "--version").Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if v, ok := strings.CutPrefix(f, "v="); ok {
				r.Version = "Redis " + v
			}
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := proc.WaitReady("redis-server", p, 10*time.Second, 50*time.Millisecond, func() error { return pingRedis(addr) }); err != nil {
		r.Kill()
		return nil, true, err
	}
	return r, true, nil
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
