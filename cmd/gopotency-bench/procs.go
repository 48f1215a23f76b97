package main

import (
	"bufio"
	"errors"
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

// procCPU returns the CPU time (user + system, every thread) a process
// has used so far, from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStat(string(b))
}

// procTreeCPU is procCPU for a server of many processes (PostgreSQL: one
// backend per connection): pid's own time, its children's still running,
// and those of children it has reaped.
func procTreeCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f, err := statFields(string(b))
	if err != nil {
		return 0, err
	}
	total, err := ticks(f[11:15]) // utime, stime, cutime, cstime
	if err != nil {
		return 0, err
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue // exited meanwhile: counted in cutime once reaped
		}
		cf, err := statFields(string(b))
		if err != nil || cf[1] != strconv.Itoa(pid) {
			continue
		}
		if n, err := ticks(cf[11:13]); err == nil {
			total += n
		}
	}
	return total * time.Second / userHZ, nil
}

func parseProcStat(stat string) (time.Duration, error) {
	f, err := statFields(stat)
	if err != nil {
		return 0, err
	}
	n, err := ticks(f[11:13])
	if err != nil {
		return 0, err
	}
	return n * time.Second / userHZ, nil
}

// statFields splits a /proc/<pid>/stat line after the command name: state
// is field 0, ppid 1, utime 11, stime 12, cutime 13, cstime 14.
func statFields(stat string) ([]string, error) {
	// The command name is in parentheses and may hold spaces: count the
	// fields after the last ')'.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, errors.New("/proc/<pid>/stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 15 {
		return nil, errors.New("/proc/<pid>/stat: too few fields")
	}
	return f, nil
}

func ticks(fields []string) (time.Duration, error) {
	var n int64
	for _, v := range fields {
		t, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/<pid>/stat: bad field %q", v)
		}
		n += t
	}
	return time.Duration(n), nil
}
