package idempotency

import (
	"context"
	"time"
)

// settleTimeout bounds a settling call when the lease allows it.
const settleTimeout = 5 * time.Second

// SettleContext returns the context to settle l in (Complete or Abandon)
// once the handler has returned. It is detached from ctx's cancellation:
// the client may be gone, and the outcome must still be saved. It is
// bounded by 5s and by two thirds of the lease: renewals stop when settling
// starts, so it gives up before the lease can run out, and no retry can
// take the key over while the record may still land. Past it the claim is
// left to its lease, after which retries are told the outcome is unknown:
// the request is never run again, only its answer is not kept.
func (l *Lease) SettleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), min(settleTimeout, l.p.Lease*2/3))
}
