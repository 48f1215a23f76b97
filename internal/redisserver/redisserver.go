// Package redisserver runs throwaway redis-server processes on loopback
// (no persistence) for the tests (pkg/internal/testenv) and the load
// benchmark, and talks to them without a Redis client: Command sends one
// command, Wait polls until a reply says the server is ready.
package redisserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gopotency/gopotency/internal/proc"
)

// Server is a redis-server process. Stop it to make it unreachable, Start
// it again on the same port.
type Server struct {
	Addr string // 127.0.0.1:port
	dir  string
	args []string

	mu sync.Mutex
	p  *proc.Proc // nil while stopped
}

// New returns a server listening on addr, run in dir with args (which name
// addr's port and a log file "redis-<port>.log" in dir); Start runs it.
func New(addr, dir string, args ...string) *Server {
	return &Server{Addr: addr, dir: dir, args: args}
}

// URL returns redis://Addr.
func (s *Server) URL() string { return "redis://" + s.Addr }

// Start starts redis-server in dir on a free port, with extra arguments,
// retrying if another process took the port between picking and binding
// it.
func Start(dir string, extra ...string) (*Server, error) {
	var err error
	for range 3 {
		var ports []int
		if ports, err = proc.FreePorts(1); err != nil {
			return nil, err
		}
		s := New(net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), dir, append([]string{
			"--port", strconv.Itoa(ports[0]), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--logfile", filepath.Join(dir, "redis-"+strconv.Itoa(ports[0])+".log"),
		}, extra...)...)
		if err = s.Start(); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// Start runs the server (again) with its original port and arguments and
// waits until it answers PING.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		return errors.New("redis-server already running")
	}
	p, err := proc.Start(exec.Command("redis-server", s.args...))
	if err != nil {
		return err
	}
	if err := Wait(s.Addr, p, "PING", "PONG"); err != nil {
		p.Kill()
		return fmt.Errorf("%w; log: %s", err, s.LogTail())
	}
	s.p = p
	return nil
}

// Stop terminates the server and waits for it to exit. Stopping a stopped
// server does nothing.
func (s *Server) Stop() {
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
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return
	}
	s.p.Kill()
	s.p = nil
}

// PID is the server's process id, 0 while stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return 0
	}
	return s.p.PID()
}

// Pause freezes the server (SIGSTOP): connections stay open and the
// kernel still accepts new ones, but nothing is answered, as when a host
// stalls. Resume undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT); it answers what was queued.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		s.p.Signal(sig)
	}
}

// LogTail returns the end of the server's log, for error messages.
func (s *Server) LogTail() string {
	return proc.Tail(filepath.Join(s.dir, "redis-"+portOf(s.Addr)+".log"), 1500)
}

// Wait polls addr with cmd until the reply contains want, the process p
// (nil: none to watch) exits or 15s pass.
func Wait(addr string, p *proc.Proc, cmd, want string) error {
	return proc.WaitReady("redis-server on "+addr, p, 15*time.Second, 20*time.Millisecond, func() error {
		reply, err := Command(addr, strings.Fields(cmd)...)
		if err == nil && !strings.Contains(reply, want) {
			err = fmt.Errorf("%s replied %q", cmd, reply)
		}
		return err
	})
}

// Command sends one command and returns its reply as text (simple,
// integer or bulk string).
func Command(addr string, args ...string) (string, error) {
	return Commands(addr, args)
}

// Commands sends commands on one connection (WAIT, for one, covers
// its own connection's writes only) and returns the last reply; the first
// error reply ends it.
func Commands(addr string, cmds ...[]string) (string, error) {
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
