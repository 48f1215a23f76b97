// Package proc starts and stops the local server processes that the tests,
// the load benchmark and the demo run (Envoy, redis-server, PostgreSQL, the
// benchmark's own servers): each is killed by the kernel if the process
// that started it dies (Linux), waited for until ready, and stopped with a
// signal, then SIGKILL after a grace period. Ports for them come from
// FreePorts.
package proc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Proc is a started process.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts cmd, set to die with its parent, and watches for its exit.
func Start(cmd *exec.Cmd) (*Proc, error) {
	DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// DieWithParent has the kernel kill cmd's process if the process that
// started it dies without stopping it (a test binary's -timeout panic, a
// killed benchmark), so no server outlives its run holding ports. It is
// Linux-only (Pdeathsig); elsewhere Stop alone ends the process.
func DieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	dieWithParent(cmd.SysProcAttr)
}

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process ended (cmd.Wait's error), once Done is closed.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Signal sends sig; a process that has exited is left alone.
func (p *Proc) Signal(sig os.Signal) { _ = p.cmd.Process.Signal(sig) }

// Stop sends sig and waits up to grace for the process to exit, then kills
// it and waits.
func (p *Proc) Stop(sig os.Signal, grace time.Duration) {
	p.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Kill kills the process and waits for it to exit.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// WaitReady calls probe every pause until it returns nil, p exits, or
// within passes. p may be nil (a probe of a service started earlier).
// what names the service in the errors.
func WaitReady(what string, p *Proc, within, pause time.Duration, probe func() error) error {
	var done <-chan struct{}
	if p != nil {
		done = p.done
	}
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("%s exited during start-up: %v", what, p.err)
		default:
		}
		if last = probe(); last == nil {
			return nil
		}
		time.Sleep(pause)
	}
	return fmt.Errorf("%s not ready within %v: %v", what, within, last)
}

// FreePorts returns n distinct loopback ports that were free a moment ago.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close() // held until all are picked, so they differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Tail returns the last n bytes of the log file at path, for error
// messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
