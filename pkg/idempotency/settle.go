package idempotency

import "time"

// DefaultSettleTimeout bounds the store call that settles a lease (records
// the outcome or releases the key) once the handler is done. It runs
// detached from the request, whose client may be gone. It is declared
// here, beside the engine every front end shares, so the front ends need
// not each write their own.
const DefaultSettleTimeout = 10 * time.Second
