package proc

import (
	"bufio"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// start runs script in sh and, when it prints, waits for its first line.
func start(t *testing.T, script string) *Proc {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	if strings.Contains(script, "echo") {
		if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// Stop ends a process that heeds the signal at once, and kills one that
// ignores it once the grace period is over.
func TestStop(t *testing.T) {
	p := start(t, "sleep 30")
	began := time.Now()
	p.Stop(syscall.SIGTERM, 10*time.Second)
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("Stop of a process that heeds SIGTERM took %v", d)
	}
	if p.Err() == nil {
		t.Error("a process ended by SIGTERM reports no error")
	}

	deaf := start(t, `trap "" TERM; echo ready; while :; do sleep 1; done`)
	began = time.Now()
	deaf.Stop(syscall.SIGTERM, 300*time.Millisecond)
	select {
	case <-deaf.Done():
	default:
		t.Fatal("Stop returned before the process exited")
	}
	if d := time.Since(began); d < 300*time.Millisecond {
		t.Errorf("a process ignoring SIGTERM was killed after %v, before the grace period", d)
	}
}

// WaitReady gives up at once when the process exits, and returns nil once
// the probe succeeds.
func TestWaitReady(t *testing.T) {
	p := start(t, "exit 3")
	err := WaitReady("quitter", p, 10*time.Second, 10*time.Millisecond, func() error { return errNotYet })
	if err == nil || !strings.Contains(err.Error(), "quitter exited during start-up") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("WaitReady on an exited process: %v", err)
	}
	n := 0
	if err := WaitReady("counter", nil, 10*time.Second, time.Millisecond, func() error {
		if n++; n < 3 {
			return errNotYet
		}
		return nil
	}); err != nil || n != 3 {
		t.Errorf("WaitReady: %v after %d probes, want nil after 3", err, n)
	}
	if err := WaitReady("never", nil, 50*time.Millisecond, 10*time.Millisecond, func() error { return errNotYet }); err == nil || !strings.Contains(err.Error(), "not yet") {
		t.Errorf("WaitReady past its limit: %v, want the last probe's error", err)
	}
}

func TestFreePortsDistinct(t *testing.T) {
	ports, err := FreePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v: want 20 distinct", ports)
		}
		seen[p] = true
	}
}

var errNotYet = errors.New("not yet")
