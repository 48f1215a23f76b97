package idempotency

import "time"

// DefaultSettleTimeout bounds the store call that settles a lease (Complete
// or Abandon, retries included) once the handler has returned. Transports
// run that call detached from the request, whose client may be gone, so
// something must bound it; every front end uses this one default. Past it
// the claim is left to its lease, after which retries are told the outcome
// is unknown: the request is never run again, only its answer is not kept.
const DefaultSettleTimeout = 5 * time.Second
