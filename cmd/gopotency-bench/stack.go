package main

import (
	"context"
	"os"
	"os/exec"
	"strings"

	"github.com/gopotency/gopotency/internal/envoyrun"
	"github.com/gopotency/gopotency/internal/redisserver"
)

// redisServer is a throwaway redis-server on loopback: no persistence.
type redisServer struct {
	*redisserver.Server
	Version string
}

// startRedis runs redis-server from PATH in dir. ok is false when there is
// none.
func startRedis(dir string) (r *redisServer, ok bool, err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, false, nil
	}
	s, err := redisserver.Start(dir)
	if err != nil {
		return nil, true, err
	}
	r = &redisServer{Server: s, Version: "redis-server (version unknown)"}
	if out, err := exec.Command(bin, "--version").Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if v, ok := strings.CutPrefix(f, "v="); ok {
				r.Version = "Redis " + v
			}
		}
	}
	return r, true, nil
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
