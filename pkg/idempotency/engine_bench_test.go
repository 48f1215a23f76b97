package idempotency_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// benchBody is a realistic ~200-byte order.
const benchBody = `{"amount":1999,"currency":"eur","customer":"cus_9s6XKzkNRiz8i3","description":"Order #10421","metadata":{"cart_id":"c_81f2a9","channel":"web"},"payment_method":"pm_card_visa","capture":true,"items":[3,7,11]}`

func benchEngine(b *testing.B) (*idempotency.Engine, *idempotency.Policy) {
	s := memstore.New(memstore.Options{})
	b.Cleanup(func() { _ = s.Close() })
	p := idempotency.DefaultPolicy()
	return idempotency.New(s), &p
}

func benchRequest(key string) *idempotency.Request {
	return request("POST", "/v1/orders?expand=customer", benchBody,
		"Idempotency-Key", key,
		"Authorization", "Bearer sk_test_4eC39HqLyjWDarjtT1zdp7dc",
		"Content-Type", "application/json",
		"User-Agent", "bench/1.0",
		"X-Request-Id", "req_0123456789")
}

var benchResponse = response(201, `{"id":"ord_10421","status":"created"}`,
	"Content-Type", "application/json", "Location", "/v1/orders/ord_10421",
	"Date", "Mon, 02 Jan 2026 03:04:05 GMT", "Content-Length", "38", "X-Request-Id", "req_0123456789")

// BenchmarkEngineMiss is a first request: Begin (fingerprint, acquire) and
// Complete (filter headers, store) on the in-memory store.
func BenchmarkEngineMiss(b *testing.B) {
	eng, p := benchEngine(b)
	ctx := context.Background()
	r := benchRequest("")
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		r.Header.Set("Idempotency-Key", "order-"+strconv.Itoa(i))
		d := eng.Begin(ctx, p, r)
		if d.Kind != idempotency.Proceed {
			b.Fatalf("decision %v", d.Kind)
		}
		if err := d.Lease.Complete(ctx, benchResponse); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEngineReplay is a retry of a completed request.
func BenchmarkEngineReplay(b *testing.B) {
	eng, p := benchEngine(b)
	ctx := context.Background()
	r := benchRequest("order-1")
	d := eng.Begin(ctx, p, r)
	if err := d.Lease.Complete(ctx, benchResponse); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := eng.Begin(ctx, p, r); d.Kind != idempotency.Replay {
			b.Fatalf("decision %v", d.Kind)
		}
	}
}

// BenchmarkFingerprint hashes a 1 KiB JSON body, as bytes and canonically.
func BenchmarkFingerprint(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"items":[`)
	for i := 0; sb.Len() < 1000; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"sku":"SKU-%04d","qty":%d,"price":%d.99}`, i, i%5+1, 10+i)
	}
	sb.WriteString(`]}`)
	body := sb.String()
	r := benchRequest("k")
	r.Body = []byte(body)
	for _, canonical := range []bool{false, true} {
		b.Run(fmt.Sprintf("canonical=%v", canonical), func(b *testing.B) {
			p := idempotency.DefaultPolicy()
			p.FingerprintHeaders = []string{"Content-Type"}
			p.CanonicalJSON = canonical
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				idempotency.FingerprintOf(&p, r)
			}
		})
	}
}

func BenchmarkParseKey(b *testing.B) {
	for _, c := range []struct{ name, raw string }{
		{"token", "8e03978e-40d5-43e8-bc93-6894a57f9324"},
		{"sf-string", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`},
	} {
		raw := c.raw
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := idempotency.ParseKey(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
