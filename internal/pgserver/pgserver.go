// Package pgserver runs a throwaway PostgreSQL cluster on loopback, tuned
// for speed over durability (fsync off), for the tests
// (pkg/internal/testenv) and the load benchmark: they measure the store's
// protocol, not a disk.
package pgserver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gopotency/gopotency/internal/proc"
)

// Server is a running cluster with the database "gopotency".
type Server struct {
	URL     string // postgres://postgres@127.0.0.1:port/gopotency?sslmode=disable
	Version string // "PostgreSQL 15.18"
	p       *proc.Proc
	dir     string
}

// ErrNoBinaries: no initdb, postgres and psql to run.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries (initdb, postgres, psql) under /usr/lib/postgresql/*/bin or on PATH")

// BinDir finds the directory holding initdb, postgres and psql: the newest
// Debian-packaged major version, then PATH.
func BinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isFile(filepath.Join(d, "initdb")) && isFile(filepath.Join(d, "postgres")) && isFile(filepath.Join(d, "psql")) {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func major(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// Start creates a cluster in a new temporary directory, starts it on a
// free loopback port and creates the database "gopotency". PostgreSQL
// refuses to run as root, so a root caller runs it as the "postgres" user.
// Stop shuts it down and removes the directory.
func Start() (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	cred, err := postgresUser()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gopotency-pg-")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Server, error) { _ = os.RemoveAll(dir); return nil, err }
	if cred != nil {
		if err := os.Chown(dir, int(cred.uid), int(cred.gid)); err != nil {
			return fail(err)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := command(bin, "initdb", dir, cred, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %w: %s", err, out))
	}
	for range 3 { // again if another process takes the port first
		var ports []int
		if ports, err = proc.FreePorts(1); err != nil {
			return fail(err)
		}
		var p *proc.Proc
		if p, err = run(bin, dir, data, cred, ports[0]); err != nil {
			continue
		}
		s := &Server{URL: "postgres://postgres@127.0.0.1:" + strconv.Itoa(ports[0]) + "/gopotency?sslmode=disable", Version: "PostgreSQL (version unknown)", p: p, dir: dir}
		if out, err := command(bin, "postgres", dir, nil, "--version").Output(); err == nil {
			// "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
			if _, v, ok := strings.Cut(string(out), "(PostgreSQL) "); ok {
				if f := strings.Fields(v); len(f) > 0 {
					s.Version = "PostgreSQL " + f[0]
				}
			}
		}
		return s, nil
	}
	return fail(err)
}

// PID is the postmaster's: the benchmark counts its backends' CPU.
func (s *Server) PID() int { return s.p.PID() }

// Stop shuts the server down (SIGINT: fast shutdown) and removes its files.
func (s *Server) Stop() {
	s.p.Stop(syscall.SIGINT, 10*time.Second)
	_ = os.RemoveAll(s.dir)
}

// run starts the server on port, waits until it accepts a connection and
// creates the database.
func run(bin, dir, data string, cred *osUser, port int) (*proc.Proc, error) {
	logPath := filepath.Join(dir, "postgres-"+strconv.Itoa(port)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child keeps its own descriptor
	cmd := command(bin, "postgres", dir, cred,
		"-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300")
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := proc.Start(cmd)
	if err != nil {
		return nil, err
	}
	// CREATE DATABASE doubles as the readiness probe.
	err = proc.WaitReady("postgres on port "+strconv.Itoa(port), p, 30*time.Second, 50*time.Millisecond, func() error {
		out, err := command(bin, "psql", dir, nil, "-X", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(port),
			"-U", "postgres", "-d", "postgres", "-c", "CREATE DATABASE gopotency").CombinedOutput()
		if err == nil || strings.Contains(string(out), "already exists") {
			return nil
		}
		return errors.New(strings.TrimSpace(string(out)))
	})
	if err != nil {
		p.Stop(syscall.SIGINT, 10*time.Second)
		return nil, fmt.Errorf("%w; log: %s", err, proc.Tail(logPath, 1500))
	}
	return p, nil
}

// command runs a PostgreSQL binary in dir (initdb fails in a working
// directory it cannot read), as cred when set, killed if its parent dies.
func command(bin, name, dir string, cred *osUser, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if cred != nil {
		runAs(cmd.SysProcAttr, cred.uid, cred.gid)
	}
	proc.DieWithParent(cmd)
	return cmd
}

// osUser is the account a server process runs as.
type osUser struct{ uid, gid uint32 }

// postgresUser is nil unless the caller runs as root, when the server
// must run as the unprivileged "postgres" user.
func postgresUser() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and there is no postgres user to run the server as: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("postgres user: %w", err)
	}
	return &osUser{uid: uint32(uid), gid: uint32(gid)}, nil
}
