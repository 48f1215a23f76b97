package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
	"github.com/gopotency/gopotency/pkg/store/internal/recordcodec"
)

// BenchmarkScriptCost is Redis's own CPU time for a first-time request's
// two writes: as the store makes them (acquire.lua, then complete.lua), and
// as two plain commands of the same sizes (SET NX GET, then SET XX, on a
// string where the scripts keep a hash), which do what the scripts do on
// this path minus the checks that make them safe: the lease deadline on
// the server's clock, and the completion fenced by the claim's token,
// which Redis before 8.4 has no command for (SET IFEQ). The plain pair is
// the baseline, in the same run, on the same server, sent the same way:
// pipelines of 4, about the batch size the store's sender reaches under
// load. The kinds run in alternating chunks, each first in turn; b.N is
// requests per kind (ns/op means nothing here).
//
//	go test -run '^$' -bench ScriptCost -benchtime 40000x ./pkg/store/redisstore
func BenchmarkScriptCost(b *testing.B) {
	srv := testenv.StartRedis(b)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	b.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	for _, sc := range []*redis.Script{acquireScript, completeScript} {
		if err := sc.Load(ctx, c).Err(); err != nil {
			b.Fatal(err)
		}
	}
	rec, err := recordcodec.Marshal(&idempotency.Record{
		Status:    201,
		Headers:   []idempotency.Header{{Name: "content-type", Value: "application/json"}, {Name: "location", Value: "/orders/1"}},
		Body:      []byte(strings.Repeat("x", 213)), // the load benchmark's upstream answer
		CreatedAt: time.Now(),
	})
	if err != nil {
		b.Fatal(err)
	}
	const fp = "3f9d2c1a0b8e7d6c5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e"
	const batch = 4
	lease, retention := int64(30_000), int64(86_400_000)
	// Every call is checked to have done a first request's work: a claim
	// of a free key, then a record over it.
	scripts := func(keys []string) error {
		p := c.Pipeline()
		for _, k := range keys {
			acquireScript.EvalSha(ctx, p, []string{k}, fp, "t-"+k, lease, retention, "0", "0")
		}
		cmds, err := p.Exec(ctx)
		if err != nil {
			return err
		}
		for _, cmd := range cmds {
			if v, err := cmd.(*redis.Cmd).Slice(); err != nil || len(v) != 1 || v[0] != int64(replyAcquired) {
				return fmt.Errorf("acquire: %v %v, want [1]", v, err)
			}
		}
		for _, k := range keys {
			completeScript.EvalSha(ctx, p, []string{k}, "t-"+k, rec, retention, fp)
		}
		if cmds, err = p.Exec(ctx); err != nil {
			return err
		}
		for _, cmd := range cmds {
			if n, err := cmd.(*redis.Cmd).Int64(); err != nil || n != 1 {
				return fmt.Errorf("complete: %v %v, want 1", n, err)
			}
		}
		return nil
	}
	ttl := time.Duration(retention) * time.Millisecond
	plain := func(keys []string) error {
		p := c.Pipeline()
		for _, k := range keys {
			p.SetArgs(ctx, k, fp+"t-"+k, redis.SetArgs{Mode: "NX", Get: true, TTL: ttl})
		}
		cmds, _ := p.Exec(ctx)
		for _, cmd := range cmds {
			if err := cmd.Err(); err != redis.Nil { // nil reply: nothing was there, the key is set
				return fmt.Errorf("SET NX GET: %v, want a nil reply", err)
			}
		}
		for _, k := range keys {
			p.SetArgs(ctx, k, rec, redis.SetArgs{Mode: "XX", TTL: ttl})
		}
		cmds, err := p.Exec(ctx)
		if err != nil {
			return err
		}
		for _, cmd := range cmds {
			if v := cmd.(*redis.StatusCmd).Val(); v != "OK" {
				return fmt.Errorf("SET XX: %q, want OK", v)
			}
		}
		return nil
	}
	kinds := []struct {
		name string
		run  func([]string) error
		cpu  time.Duration
	}{{"scripts", scripts, 0}, {"plain", plain, 0}}
	const chunk = 1000
	keys := make([]string, batch)
	n := 0
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		for i := range kinds {
			k := &kinds[(i+done/chunk)%len(kinds)] // each goes first in turn
			before := redisCPU(b, c)
			for j := 0; j < min(chunk, b.N-done); j += batch {
				for x := range keys {
					n++
					keys[x] = "gopotency-cost:{" + k.name + strconv.Itoa(n) + "}"
				}
				if err := k.run(keys); err != nil {
					b.Fatal(err)
				}
			}
			k.cpu += redisCPU(b, c) - before
		}
	}
	perReq := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
	b.ReportMetric(perReq(kinds[0].cpu), "redis-µs/req-scripts")
	b.ReportMetric(perReq(kinds[1].cpu), "redis-µs/req-plain")
	if kinds[1].cpu > 0 {
		b.ReportMetric(float64(kinds[0].cpu)/float64(kinds[1].cpu), "scripts/plain")
	}
}

// redisCPU is the server's CPU time so far (INFO cpu: user + system).
func redisCPU(b *testing.B, c *redis.Client) time.Duration {
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(info, "\r\n") {
		name, v, _ := strings.Cut(line, ":")
		if name == "used_cpu_sys" || name == "used_cpu_user" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("INFO cpu %q: %v", line, err)
			}
			sum += f
		}
	}
	return time.Duration(sum * float64(time.Second))
}
