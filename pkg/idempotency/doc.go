// Package idempotency is the transport-neutral core of GoPotency: it makes
// a request carrying an Idempotency-Key run once, and answers every retry
// with the stored response. Transports (ext_proc, net/http, Gin, Echo) turn
// HTTP into a Request, ask the Engine what to do, and carry out the answer.
//
// # Flow of one request
//
//  1. Precheck(policy, req) checks what the headers alone decide (method
//     guarded? key present, well formed, single?) so a bad request is
//     rejected before its body is read. continue=false means answer now.
//  2. If Policy.NeedsBody(HasKey(...)), read the body (up to
//     Policy.MaxRequestBody) into Request.Body.
//  3. Begin(ctx, policy, req) returns a Decision whose Kind says what to do.
//  4. With a Lease: call KeepAlive while the upstream runs, then exactly
//     one of Complete(response) or Abandon(upstreamSawRequest). Later
//     calls are no-ops, so deferring Abandon(ctx, true) is safe.
//
// The four kinds of Decision:
//
//   - Pass: forward untouched, record nothing (method not guarded, no key
//     on an optional route, or a store failure under FailOpen).
//   - Proceed: forward, then settle Decision.Lease with the response.
//   - Replay: answer with Decision.Record plus "Idempotent-Replayed: true";
//     the upstream is not called.
//   - Reject: answer with Decision.Problem (RFC 9457 problem+json; each
//     type is described in docs/problems.md).
//
// # Store states
//
// A Store holds each key in one of three states and changes it only
// through one atomic call each (never check-then-act):
//
//	          Acquire: new token             Complete(token)
//	absent ────────────────────▶ in flight ────────────────▶ completed
//	 ▲  ▲                        │  Extend(token) renews         │
//	 │  └─ Release(token), or ───┘  (KeepAlive)                  │
//	 │     lease runs out                                        │
//	 └─────────── retention runs out, or admin Delete ───────────┘
//
// Acquire on a live entry does not change it: in flight gives 409 with
// Retry-After (or, with Policy.WaitInFlight, a bounded wait for the
// outcome), completed gives Replay, and a different fingerprint gives 422.
//
// The lease (default 30s) bounds how long an in-flight claim survives
// without renewal, so a crashed server cannot wedge a key; KeepAlive
// renews it every lease/3 while the request runs. Retention (default 24h,
// DefaultRetention) is how long a completed record replays. A retry after
// retention runs as a new request: publish the window, as the IETF draft
// asks. Each claim carries a fencing token: once a lease expires and
// another request takes the key over, the old token's Complete, Extend and
// Release fail with ErrLeaseLost and change nothing.
//
// # What is stored
//
// Complete records status, replayable headers (ReplayableHeaders: no
// hop-by-hop, Connection-named or denylisted headers; an allowlist mode
// exists) and body. Statuses in Policy.DoNotStore (5xx, 408, 429 by
// default) release the key instead, so a retry may run. A body over
// Policy.MaxResponseBody stores a tombstone (status only, TooLarge): its
// retries get 413, never a re-run. Abandon(false) releases the key (the
// upstream provably never saw the request); Abandon(true) means the outcome
// is unknown, so the claim is left to expire rather than risk a duplicate.
//
// # Keys, scope and fingerprints
//
// ParseKey accepts an RFC 9651 sf-string or a bare token, 1..255 bytes.
// Scope hashes the caller identity (Policy.ScopeHeaders, by default
// Authorization, and optionally the transport's Principal), and StorageKey
// hashes scope and key together, so callers never share records and no
// Store ever sees a raw key or credential. Fingerprint hashes method, path
// with query, selected headers and (mode "body") the body, optionally as
// canonical JSON; it binds a key to one request. AutoKey derives a key from
// request content when the client sends none.
//
// # Failures
//
// Begin never returns an error: every failure is a Decision. A store
// failure fails closed by default (503 store-unavailable with Retry-After,
// nothing executed); Policy.FailOpen turns it into Pass, trading the
// guarantee for availability. Hooks observe decisions, store calls,
// renewals and settlements for metrics.
package idempotency
