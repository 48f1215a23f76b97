package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gopotency/gopotency/internal/loadgen"
	"github.com/gopotency/gopotency/pkg/idempotency"
)

// The soak (-soak D): mixed load through Envoy on gopotency (Redis) for D,
// in one-minute slices, with the server's RSS, goroutines and Go heap
// sampled between slices, so a leak shows as growth and a slowdown as a
// rising p99.

// soakMix is the share of each kind of request, out of 10: 4 first-time,
// 2 replays, 2 GETs, 2 un-keyed POSTs.
var soakMix = [10]string{"first", "replay", "get", "first", "unkeyed", "first", "replay", "get", "first", "unkeyed"}

// soakSample is the server's state at one instant.
type soakSample struct {
	At         time.Duration `json:"at_s"` // since the soak started
	RSSBytes   int64         `json:"rss_bytes"`
	Goroutines int64         `json:"goroutines"`
	HeapBytes  int64         `json:"heap_inuse_bytes"`
}

// soakSlice is one minute (or the last, shorter slice) of load.
type soakSlice struct {
	Summary loadgen.Summary `json:"-"`
	RPS     float64         `json:"rps"`
	P50Ms   float64         `json:"p50_ms"`
	P99Ms   float64         `json:"p99_ms"`
	Errors  int             `json:"errors"`
	Kinds   map[string]int  `json:"error_kinds,omitempty"`
	After   soakSample      `json:"after"`
}

type soakReport struct {
	Target   string      `json:"target"`
	Duration string      `json:"duration"`
	Workers  int         `json:"workers"`
	Start    soakSample  `json:"start"` // before any load
	Slices   []soakSlice `json:"minutes"`
	Flags    []string    `json:"flags,omitempty"`
	// Forwarded is the requests answered 201 that are not replays
	// (first-time, GET, un-keyed): each must have reached the application
	// once, and the replays never, so UpstreamCalls must equal it.
	Forwarded     int   `json:"forwarded_ok"`
	UpstreamCalls int64 `json:"upstream_calls"`
}

// soak runs the mixed load on t for d.
func (b *bench) soak(ctx context.Context, t target, d time.Duration, progress io.Writer) (*soakReport, error) {
	rep := &soakReport{Target: t.Name, Duration: d.String(), Workers: b.workers}
	run := b.nextRun()
	byName := map[string]scenario{}
	for _, s := range scenarios {
		byName[s.Name] = s
	}
	first := byName["first"]
	calls0, err := upstreamCalls(b.upstream.addrs[0])
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if rep.Start, err = serverSample(t, 0); err != nil {
		return nil, err
	}
	var forwarded atomic.Int64
	for slice := 0; time.Since(start) < d; slice++ {
		left := d - time.Since(start)
		sliceRun := fmt.Sprintf("%s-m%d", run, slice)
		// One completed key per worker for its replays, new each minute:
		// the benchmark's servers keep records 10 minutes, and a replay
		// key older than that would rightly run again.
		replayKey := func(w int) string { return fmt.Sprintf(`"bench-%s%s%d"`, sliceRun, replayMarker, w) }
		for w := range b.workers {
			if err := b.once(t, first, replayKey(w)); err != nil {
				return nil, fmt.Errorf("soak: completing replay key: %w", err)
			}
			forwarded.Add(1)
		}
		res, err := loadgen.Run(ctx, loadgen.Options{
			Client: b.client, Workers: b.workers, Duration: min(time.Minute, left),
			NewRequest: func(w, n int) (*http.Request, error) {
				sc := byName[soakMix[(w+n)%len(soakMix)]]
				key := sc.key(sliceRun, w, n)
				if sc.replayed {
					key = replayKey(w)
				}
				return b.request(t, sc, key)
			},
			Check: func(resp *http.Response) error {
				if resp.StatusCode != http.StatusCreated {
					return fmt.Errorf("HTTP %d", resp.StatusCode)
				}
				key := resp.Request.Header.Get("Idempotency-Key")
				want := ""
				if strings.Contains(key, replayMarker) {
					want = "true"
				}
				if got := resp.Header.Get(idempotency.ReplayedHeader); got != want {
					return fmt.Errorf("Idempotent-Replayed %q, want %q", got, want)
				}
				if want == "" {
					forwarded.Add(1)
				}
				return nil
			},
		})
		if err != nil {
			return nil, err
		}
		after, err := serverSample(t, time.Since(start))
		if err != nil {
			return nil, err
		}
		s := res.Summarize()
		rep.Slices = append(rep.Slices, soakSlice{Summary: s, RPS: s.RPS, P50Ms: float64(s.P50) / float64(time.Millisecond), P99Ms: float64(s.P99) / float64(time.Millisecond), Errors: s.Errors, Kinds: res.ErrorKind, After: after})
		fmt.Fprintf(progress, "soak minute %2d: %7.0f req/s  p50 %-9s p99 %-9s errors %d  rss %s  goroutines %d  heap %s\n",
			slice+1, s.RPS, ms(s.P50), ms(s.P99), s.Errors, mib(after.RSSBytes), after.Goroutines, mib(after.HeapBytes))
	}
	calls1, err := upstreamCalls(b.upstream.addrs[0])
	if err != nil {
		return nil, err
	}
	rep.Forwarded, rep.UpstreamCalls = int(forwarded.Load()), calls1-calls0
	rep.Flags = rep.flags()
	return rep, nil
}

