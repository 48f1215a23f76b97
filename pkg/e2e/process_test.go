package e2e

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/internal/envoyrun"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// gopotencyBinary builds cmd/gopotency once per test binary.
var gopotencyBinary = sync.OnceValues(func() (string, error) {
	root, err := envoyrun.ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "gopotency-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "gopotency")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/gopotency")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", &buildError{out: out, err: err}
	}
	return bin, nil
})

type buildError struct {
	out []byte
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + string(e.out) }

// process is a gopotency server run as its own process, so a test can
// kill it with SIGKILL: no deferred code, no settlement, as in a crash.
type process struct {
	bin, grpc, admin string
	args             []string
	cmd              *exec.Cmd
	log              bytes.Buffer
}

func startProcess(t *testing.T, store, config string) *process {
	t.Helper()
	bin, err := gopotencyBinary()
	require.NoError(t, err)
	ports := freePorts(t, 2)
	p := &process{bin: bin, grpc: "127.0.0.1:" + itoa(ports[0]), admin: "127.0.0.1:" + itoa(ports[1])}
	p.args = []string{"--store", store, "--config", config, "--grpc-addr", p.grpc, "--admin-addr", p.admin}
	p.start(t)
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("gopotency process log:\n%s", p.log.String())
		}
	})
	return p
}

func (p *process) start(t *testing.T) {
	t.Helper()
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
	require.NoError(t, p.cmd.Start())
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + p.admin + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == 200
	}, 15*time.Second, 20*time.Millisecond, "gopotency process ready")
}

// kill ends the process with SIGKILL and waits for it.
func (p *process) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}

// TestServerKilledMidRequest: gopotency is killed (SIGKILL) while the
// upstream runs a request, and restarted. Nothing settled the key: its
// lease runs out, and from then on retries are told the outcome is
// unknown. They never run it again, however long the client retries.
func TestServerKilledMidRequest(t *testing.T) {
	testenv.SkipShort(t, "Envoy, Redis and a gopotency process")
	url := testenv.Redis(t)
	gp := startProcess(t, url, writeConfig(t, "ext_proc: {max_message_timeout: 30s}\ndefault_policy: {lease: 1s}\n"))
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up, gopotency: gp.grpc})
	key := "killed-" + itoa(int(time.Now().UnixNano()))

	first := make(chan result, 1)
	go func() { first <- do(t, "POST", s.URL+"/orders?sleep=1500ms", key, `{}`) }()
	require.Eventually(t, func() bool { return up.count(key) == 1 }, 5*time.Second, 5*time.Millisecond)
	gp.kill()
	r := <-first
	assert.Equal(t, 503, r.Status, "the stream died with the server: Envoy fails closed (status_on_error); body %s", r.Body)

	gp.start(t)
	seen := map[int]int{}
	deadline := time.Now().Add(3 * time.Second) // three leases past the crash
	for time.Now().Before(deadline) {
		r := do(t, "POST", s.URL+"/orders?sleep=1500ms", key, `{}`)
		seen[r.Status]++
		require.Contains(t, []int{409, 424, 503}, r.Status, "body %s", r.Body)
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("retry statuses after the restart: %v", seen)
	last := do(t, "POST", s.URL+"/orders?sleep=1500ms", key, `{}`)
	require.Equal(t, 424, last.Status)
	assert.Equal(t, "outcome-unknown", problemType(t, last))
	assert.Equal(t, 1, up.count(key), "executions")
}
