// Package redisstore is the idempotency.Store backed by Redis: standalone,
// Sentinel or Cluster, through go-redis' redis.UniversalClient.
//
// # Key layout
//
// Each storage key is one Redis hash, named
//
//	<prefix>:{<storage key>}
//
// (prefix "gopotency" by default). The braces are a Cluster hash tag: only
// the storage key decides the slot, so everything a key ever needs, and any
// companion key added later, lives on one shard and one script can touch it
// atomically. The hash has at most three fields:
//
//	f  the request fingerprint (always present)
//	t  the owning token (only while in flight)
//	r  the recorded response, a gopotency.v1.Record protobuf (only once completed)
//
// The key's own expiry is the deadline: PEXPIRE sets it to the lease while
// in flight and to the retention once completed. Redis never returns a key
// past its deadline, by its own clock, so an expired claim reads as absent
// in the very call that looks at it; no reaper and no client clock take part.
//
// # Scripts
//
// Every mutating operation is one Lua script (lua/*.lua, embedded), run with
// EVALSHA and falling back to EVAL when the server does not have it cached:
//
//   - acquire: HMGET f,t,r. Absent: HSET f,t + PEXPIRE lease, "acquired".
//     Different fingerprint: "mismatch". Record present: "completed" with
//     the record. Otherwise "in flight" with PTTL as Retry-After.
//   - complete: if t equals the token, HSET r + HDEL l + PEXPIRE retention;
//     the record keeps t, so the same token completing again is a no-op
//     that succeeds (a retry whose first try landed).
//   - release: absent is a no-op; if t equals the token and there is no
//     record, DEL.
//   - extend: if t equals the token, PEXPIRE lease.
//   - get: HMGET f,r,l,t + PTTL, read atomically.
//   - delete: DEL; for an admin purge, only while t and the state are
//     those the purge read with get.
//
// A replay therefore costs one command and a first
// request two (acquire, complete): the fewest a network store can do.
// Tokens are 128 random bits and fence every write: an old owner whose
// lease ran out finds another token (or none) in t and changes nothing.
package redisstore
