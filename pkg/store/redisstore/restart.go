package redisstore

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRestartGrace is how long new claims are refused after Redis lost
// data: a third of the default lease (the renewal interval, within which
// every live lease re-asserts its claim) plus a second of slack.
const DefaultRestartGrace = 11 * time.Second

// Watch notices when Redis lost data it held: a server restarted without
// persistence (its run id changes) or a failover to a replica (the
// master's run id changes; in a Cluster, a master at an address not seen
// when the store started). Claims of requests still running
// may be gone then, and a duplicate could claim the key and run again. So
// the Watch
//
//   - tells every Store using it, which re-creates at once the claims it
//     holds (see held);
//   - makes the store refuse new claims for the grace period (a 503 with
//     Retry-After; replays and 409s are still answered), long enough for
//     every other server to re-assert its leases at its next renewal.
//
// It learns of a new server through the client's OnConnect hook: after a
// restart or failover every client reconnects before it can send anything,
// so no command from a running instance reaches the new server unobserved.
// An instance that starts after the restart has no run id to compare and
// takes the server as it finds it; a duplicate it receives within the
// grace period of another instance's lost claim could run (see
// docs/redis.md: persistence closes that gap). NewFromURL installs it;
// for a client you build yourself, set Watch.OnConnect as
// redis.Options.OnConnect (or FailoverOptions.OnConnect; for a Cluster use
// Watch.NodeHook in ClusterOptions.NewClient, then NodesKnown once
// ForEachMaster has met every master) and pass the Watch in Options.
// A renewal that finds its claim gone (Extend) also counts as a loss.
type Watch struct {
	grace  time.Duration
	now    func() time.Time
	logger atomic.Pointer[slog.Logger]

	// losses counts the losses seen, so a call can tell one happened
	// while it was under way (its connection dialled to the new server).
	losses atomic.Int64

	mu       sync.Mutex
	runIDs   map[string]string // node → run id last seen
	watching bool              // OnConnect has reported a server
	// nodesKnown: the Cluster's masters at start were all seen
	// (NodesKnown); a master met later is a failover or a resharding.
	nodesKnown bool
	graceUntil time.Time
	callbacks  []func()
	noInfo     sync.Once
}

// NewWatch returns a Watch with the given grace period (0 disables the
// refusal of new claims; leases are still re-asserted).
func NewWatch(grace time.Duration) *Watch {
	w := &Watch{grace: max(grace, 0), now: time.Now, runIDs: map[string]string{}}
	w.logger.Store(slog.New(slog.DiscardHandler))
	return w
}

func (w *Watch) log() *slog.Logger { return w.logger.Load() }

// OnConnect is a redis.Options.OnConnect hook for a standalone or
// Sentinel-managed server.
func (w *Watch) OnConnect(ctx context.Context, cn *redis.Conn) error {
	return w.hook("server", false)(ctx, cn)
}

// NodeHook returns the OnConnect hook for one Cluster node (by address).
// Call NodesKnown once the client has met every master.
func (w *Watch) NodeHook(node string) func(context.Context, *redis.Conn) error {
	return w.hook(node, true)
}

// NodesKnown marks the Cluster's current masters as seen (NewFromURL calls
// it after meeting each one): from then on a master at a new address is
// taken for a promoted replica, which may lack the latest claims, and
// counts as a loss. A planned resharding onto new masters costs one grace
// period of 503s for new keys; missing a failover could run a request
// twice.
func (w *Watch) NodesKnown() {
	w.mu.Lock()
	w.nodesKnown = true
	w.mu.Unlock()
}

func (w *Watch) hook(node string, cluster bool) func(context.Context, *redis.Conn) error {
	return func(ctx context.Context, cn *redis.Conn) error {
		info, err := cn.Info(ctx, "server").Result()
		if err != nil {
			// Never fail the connection over this (INFO may be renamed or
			// denied by an ACL); say once that restarts go unnoticed until
			// a renewal finds its claim gone.
			w.noInfo.Do(func() {
				w.log().Warn("redisstore: INFO server failed; a Redis restart is noticed only by the next lease renewal", "error", err)
			})
			return nil
		}
		fields := infoFields(info)
		if fields["redis_mode"] == "sentinel" {
			// go-redis runs FailoverOptions.OnConnect on its Sentinel
			// connections too; a Sentinel holds no claims.
			return nil
		}
		runID := fields["run_id"]
		if runID == "" {
			return nil
		}
		if w.observe(node, runID, fields["uptime_in_seconds"]) && cluster && isMaster(ctx, cn) {
			w.claimsLost("a Cluster master not seen at start (failover or resharding)", "node", node)
		}
		return nil
	}
}

// isMaster reports whether the connection's server is a master; a replica
// met later (read_only routing) holds no claims of its own.
func isMaster(ctx context.Context, cn *redis.Conn) bool {
	info, err := cn.Info(ctx, "replication").Result()
	return err != nil || infoFields(info)["role"] != "slave" // unknown: assume the worst
}

// observe records node's run id and reports a loss when a known node came
// back with another one. It returns true for a node first met after
// NodesKnown.
func (w *Watch) observe(node, runID, uptimeSeconds string) (newNode bool) {
	w.mu.Lock()
	prev, seen := w.runIDs[node]
	w.runIDs[node] = runID
	w.watching = true
	late := w.nodesKnown
	w.mu.Unlock()
	if !seen {
		// The first server a process meets is taken as is: refusing new
		// keys whenever a young Redis is met would stall every fresh
		// deployment, to guard against a rarer case (see the docs).
		return late
	}
	if prev == runID {
		return false
	}
	// A server we knew was replaced (restart or failover): claims held
	// here and by every other instance may be gone.
	w.claimsLost("Redis run id changed (restart or failover)", "node", node, "uptime_seconds", uptimeSeconds)
	return false
}

// claimVanished is a renewal that found its claim gone. On a watched
// server (OnConnect installed) a restart or failover is seen on reconnect,
// so a lone vanished claim was purged or evicted: the other leases are
// re-asserted, but new keys are not refused. Unwatched, it may be the only
// sign of lost data, and counts as a loss.
func (w *Watch) claimVanished() {
	w.mu.Lock()
	watching := w.watching
	cbs := append([]func(){}, w.callbacks...)
	w.mu.Unlock()
	if !watching {
		w.claimsLost("a renewal found its claim gone")
		return
	}
	for _, f := range cbs {
		go f()
	}
}

// claimsLost records a loss: the server was replaced, or a renewal found
// its claim gone. New claims are refused for the grace period and every
// Store using the Watch re-creates the claims it holds.
func (w *Watch) claimsLost(reason string, attrs ...any) {
	w.mu.Lock()
	if until := w.now().Add(w.grace); until.After(w.graceUntil) {
		w.graceUntil = until
	}
	cbs := append([]func(){}, w.callbacks...)
	w.losses.Add(1)
	w.mu.Unlock()
	w.log().Warn("redisstore: claims may have been lost; re-asserting held leases and refusing new keys for the grace period",
		append([]any{"reason", reason, "grace", w.grace.String()}, attrs...)...)
	for _, f := range cbs {
		go f() // never inside a dial: re-asserting needs connections
	}
}

// graceLeft is how long new claims are still refused.
func (w *Watch) graceLeft() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return max(w.graceUntil.Sub(w.now()), 0)
}

func (w *Watch) onClaimsLost(f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.callbacks = append(w.callbacks, f)
}
