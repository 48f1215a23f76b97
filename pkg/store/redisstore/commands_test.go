package redisstore

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// cmdCount is what the server executed for one phase of requests.
type cmdCount struct {
	sent   map[string]int // commands clients sent (round trips), by name
	script int            // commands run inside scripts
	calls  int            // INFO commandstats calls, script-internal included
}

func (c cmdCount) total() int {
	n := 0
	for _, v := range c.sent {
		n += v
	}
	return n
}

// TestCommandsPerRequest checks, from the server's side, that a replay costs
// one command and a first request two.
func TestCommandsPerRequest(t *testing.T) {
	miss, hit := measureCommands(t, 50)
	assert.Equal(t, map[string]int{"evalsha": 100}, miss.sent, "miss: acquire + complete")
	assert.Equal(t, map[string]int{"evalsha": 50}, hit.sent, "hit: acquire only")
	assert.Positive(t, miss.script)
	t.Logf("per miss: %.2f commands sent, %.2f run inside scripts, %.2f commandstats calls",
		float64(miss.total())/50, float64(miss.script)/50, float64(miss.calls)/50)
	t.Logf("per hit: %.2f commands sent, %.2f run inside scripts, %.2f commandstats calls",
		float64(hit.total())/50, float64(hit.script)/50, float64(hit.calls)/50)
}

// BenchmarkCommandsPerRequest reports the server-side command counts per
// request (its ns/op includes MONITOR's overhead; time the store with
// BenchmarkRedis).
func BenchmarkCommandsPerRequest(b *testing.B) {
	miss, hit := measureCommands(b, b.N)
	n := float64(b.N)
	b.ReportMetric(float64(miss.total())/n, "cmds/miss")
	b.ReportMetric(float64(hit.total())/n, "cmds/hit")
	b.ReportMetric(float64(miss.calls)/n, "calls/miss")
	b.ReportMetric(float64(hit.calls)/n, "calls/hit")
}

// measureCommands runs n first requests (Acquire + Complete of new keys) and
// then n replays against the real server, and counts what the server ran in
// each phase. MONITOR tells commands a client sent from those a script ran
// (INFO commandstats counts both alike), and its lines carry the keys, so
// other users of a shared server are filtered out by the store's prefix.
func measureCommands(tb testing.TB, n int) (miss, hit cmdCount) {
	ctx := context.Background()
	c := redisClient(tb)
	s := newStore(tb, c)
	require.NoError(tb, s.Ping(ctx)) // scripts cached: no NOSCRIPT fallbacks counted
	mon := startMonitor(tb, c.Options())
	rec := &idempotency.Record{Status: 201, Headers: []idempotency.Header{{Name: "Content-Type", Value: "application/json"}}, Body: []byte(`{"id":1}`)}

	keys := make([]string, n)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	before := commandStats(tb, c)
	for _, k := range keys {
		c := idempotency.Claim{Key: k, Token: idempotency.NewToken(), Fingerprint: "fp", Lease: time.Minute, Retention: time.Hour}
		res, err := s.Acquire(ctx, c, idempotency.AcquireOptions{})
		require.NoError(tb, err)
		require.Equal(tb, idempotency.Acquired, res.State)
		require.NoError(tb, s.Complete(ctx, c, rec))
	}
	miss = mon.until(tb, c, s.prefix)
	mid := commandStats(tb, c)
	for _, k := range keys {
		c := idempotency.Claim{Key: k, Token: idempotency.NewToken(), Fingerprint: "fp", Lease: time.Minute, Retention: time.Hour}
		res, err := s.Acquire(ctx, c, idempotency.AcquireOptions{})
		require.NoError(tb, err)
		require.Equal(tb, idempotency.Completed, res.State)
	}
	hit = mon.until(tb, c, s.prefix)
	after := commandStats(tb, c)
	miss.calls, hit.calls = mid-before, after-mid
	return miss, hit
}

type monitor struct {
	conn net.Conn
	r    *bufio.Reader
}

// startMonitor opens a MONITOR connection with o's address and credentials.
func startMonitor(tb testing.TB, o *redis.Options) *monitor {
	conn, err := net.DialTimeout("tcp", o.Addr, 2*time.Second)
	if err != nil {
		testenv.Unavailable(tb, "MONITOR needs a TCP server: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	m := &monitor{conn: conn, r: bufio.NewReader(conn)}
	if o.Password != "" {
		args := []string{"AUTH", o.Password}
		if o.Username != "" {
			args = []string{"AUTH", o.Username, o.Password}
		}
		m.send(tb, args...)
	}
	m.send(tb, "MONITOR")
	return m
}

func (m *monitor) send(tb testing.TB, args ...string) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_ = m.conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, err := m.conn.Write([]byte(b.String()))
	require.NoError(tb, err)
	line, err := m.r.ReadString('\n')
	require.NoError(tb, err)
	require.Equal(tb, "+OK\r\n", line, "%s refused", args[0])
}

// until sends a marker through c and counts the monitored commands that
// mention prefix up to it: everything the phase before the marker ran.
func (m *monitor) until(tb testing.TB, c *redis.Client, prefix string) cmdCount {
	var b [8]byte
	_, _ = rand.Read(b[:])
	marker := "gopotency-marker-" + hex.EncodeToString(b[:])
	require.NoError(tb, c.Echo(context.Background(), marker).Err())
	out := cmdCount{sent: map[string]int{}}
	_ = m.conn.SetDeadline(time.Now().Add(30 * time.Second))
	for {
		line, err := m.r.ReadString('\n')
		require.NoError(tb, err, "reading MONITOR")
		if strings.Contains(line, marker) {
			return out
		}
		// +1700000000.123456 [0 127.0.0.1:5000] "evalsha" "..." ...
		// +1700000000.123457 [0 lua] "hmget" "prefix:{k}" ...
		if !strings.Contains(line, `"`+prefix+`:{`) {
			continue
		}
		src, rest, ok := strings.Cut(line, "] ")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(rest, `"`), `"`)
		if strings.HasSuffix(src, " lua") {
			out.script++
		} else {
			out.sent[strings.ToLower(name)]++
		}
	}
}

// commandStats sums the calls of INFO commandstats, leaving out the
// commands the measurement itself sends.
func commandStats(tb testing.TB, c *redis.Client) int {
	info, err := c.Info(context.Background(), "commandstats").Result()
	require.NoError(tb, err)
	total := 0
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		switch strings.TrimPrefix(name, "cmdstat_") {
		case "info", "echo", "monitor", "auth", "ping", "hello", "client|setinfo":
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, err := strconv.Atoi(calls)
		require.NoError(tb, err, line)
		total += n
	}
	return total
}
