package redisstore

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/replaycache"
)

// BenchmarkEngineMiss is a first request as the server runs it on Redis:
// the engine with the server's store timeout, the replay cache in front,
// Begin (fingerprint, acquire), KeepAlive, Complete. Its allocations are
// the first-time path's, minus the ext_proc messages.
func BenchmarkEngineMiss(b *testing.B) {
	st := replaycache.New(newStore(b, redisClient(b)), replaycache.Options{TTL: 5 * time.Second})
	eng := idempotency.New(st, idempotency.WithStoreTimeout(800*time.Millisecond))
	p := idempotency.DefaultPolicy()
	body := []byte(`{"item":"sku-123","quantity":2,"amount":4200,"currency":"EUR","customer":"cus_42"}`)
	resp := &idempotency.Record{Status: 201, Body: []byte(`{"id":"ord_5f2c9a7e1b3d4c8f","status":"created"}`),
		Headers: []idempotency.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Location", Value: "/orders/ord_5f2c9a7e1b3d4c8f"}}}
	ctx := context.Background()
	prefix := testPrefix()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		r := &idempotency.Request{Method: "POST", Path: "/orders", Body: body,
			Header: http.Header{"Idempotency-Key": {prefix + strconv.Itoa(i)}, "Content-Type": {"application/json"}}}
		d := eng.Begin(ctx, &p, r)
		if d.Kind != idempotency.Proceed {
			b.Fatalf("decision %v: %v", d.Kind, d.Err)
		}
		d.Lease.KeepAlive(ctx)
		if err := d.Lease.Complete(ctx, resp); err != nil {
			b.Fatal(err)
		}
	}
}
