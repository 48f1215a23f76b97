package sqlcore

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Defaults for the background reaper.
const (
	DefaultReapInterval = 30 * time.Second
	DefaultReapBatch    = 500
)

// Reaper deletes expired rows in the background, in batches of a bounded
// size so no single statement holds locks (or SQLite's write lock) for
// long. Correctness never depends on it: every read checks expiry itself.
type Reaper struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// StartReaper runs s.Reap every interval until Stop. Each tick deletes
// batch rows at a time until a batch comes back short. A nil logger
// discards.
func StartReaper(s *Store, interval time.Duration, batch int, logger *slog.Logger) *Reaper {
	if interval <= 0 {
		interval = DefaultReapInterval
	}
	if batch <= 0 {
		batch = DefaultReapBatch
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Reaper{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				reapAll(ctx, s, batch, logger)
			}
		}
	}()
	return r
}

func reapAll(ctx context.Context, s *Store, batch int, logger *slog.Logger) {
	var total int64
	for ctx.Err() == nil {
		n, err := s.Reap(ctx, batch)
		total += n
		if err != nil {
			if ctx.Err() == nil {
				logger.Warn("reaping expired idempotency keys failed; expiry is still enforced on read", "store", s.name, "error", err)
			}
			break
		}
		if n < int64(batch) {
			break
		}
	}
	if total > 0 {
		logger.Debug("reaped expired idempotency keys", "store", s.name, "rows", total)
	}
}

// Stop stops the reaper and waits for a running batch to finish, so the
// connection can be closed right after. It is safe to call more than once.
func (r *Reaper) Stop() {
	r.once.Do(r.cancel)
	<-r.done
}