// flags are what the soak shows that it should not: errors, growth of
// the server's memory or goroutines from the end of the first minute (the
// warm state: pools and caches full) to the end, a p99 that rises, and
// requests that did not reach the application exactly as often as they
// should.
func (r *soakReport) flags() []string {
	var out []string
	n := len(r.Slices)
	if n == 0 {
		return []string{"soak: no load was measured"}
	}
	errs := 0
	for _, s := range r.Slices {
		errs += s.Errors
	}
	if errs > 0 {
		out = append(out, fmt.Sprintf("soak: %d requests failed", errs))
	}
	if r.UpstreamCalls != int64(r.Forwarded) && errs == 0 {
		out = append(out, fmt.Sprintf("soak: %d requests other than replays answered 201 but the application ran %d times (a replay reached it, or a first-time key repeated)", r.Forwarded, r.UpstreamCalls))
	}
	if n < 3 {
		return out // too short to tell growth from warming up
	}
	warm, end := r.Slices[0].After, r.Slices[n-1].After
	// Noise allowances: the heap breathes with GC (GOGC 400), goroutines
	// with the requests in flight at the instant of the sample.
	if end.RSSBytes > warm.RSSBytes+warm.RSSBytes/4+16<<20 {
		out = append(out, fmt.Sprintf("soak: server RSS grew from %s to %s", mib(warm.RSSBytes), mib(end.RSSBytes)))
	}
	if end.Goroutines > warm.Goroutines+int64(2*r.Workers)+20 {
		out = append(out, fmt.Sprintf("soak: goroutines grew from %d to %d", warm.Goroutines, end.Goroutines))
	}
	p99first := r.Slices[0].P99Ms
	if last := r.Slices[n-1].P99Ms; p99first > 0 && last > 2*p99first {
		out = append(out, fmt.Sprintf("soak: p99 rose from %.2f ms (minute 1) to %.2f ms (last)", p99first, last))
	}
	return out
}

// serverSample reads the server's RSS from /proc and its goroutines and
// heap from its /metrics.
func serverSample(t target, at time.Duration) (soakSample, error) {
	s := soakSample{At: at / time.Second}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", t.server.PID()))
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			s.RSSBytes = kb << 10
		}
	}
	f.Close()
	if len(t.server.addrs) < 2 {
		return s, fmt.Errorf("%s: no admin address for /metrics", t.Name)
	}
	resp, err := http.Get("http://" + t.server.addrs[1] + "/metrics")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	sc = bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		x, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
		switch name {
		case "go_goroutines":
			s.Goroutines = int64(x)
		case "go_memstats_heap_inuse_bytes":
			s.HeapBytes = int64(x)
		}
	}
	return s, sc.Err()
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func (r *soakReport) writeMarkdown(w io.Writer, f facts) {
	fmt.Fprintf(w, "## Soak: %s, mixed load for %s\n\n", r.Target, r.Duration)
	fmt.Fprintf(w, "%d keep-alive clients, closed loop; of every 10 requests 4 first-time keyed POSTs (new keys), 2 replays, 2 GETs, 2 un-keyed POSTs. Server state sampled between one-minute slices (RSS from /proc, goroutines and heap in use from its /metrics).\n\n", r.Workers)
	fmt.Fprintln(w, "| Minute | req/s | p50 | p99 | errors | server RSS | goroutines | Go heap in use |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| start (idle) | — | — | — | — | %s | %d | %s |\n", mib(r.Start.RSSBytes), r.Start.Goroutines, mib(r.Start.HeapBytes))
	for i, s := range r.Slices {
		fmt.Fprintf(w, "| %d | %.0f | %.2f ms | %.2f ms | %d | %s | %d | %s |\n", i+1, s.RPS, s.P50Ms, s.P99Ms, s.Errors, mib(s.After.RSSBytes), s.After.Goroutines, mib(s.After.HeapBytes))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Requests other than replays answered 201: %d; application calls: %d (equal: no replay reached the application, no first-time request was replayed).\n\n", r.Forwarded, r.UpstreamCalls)
	if len(r.Flags) == 0 {
		fmt.Fprintln(w, "No growth flagged (RSS within 25% + 16 MiB and goroutines within 2 per client + 20 of the end of minute 1; p99 of the last minute within 2× the first's; no errors).")
	} else {
		for _, fl := range r.Flags {
			fmt.Fprintf(w, "- **FLAG**: %s\n", fl)
		}
	}
	fmt.Fprintf(w, "\nCommand: `%s`; %s, %d CPUs, load average %s before the run.\n", f.Command, f.Date, f.CPUs, f.LoadAvg)
}

func (r *soakReport) writeJSON(w io.Writer, f facts) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Facts facts       `json:"facts"`
		Soak  *soakReport `json:"soak"`
	}{f, r})
}
