package testenv

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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopotency/gopotency/internal/proc"
)

// sharedPostgres starts the binary's shared cluster on first use.
var sharedPostgres = sync.OnceValues(func() (string, error) {
	bin, err := postgresBinDir()
	if err != nil {
		return "", err
	}
	return startPostgres(bin)
})

// Postgres returns the URL of a PostgreSQL database: GOPOTENCY_TEST_POSTGRES_URL,
// or a throwaway cluster this test binary starts once (initdb, then postgres
// on a free loopback port with fsync off) and stops at Cleanup. Tests share
// the database, so each must use tables of its own.
//
// The server binaries are looked up under /usr/lib/postgresql/*/bin (Debian),
// then on PATH. PostgreSQL refuses to run as root, so a root test binary runs
// them as the "postgres" user.
func Postgres(t testing.TB) string {
	t.Helper()
	SkipShort(t, "PostgreSQL")
	if u := os.Getenv("GOPOTENCY_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	if _, err := postgresBinDir(); err != nil {
		Unavailable(t, "GOPOTENCY_TEST_POSTGRES_URL is unset and %v", err)
	}
	url, err := sharedPostgres()
	if err != nil {
		t.Fatalf("testenv: start postgres: %v", err)
	}
	return url
}

// postgresBinDir finds the directory holding initdb, postgres and psql,
// preferring the newest Debian-packaged major version.
func postgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isFile(filepath.Join(d, "initdb")) && isFile(filepath.Join(d, "postgres")) && isFile(filepath.Join(d, "psql")) {
			return d, nil
		}
	}
	return "", errors.New("no PostgreSQL server binaries (initdb, postgres, psql) under /usr/lib/postgresql/*/bin or on PATH")
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// startPostgres creates a cluster in a new temporary directory, starts it,
// creates the database "gopotency" and registers the teardown.
func startPostgres(bin string) (string, error) {
	cred, err := postgresUser()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "gopotency-pg-")
	if err != nil {
		return "", err
	}
	fail := func(err error) (string, error) { _ = os.RemoveAll(dir); return "", err }
	if cred != nil {
		if err := os.Chown(dir, int(cred.uid), int(cred.gid)); err != nil {
			return fail(err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := pgCommand(bin, "initdb", dir, cred, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %w: %s", err, out))
	}
	for range 3 { // retry if another process takes the port first
		var ports []int
		if ports, err = proc.FreePorts(1); err != nil {
			return fail(err)
		}
		var stop func()
		if stop, err = runPostgres(bin, dir, data, cred, ports[0]); err != nil {
			continue
		}
		OnCleanup(func() { stop(); _ = os.RemoveAll(dir) })
		return "postgres://postgres@127.0.0.1:" + strconv.Itoa(ports[0]) + "/gopotency?sslmode=disable", nil
	}
	return fail(err)
}

// runPostgres starts the server on port, waits until it accepts a
// connection and creates the test database. stop shuts it down.
func runPostgres(bin, dir, data string, cred *osUser, port int) (stop func(), err error) {
	logPath := filepath.Join(dir, "postgres-"+strconv.Itoa(port)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child keeps its own descriptor
	cmd := pgCommand(bin, "postgres", dir, cred,
		"-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300")
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := proc.Start(cmd)
	if err != nil {
		return nil, err
	}
	stop = func() { p.Stop(syscall.SIGINT, 10*time.Second) } // fast shutdown
	if err := createDatabase(bin, dir, port, p); err != nil {
		stop()
		return nil, fmt.Errorf("%w; log: %s", err, proc.Tail(logPath, 1500))
	}
	return stop, nil
}

// createDatabase retries CREATE DATABASE until the server accepts it, the
// server p exits or 30s pass; it doubles as the readiness probe.
func createDatabase(bin, dir string, port int, p *proc.Proc) error {
	return proc.WaitReady("postgres on port "+strconv.Itoa(port), p, 30*time.Second, 50*time.Millisecond, func() error {
		psql := pgCommand(bin, "psql", dir, nil, "-X", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(port),
			"-U", "postgres", "-d", "postgres", "-c", "CREATE DATABASE gopotency")
		out, err := psql.CombinedOutput()
		if err == nil || strings.Contains(string(out), "already exists") {
			return nil
		}
		return errors.New(strings.TrimSpace(string(out)))
	})
}

// pgCommand runs a PostgreSQL binary in dir (initdb fails in a working
// directory it cannot read), as cred when set, killed if the test binary dies.
func pgCommand(bin, name, dir string, cred *osUser, args ...string) *exec.Cmd {
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

// postgresUser is nil unless the test runs as root, when the server
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
