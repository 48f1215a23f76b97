// Package redisstore is the idempotency.Store backed by Redis: standalone,
// Sentinel or Cluster, through go-redis' redis.UniversalClient.
//
// Each storage key is one Redis hash, <prefix>:{<storage key>} (the braces
// are a Cluster hash tag, so one script can touch all of a key atomically),
// with the fields f (fingerprint), t (owner token), l (lease deadline on the
// server's clock, while a claim) and r (the record, once completed); the
// key's TTL is the retention. Every operation is one Lua script
// (lua/*.lua): a replay costs one command, a first request two (acquire,
// complete). On one server (standalone or Sentinel), calls that arrive
// while others are on the wire go out together as one pipeline
// (batch.go). With Options.Replicas, the acquire is followed by WAIT on the
// same connection, so a failover cannot lose a claim whose request runs.
//
// docs/redis.md is the one full description: the key layout, each
// script's logic, restarts, failovers and what survives them, memory
// settings and the commands per request.
package redisstore
