package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gopotency/gopotency/internal/proc"
)

// child is a server process of the benchmark (see childArg).
type child struct {
	*proc.Proc
	name  string
	addrs []string // what it printed after READY
}

// startChild re-executes this binary as the named server, logging to
// dir/<name>.log, and waits for its READY line.
func startChild(dir, name string, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child keeps its own descriptor
	cmd := exec.Command(self, append([]string{childArg}, args...)...)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p, err := proc.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{Proc: p, name: name}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case line, ok := <-lines:
		if f := strings.Fields(line); ok && len(f) > 1 && f[0] == readyPrefix {
			c.addrs = f[1:]
			return c, nil
		}
		c.stop()
		return nil, fmt.Errorf("%s did not start (see %s): %v", name, logf.Name(), c.Err())
	case <-time.After(30 * time.Second):
		c.stop()
		return nil, fmt.Errorf("%s not ready within 30s (see %s)", name, logf.Name())
	}
}

// stop asks the server to shut down and waits for it.
func (c *child) stop() { c.Stop(syscall.SIGTERM, 10*time.Second) }

// upstreamCalls asks the upstream child how many requests it served.
func upstreamCalls(addr string) (int64, error) {
	resp, err := http.Get("http://" + addr + callsPath)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(b), 10, 64)
}
