package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The store's script calls that arrive while others are on the wire go out
// together as one pipeline: one write and one read for them all, on this
// end and on Redis's, where each call alone costs a loopback write that
// wakes the other side — most of a first request's store cost. A call that
// finds nothing on the wire goes out at once, so an idle store adds no
// delay. One goroutine sends the batches; it keeps its grown stack (go-redis
// calls run deep) and exits after idleExit without work, so a Store needs
// no Close to free it. Only a client of one server (standalone or
// Sentinel) batches: a Cluster pipeline waits for every master it touches,
// so one master down would hold up the keys of all the others.
//
// go-redis sends a pipeline again when its connection drops mid-way; the
// scripts make that harmless: a re-sent call never makes a second claimant
// or touches another token's claim or record (acquire.lua answers a
// re-sent claim as acquired, complete.lua a re-sent record as done). A
// re-sent release or delete may then report the key lost or changed,
// which the engine treats as it treats any lost lease.
type batcher struct {
	client *redis.Client

	mu      sync.Mutex
	queue   []*op
	running bool          // a sender goroutine exists
	wake    chan struct{} // cap 1: work was queued

	// The sender's own.
	pipe        redis.Pipeliner
	spare       []*op
	unreachable error     // why the last batch could not reach Redis
	downUntil   time.Time // calls before this fail unsent (downFor)
}

// idleExit: how long the sender waits for work before it exits.
const idleExit = 2 * time.Second

// maxBatch bounds one pipeline, so one write stays a modest size.
const maxBatch = 128

// downFor: how long after a batch found Redis unreachable calls fail
// unsent; go-redis's pool, too, re-dials a server that refused it about
// once a second.
const downFor = time.Second

// maxBatchTime bounds a batch on a server that does not answer: a call
// with a later deadline, or none, then fails as unavailable. The engine's
// calls each have store_timeout (800 ms by default), well within it.
const maxBatchTime = 2 * time.Second

// op is one script call and its reply.
type op struct {
	ctx  context.Context
	sc   *redis.Script
	keys [1]string
	args []any
	cmd  *redis.Cmd
	err  error
	done chan struct{} // cap 1: the reply is in
}

var opPool = sync.Pool{New: func() any { return &op{done: make(chan struct{}, 1)} }}

// eval runs sc on key with args and returns its reply once it is in, or
// ctx's error as soon as ctx ends: what the call wrote is then the
// engine's to undo (an Acquire's claim is released: Engine.releaseOrphan).
func (b *batcher) eval(ctx context.Context, sc *redis.Script, key string, args ...any) (*redis.Cmd, error) {
	o := opPool.Get().(*op)
	o.ctx, o.sc, o.keys[0], o.args = ctx, sc, key, args
	b.mu.Lock()
	b.queue = append(b.queue, o)
	if !b.running {
		b.running = true
		if b.wake == nil {
			b.wake = make(chan struct{}, 1)
			b.pipe = b.client.Pipeline()
		}
		go b.send()
	}
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	select {
	case <-o.done:
		cmd, err := o.cmd, o.err
		*o = op{done: o.done}
		opPool.Put(o)
		return cmd, err
	case <-ctx.Done():
		// o stays with the sender, which still answers it (into done's
		// buffer, read by nobody); it is not reused.
		return nil, ctx.Err()
	}
}

// send is the sender goroutine: it takes what is queued, sends it as one
// pipeline, answers each call, and repeats until idle for idleExit.
func (b *batcher) send() {
	idle := time.NewTimer(idleExit)
	defer idle.Stop()
	for {
		// Yield first: goroutines already runnable here (a stream with a
		// message in, callers the last batch answered) then add their
		// calls to this batch, not the next one; a woken sender would
		// otherwise run before them. Idle, the yield returns at once.
		runtime.Gosched()
		// Two slices take turns: callers append to one while the other's
		// batch is on the wire.
		b.mu.Lock()
		batch := b.queue
		if len(batch) > maxBatch {
			batch = batch[:maxBatch]
			b.queue = append(b.spare[:0], b.queue[maxBatch:]...)
		} else {
			b.queue = b.spare[:0]
		}
		b.spare = nil
		b.mu.Unlock()
		if len(batch) > 0 {
			b.exec(batch)
			clear(batch)
			b.spare = batch[:0]
			continue
		}
		idle.Reset(idleExit)
		select {
		case <-b.wake:
			continue
		case <-idle.C:
		}
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
	}
}

