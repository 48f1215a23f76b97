package redisstore

import "context"

// call runs f and returns as soon as ctx ends, even while f waits on a
// server that stopped answering: go-redis bounds network I/O by a ctx's
// deadline (ContextTimeoutEnabled) but not by its cancellation, which
// would hold a cancelled request until the read timeout. f then finishes
// on its own goroutine (a late error discards its connection, a late
// reply returns it to the pool); whatever it wrote is the engine's to undo
// (an Acquire's claim is released: Engine.releaseOrphan).
func call[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	done := ctx.Done()
	if done == nil {
		return f(ctx)
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
