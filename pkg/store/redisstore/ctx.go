package redisstore

import (
	"context"
	"time"
)

// inlineWithin: a call whose ctx has a deadline at most this far away runs
// on the caller's goroutine when the client bounds its I/O by that deadline
// (ContextTimeoutEnabled): a cancellation then returns at the deadline at
// the latest. The engine's store_timeout (800ms by default) is far below.
const inlineWithin = 2 * time.Second

// call runs f and returns as soon as ctx ends, even while f waits on a
// server that stopped answering: go-redis bounds network I/O by a ctx's
// deadline (ContextTimeoutEnabled) but not by its cancellation, which
// would hold a cancelled request until the read timeout. f then finishes
// on its own goroutine (a late error discards its connection, a late
// reply returns it to the pool); whatever it wrote is the engine's to undo
// (an Acquire's claim is released: Engine.releaseOrphan).
//
// With deadlineBound set (the client honours ctx deadlines) and a deadline
// within inlineWithin, f runs inline: a goroutine per call costs a new
// stack that go-redis grows at once, a channel and two context switches,
// which on the first-time path were a tenth of the server's CPU; a
// cancelled call is then held until that near deadline, no longer (what f
// wrote is undone as above).
func call[T any](ctx context.Context, deadlineBound bool, f func(context.Context) (T, error)) (T, error) {
	done := ctx.Done()
	if done == nil {
		return f(ctx)
	}
	if dl, ok := ctx.Deadline(); ok && deadlineBound && time.Until(dl) <= inlineWithin {
		v, err := f(ctx)
		if cerr := ctx.Err(); cerr != nil {
			// Ended while f ran: as on the goroutine path, the call fails
			// with ctx's error and what f wrote is the engine's to undo
			// (a cancelled Acquire's claim is released, not left to
			// a request that will never be forwarded).
			var zero T
			return zero, cerr
		}
		return v, err
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f(ctx)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-done:
		select {
		case r := <-ch: // finished at the same moment: keep its answer
			return r.v, r.err
		default:
		}
		var zero T
		return zero, ctx.Err()
	}
}