// exec sends batch as one pipeline and answers each call. For downFor
// after a batch could not reach Redis (dial failed, go-redis's retries
// spent, or no answer by the batch's deadline), calls fail with that
// batch's error unsent, so a dead server is reported once per round of
// calls, not once per batch in turn.
func (b *batcher) exec(batch []*op) {
	if b.unreachable != nil && time.Now().Before(b.downUntil) {
		for _, o := range batch {
			o.err = fmt.Errorf("not sent: a batch found Redis unreachable moments ago: %w", b.unreachable)
			o.done <- struct{}{}
		}
		return
	}
	b.unreachable = nil
	// The pipeline runs until the latest deadline among its calls, within
	// maxBatchTime; a call whose own deadline comes first has returned by
	// then.
	limit := time.Now().Add(maxBatchTime)
	var latest time.Time
	live := 0
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.err = err // gone already: not sent
			continue
		}
		dl, ok := o.ctx.Deadline()
		if !ok || dl.After(limit) {
			dl = limit
		}
		if dl.After(latest) {
			latest = dl
		}
		o.cmd = o.sc.EvalSha(context.Background(), b.pipe, o.keys[:], o.args...)
		live++
	}
	if live > 0 {
		// Cancelled at that deadline, so go-redis's dial retries and
		// backoff sleeps stop there too, not only its socket I/O.
		ctx, cancel := context.WithDeadline(context.Background(), latest)
		defer cancel()
		b.send1(ctx, latest.Equal(limit))
		// NOSCRIPT: Redis lost its script cache (a restart, a failover,
		// SCRIPT FLUSH) and ran nothing; EVAL sends the source and loads
		// it. A call whose ctx ended meanwhile is not sent again.
		again := false
		for _, o := range batch {
			if o.err != nil || !redis.HasErrorPrefix(o.cmd.Err(), "NOSCRIPT") {
				continue
			}
			if err := o.ctx.Err(); err != nil {
				o.err = err
				continue
			}
			o.cmd = o.sc.Eval(context.Background(), b.pipe, o.keys[:], o.args...)
			again = true
		}
		if again {
			b.send1(ctx, latest.Equal(limit))
		}
		if ctx.Err() != nil {
			// Calls cut by the batch's deadline with time left on their
			// own fail as the server's silence, not as their ctx ending.
			// A reply that came in stands.
			for _, o := range batch {
				if o.err != nil || !timedOut(o.cmd.Err()) {
					continue
				}
				if dl, ok := o.ctx.Deadline(); !ok || dl.After(latest) {
					o.err = errNoAnswer
				}
			}
		}
	}
	for _, o := range batch {
		o.done <- struct{}{}
	}
}

// send1 sends what b.pipe holds; each call's own error is in its cmd.
// capped: ctx's deadline is maxBatchTime away, not a caller's.
func (b *batcher) send1(ctx context.Context, capped bool) {
	_, err := b.pipe.Exec(ctx)
	switch {
	case isDialError(err):
		b.unreachable = err
	case capped && ctx.Err() != nil:
		b.unreachable = errNoAnswer
	default:
		return
	}
	b.downUntil = time.Now().Add(downFor)
}

// errNoAnswer: the batch reached its deadline, which is not the caller's
// (its ctx had time left), so it must not read as the caller's ctx ending.
var errNoAnswer = fmt.Errorf("no answer from Redis by the batch's deadline (at most %s)", maxBatchTime)

// timedOut: err is a deadline's, the batch ctx's or the socket's.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
