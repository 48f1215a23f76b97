package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gopotency/gopotency/internal/envoyrun"
)

// pgServer is a throwaway PostgreSQL cluster on loopback, tuned like the
// tests' (fsync off): it measures the store's protocol, not a disk.
type pgServer struct {
	cmd     *exec.Cmd
	done    chan struct{}
	URL     string
	Version string
}

// pgBinDir finds initdb, postgres and psql: the newest Debian-packaged
// major version, then PATH. "" when there are none.
func pgBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return pgMajor(b) - pgMajor(a) })
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		ok := true
		for _, b := range []string{"initdb", "postgres", "psql"} {
			if st, err := os.Stat(filepath.Join(d, b)); err != nil || st.IsDir() {
				ok = false
			}
		}
		if ok {
			return d
		}
	}
	return ""
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// startPostgres creates a cluster under dir and starts it; ok is false
// when there are no server binaries. PostgreSQL refuses to run as root,
// so a root benchmark runs it as the "postgres" user.
func startPostgres(dir string) (p *pgServer, ok bool, err error) {
	bin := pgBinDir()
	if bin == "" {
		return nil, false, nil
	}
	var cred *syscall.Credential
	pgDir := filepath.Join(dir, "pg")
	if err := os.MkdirAll(pgDir, 0o700); err != nil {
		return nil, true, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, true, fmt.Errorf("running as root and there is no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// The temporary directory is root's: let the server user in.
		for _, d := range []string{dir, pgDir} {
			if err := os.Chmod(d, 0o711); err != nil {
				return nil, true, err
			}
		}
		if err := os.Chown(pgDir, int(uid), int(gid)); err != nil {
			return nil, true, err
		}
	}
	command := func(name string, args ...string) *exec.Cmd {
		c := exec.Command(filepath.Join(bin, name), args...)
		c.Dir = pgDir
		c.Env = append(os.Environ(), "LC_ALL=C")
		c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		return c
	}
	data := filepath.Join(pgDir, "data")
	if out, err := command("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		return nil, true, fmt.Errorf("initdb: %w: %s", err, out)
	}
	port, err := envoyrun.FreePort()
	if err != nil {
		return nil, true, err
	}
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		return nil, true, err
	}
	defer logf.Close()
	cmd := command("postgres", "-D", data, "-p", strconv.Itoa(port), "-k", pgDir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=300")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, true, fmt.Errorf("start postgres: %w", err)
	}
	p = &pgServer{cmd: cmd, done: make(chan struct{}), URL: "postgres://postgres@127.0.0.1:" + strconv.Itoa(port) + "/gopotency?sslmode=disable"}
	go func() { _ = cmd.Wait(); close(p.done) }()
	p.Version = "PostgreSQL (version unknown)"
	if out, err := command("postgres", "--version").Output(); err == nil {
		// "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
		if _, v, ok := strings.Cut(string(out), "(PostgreSQL) "); ok {
			if f := strings.Fields(v); len(f) > 0 {
				p.Version = "PostgreSQL " + f[0]
			}
		}
	}
	// CREATE DATABASE doubles as the readiness probe.
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-p.done:
			return nil, true, errors.New("postgres exited at start (see postgres.log)")
		default:
		}
		out, err := command("psql", "-X", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "-d", "postgres",
			"-c", "CREATE DATABASE gopotency").CombinedOutput()
		if err == nil || strings.Contains(string(out), "already exists") {
			return p, true, nil
		}
		last = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	p.Stop()
	return nil, true, fmt.Errorf("postgres not ready within 30s: %v", last)
}

// Stop shuts the server down (SIGINT: fast shutdown).
func (p *pgServer) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
