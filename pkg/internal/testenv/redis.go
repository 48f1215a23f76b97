package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopotency/gopotency/internal/proc"
)

// sharedRedis starts the binary's shared redis-server on first use.
var sharedRedis = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "gopotency-redis-")
	if err != nil {
		return "", err
	}
	s, err := startRedisServer(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	OnCleanup(func() { s.Stop(); _ = os.RemoveAll(dir) })
	return s.URL(), nil
})

// Redis returns the URL of a Redis server: GOPOTENCY_TEST_REDIS_URL, or a
// redis-server this test binary starts once, on a free loopback port, and
// stops at Cleanup. Tests share it, so they must use keys of their own.
func Redis(t testing.TB) string {
	t.Helper()
	SkipShort(t, "Redis")
	if u := os.Getenv("GOPOTENCY_TEST_REDIS_URL"); u != "" {
		return u
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		Unavailable(t, "GOPOTENCY_TEST_REDIS_URL is unset and redis-server is not installed")
	}
	url, err := sharedRedis()
	if err != nil {
		t.Fatalf("testenv: start redis-server: %v", err)
	}
	return url
}

// RedisServer is a redis-server process owned by one test, for fault tests:
// Stop it to make the store unreachable, Start it again on the same port.
type RedisServer struct {
	Addr string // 127.0.0.1:port
	dir  string
	args []string

	mu sync.Mutex
	p  *proc.Proc // nil while stopped
}

// StartRedis starts a private redis-server (it does not honour
// GOPOTENCY_TEST_REDIS_URL: the test needs to control the process). extra
// are more redis-server arguments. t.Cleanup stops it.
func StartRedis(t testing.TB, extra ...string) *RedisServer {
	t.Helper()
	SkipShort(t, "a redis-server")
	if _, err := exec.LookPath("redis-server"); err != nil {
		Unavailable(t, "redis-server is not installed")
	}
	s, err := startRedisServer(t.TempDir(), extra...)
	if err != nil {
		t.Fatalf("testenv: start redis-server: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// URL returns redis://Addr.
func (s *RedisServer) URL() string { return "redis://" + s.Addr }

// startRedisServer starts redis-server in dir on a free port, retrying if
// another process took the port between picking and binding it.
func startRedisServer(dir string, extra ...string) (*RedisServer, error) {
	var err error
	for range 3 {
		var ports []int
		if ports, err = proc.FreePorts(1); err != nil {
			return nil, err
		}
		s := &RedisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), dir: dir}
		s.args = append([]string{
			"--port", strconv.Itoa(ports[0]), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--logfile", filepath.Join(dir, "redis-"+strconv.Itoa(ports[0])+".log"),
		}, extra...)
		if err = s.Start(); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// Start runs the server (again) with its original port and arguments and
// waits until it answers PING.
func (s *RedisServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		return errors.New("redis-server already running")
	}
	p, err := proc.Start(exec.Command("redis-server", s.args...))
	if err != nil {
		return err
	}
	if err := waitRedis(s.Addr, p, "PING", "PONG"); err != nil {
		p.Kill()
		return fmt.Errorf("%w; log: %s", err, s.logTail())
	}
	s.p = p
	return nil
}

// Stop terminates the server and waits for it to exit. Stopping a stopped
// server does nothing.
func (s *RedisServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return
	}
	s.p.Signal(syscall.SIGCONT) // a paused server cannot act on SIGTERM
	s.p.Stop(syscall.SIGTERM, 5*time.Second)
	s.p = nil
}

// Kill ends the server with SIGKILL, as in a crash (nothing is saved or
// handed over), and waits for it to exit. Start runs it again.
func (s *RedisServer) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return
	}
	s.p.Kill()
	s.p = nil
}

// Pause freezes the server (SIGSTOP): connections stay open and the
// kernel still accepts new ones, but nothing is answered, as when a host
// stalls. Resume undoes it.
func (s *RedisServer) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT); it answers what was queued.
func (s *RedisServer) Resume() { s.signal(syscall.SIGCONT) }

func (s *RedisServer) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		s.p.Signal(sig)
	}
}

// logTail returns the end of the server's log.
func (s *RedisServer) logTail() string {
	return proc.Tail(filepath.Join(s.dir, "redis-"+portOf(s.Addr)+".log"), 1500)
}

// waitRedis polls addr with cmd until the reply contains want, the process
// p (nil: none to watch) exits or 15s pass.
func waitRedis(addr string, p *proc.Proc, cmd, want string) error {
	return proc.WaitReady("redis-server on "+addr, p, 15*time.Second, 20*time.Millisecond, func() error {
		reply, err := redisCommand(addr, strings.Fields(cmd)...)
		if err == nil && !strings.Contains(reply, want) {
			err = fmt.Errorf("%s replied %q", cmd, reply)
		}
		return err
	})
}

// redisCommand sends one command and returns its reply as text (simple,
// integer or bulk string). It spares testenv a Redis client dependency.
func redisCommand(addr string, args ...string) (string, error) {
	return redisCommands(addr, args)
}

// redisCommands sends commands on one connection (WAIT, for one, covers
// its own connection's writes only) and returns the last reply; the first
// error reply ends it.
func redisCommands(addr string, cmds ...[]string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	for _, args := range cmds {
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	var reply string
	for range cmds {
		if reply, err = readReply(r); err != nil {
			return "", err
		}
	}
	return reply, nil
}

// readReply reads a simple, integer or bulk string reply (of an array,
// only its length).
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case line == "":
		return "", errors.New("empty reply")
	case line[0] == '-':
		return "", errors.New(line[1:])
	case line[0] == '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("bad bulk reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return line[1:], nil
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
