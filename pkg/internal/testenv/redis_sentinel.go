package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopotency/gopotency/internal/proc"

	"github.com/gopotency/gopotency/internal/redisserver"
)

// RedisSentinel is a private Redis master watched by one Sentinel, with one
// replica when StartRedisFailover started it.
type RedisSentinel struct {
	Master     *RedisServer
	Replica    *RedisServer // nil from StartRedisSentinel
	Sentinel   *RedisServer // a redis-server in sentinel mode
	MasterName string
}

// StartRedisSentinel starts a master and a Sentinel monitoring it (quorum 1)
// on loopback ports; t.Cleanup stops both. There is no environment variable
// for it: Sentinel deployments are exercised only where redis-server is
// installed.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	SkipShort(t, "Redis Sentinel")
	rs := &RedisSentinel{Master: StartRedis(t), MasterName: "mymaster"}
	rs.startSentinel(t, "")
	return rs
}

// replUser is the account the replica replicates as, so CutReplica can
// lock it out.
const replUser, replPassword = "replication", "replication-secret"

// StartRedisFailover starts a master, one replica of it and a Sentinel
// (quorum 1) that fails over within a few seconds of the master's death,
// all on loopback ports, and returns once the replica is in sync and the
// Sentinel knows it; t.Cleanup stops them. Sentinel polls every server
// every 100ms (SENTINEL DEBUG) so failovers do not wait on its default
// 10s INFO period, and leaves its TILT mode after 1s, not 30s, should a
// slow machine trip it.
func StartRedisFailover(t testing.TB) *RedisSentinel {
	t.Helper()
	SkipShort(t, "Redis Sentinel with a replica")
	master := StartRedis(t, "--repl-diskless-sync-delay", "0") // the default waits 5s for more replicas
	if _, err := redisserver.Command(master.Addr, "ACL", "SETUSER", replUser, "on", ">"+replPassword, "~*", "&*", "+@all"); err != nil {
		t.Fatalf("testenv: replication user: %v", err)
	}
	host, port, _ := net.SplitHostPort(master.Addr)
	replica := StartRedis(t, "--replicaof", host, port, "--masteruser", replUser, "--masterauth", replPassword)
	rs := &RedisSentinel{Master: master, Replica: replica, MasterName: "mymaster"}
	t.Cleanup(func() {
		if t.Failed() { // a failover test's failure is often read in these logs
			for _, s := range []*RedisServer{rs.Master, rs.Replica, rs.Sentinel} {
				if s != nil {
					t.Logf("%s log tail:\n%s", s.Addr, s.LogTail())
				}
			}
		}
	})
	// Synced is not enough: after a diskless sync the master streams
	// writes to the replica (and WAIT hears from it) only once the
	// replica's first periodic ACK arrived, up to a second later. So wait
	// until the replica confirms a write (WAIT on the writing connection).
	ok := poll(15*time.Second, func() bool {
		n, err := redisserver.Commands(master.Addr, []string{"SET", "testenv:replica-check", "1", "PX", "1000"}, []string{"WAIT", "1", "1000"})
		return err == nil && n == "1"
	})
	if !ok {
		t.Fatalf("testenv: the replica never confirmed a write")
	}
	rs.startSentinel(t, "sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 3000\n")
	if _, err := redisserver.Command(rs.Sentinel.Addr, "SENTINEL", "DEBUG", "info-period", "100", "tilt-period", "1000"); err != nil {
		t.Fatalf("testenv: SENTINEL DEBUG: %v", err)
	}
	if err := redisserver.Wait(rs.Sentinel.Addr, nil, "INFO sentinel", "status=ok,address="+master.Addr+",slaves=1,"); err != nil {
		t.Fatalf("testenv: the Sentinel never saw the replica: %v", err)
	}
	return rs
}

// startSentinel starts the Sentinel for rs.Master with extra config lines.
func (rs *RedisSentinel) startSentinel(t testing.TB, extra string) {
	t.Helper()
	dir := t.TempDir()
	ports, err := proc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ports[0])
	conf := filepath.Join(dir, "sentinel.conf")
	host, mport, _ := net.SplitHostPort(rs.Master.Addr)
	body := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor %s %s %s 1\n%s",
		port, dir, filepath.Join(dir, "redis-"+port+".log"), rs.MasterName, host, mport, extra)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	s := redisserver.New(net.JoinHostPort("127.0.0.1", port), dir, conf, "--sentinel")
	if err := s.Start(); err != nil {
		t.Fatalf("testenv: start sentinel: %v", err)
	}
	t.Cleanup(s.Stop)
	rs.Sentinel = s
}

// URL returns the store URL: redis+sentinel://sentinel/master-name.
func (rs *RedisSentinel) URL() string {
	return "redis+sentinel://" + rs.Sentinel.Addr + "/" + rs.MasterName
}

// WaitReplicated returns once the replica has applied every write the
// master took so far.
func (rs *RedisSentinel) WaitReplicated(t testing.TB) {
	t.Helper()
	var m, r map[string]string
	ok := poll(15*time.Second, func() bool {
		m, r = info(rs.Master.Addr, "replication"), info(rs.Replica.Addr, "replication")
		return m["master_repl_offset"] != "" && r["master_link_status"] == "up" && r["slave_repl_offset"] == m["master_repl_offset"]
	})
	if !ok {
		t.Fatalf("testenv: replica not caught up: master offset %q, replica offset %q link %q",
			m["master_repl_offset"], r["slave_repl_offset"], r["master_link_status"])
	}
}

// CutReplica cuts the replica off the master and keeps it off: from its
// return, writes land on the master only, as with a lagging replica. The
// replica stays up and answers the Sentinel, so it can still be promoted
// (pausing it instead would leave it ineligible, and the loopback socket
// buffers would hand it the writes anyway once it resumed). Promote it
// within 10 s: Sentinel passes over a replica whose link has been down
// longer than ten down-after periods.
func (rs *RedisSentinel) CutReplica(t testing.TB) {
	t.Helper()
	for _, cmd := range [][]string{{"ACL", "SETUSER", replUser, "off"}, {"CLIENT", "KILL", "USER", replUser}} {
		if _, err := redisserver.Command(rs.Master.Addr, cmd...); err != nil {
			t.Fatalf("testenv: %s: %v", strings.Join(cmd, " "), err)
		}
	}
	if err := redisserver.Wait(rs.Replica.Addr, nil, "INFO replication", "master_link_status:down"); err != nil {
		t.Fatalf("testenv: the replica's link stayed up: %v", err)
	}
}

// Failover kills the master (SIGKILL) and returns once the Sentinel names
// the replica as the master and the replica acts as one.
func (rs *RedisSentinel) Failover(t testing.TB) {
	t.Helper()
	rs.Master.Kill()
	ok := poll(30*time.Second, func() bool {
		return strings.Contains(info(rs.Sentinel.Addr, "sentinel")["master0"], "address="+rs.Replica.Addr+",") &&
			info(rs.Replica.Addr, "replication")["role"] == "master"
	})
	if !ok {
		t.Fatalf("testenv: no failover to the replica within 30s; sentinel: %q", info(rs.Sentinel.Addr, "sentinel")["master0"])
	}
}

// info returns the fields of INFO section on addr (none on error).
func info(addr, section string) map[string]string {
	out := map[string]string{}
	reply, err := redisserver.Command(addr, "INFO", section)
	if err != nil {
		return out
	}
	for line := range strings.SplitSeq(reply, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

// poll calls cond every 20ms until it holds (true) or timeout passes.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
