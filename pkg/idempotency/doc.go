// Package idempotency is the transport-neutral core of GoPotency: it makes
// a request carrying an Idempotency-Key run once, and answers every retry
// with the stored response. Transports (ext_proc, net/http, Gin, Echo,
// Fiber) turn HTTP into a Request (gRPC calls and functions into an
// Operation), ask the Engine what to do, and carry out the answer.
//
// # Flow of one request
//
//  1. Precheck(policy, req) checks what the headers alone decide (method
//     guarded? key present, well formed, single?) so a bad request is
//     rejected before its body is read. continue=false means answer now.
//  2. If Policy.NeedsBody(req), read the body (up to
//     Policy.MaxRequestBody) into Request.Body.
//  3. Begin(ctx, policy, req) returns a Decision whose Kind says what to do.
//  4. With a Lease: call KeepAlive while the upstream runs, then exactly
//     one of Complete(record) or Abandon(upstreamSawRequest). The saving
//     is the lease's (detached from the client, bounded by the lease);
//     ctx only bounds how long the call waits for it. Later calls are
//     no-ops, so deferring Abandon(ctx, true) is safe.
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
// # States
//
// One vocabulary, State, serves the Store contract, the engine and the
// admin view. A key is absent or holds an Entry in one of three states,
// changed only by one atomic Store call each (never check-then-act):
//
//	          Acquire: new token              Complete(token)
//	absent ────────────────────▶ InFlight ──────────────────▶ Completed
//	 ▲  ▲                        │   ▲  Extend(token) renews       │
//	 │  └── Release(token) ──────┘   │  (KeepAlive), and           │
//	 │                     lease runs│  re-creates a vanished claim│
//	 │                       out ▼   │                             │
//	 │                     LeaseExpired ── Complete(token) ────────▶│
//	 └──── retention runs out, or admin Delete (any state) ────────┘
//
// Acquire answers with the state it found, or Acquired (the claim is now
// the caller's) or Mismatch (the key is bound to another fingerprint,
// whatever its state). Begin turns that answer into a Decision: Acquired
// is Proceed; InFlight is 409 with Policy.RetryAfter (or, with
// Policy.WaitInFlight, a bounded wait for the outcome); Completed is
// Replay, or the problem its Record.Mark stands for; Mismatch is 422; and
// LeaseExpired is 424 outcome-unknown: its holder stopped renewing (it
// crashed, or lost the store), its request may have run, so the key is not
// free. Under Policy.UnknownOutcome retry_after_lease such a claim is
// taken over instead, and the old token is fenced off (its Complete,
// Extend and Release fail with ErrLeaseLost).
//
// # Leases
//
// A claim (Claim: key, token, fingerprint, lease, retention) is held by one
// token. Its lease (default 30s) says whether the holder is alive;
// KeepAlive renews it every lease/3 while the request runs. A claim is kept
// for the retention from when it was made, a record for the retention
// (default 24h) from when it was written; expiry is judged by the store's
// clock at each call. A retry after the retention runs as a new request:
// publish the window, as the IETF draft asks. A record keeps the token
// that completed it, so a Complete retried after a lost reply succeeds,
// and Delete with the Entry seen deletes only that entry.
//
// # When a store loses data
//
// A claim that vanished while its holder runs (an admin purge, a Redis
// restarted without persistence, a failover to a replica that lacked the
// write) is re-created by the holder's next Extend or Complete, which
// succeed on an absent key; only another token's claim or record fences a
// token off. Until then a duplicate could find the key free, so a store
// that can lose data closes that gap itself, where the loss is detected:
// the Redis store remembers the claims it made until they settle, and when
// it sees its server replaced (or a renewal finds its claim gone) it
// re-creates them at once and refuses new keys for a grace period
// (redisstore.Watch, docs/redis.md). The engine knows nothing of it.
//
// # What is stored
//
// Lease.Complete takes the Record the transport captured and keeps its
// status, replayable headers (no hop-by-hop, Connection-named or
// denylisted headers; an allowlist mode exists) and body. Statuses in
// Policy.DoNotStore (5xx, 408, 429 by default) release the key instead, so
// a retry may run. Record.Mark says when a record is not a whole response,
// and every mark is answered, never re-run: MarkTooLarge (the body was over
// Policy.MaxResponseBody; a tombstone, retries get 413), MarkIncomplete (the
// body was cut off after the head; 424 response-incomplete with the
// status), MarkUnknown (Abandon(true): the request was forwarded and never
// answered; 424 outcome-unknown, or under retry_after_lease the claim is
// left to its lease) and MarkEvicted (a record a full memory store dropped;
// 424 response-evicted with its status). Abandon(false) releases the key:
// the upstream provably never saw the request. A settling call that fails
// on a transient store error is retried with backoff on its own goroutine,
// within 5s and two thirds of the lease; the caller waits for it while its
// ctx lasts (Lease.Saved, Engine.Wait).
//
// # Keys, scope and fingerprints
//
// A key header holds an RFC 9651 sf-string or a bare token, 1..255 bytes.
// The caller scope hashes the caller identity (Policy.ScopeHeaders, by
// default Authorization, and optionally the transport's Principal), and
// StorageKey hashes scope and key together, so callers never share records and no
// Store ever sees a raw key or credential. The fingerprint hashes method, path
// with query, selected headers and (mode "body") the body, optionally as
// canonical JSON; it binds a key to one request. Policy.AutoKey derives a
// key from request content when the client sends none.
//
// # Failures
//
// Begin never returns an error: every failure is a Decision. A store
// failure fails closed by default (503 store-unavailable with Retry-After,
// nothing executed); Policy.FailOpen turns it into Pass, trading the
// guarantee for availability. Hooks observe decisions, store calls,
// renewals and settlements (Hooks.Settled names how each lease ended) for
// metrics.
package idempotency
