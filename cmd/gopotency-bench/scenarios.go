package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/gopotency/gopotency/internal/envoyrun"
	"github.com/gopotency/gopotency/internal/loadgen"
	"github.com/gopotency/gopotency/pkg/idempotency"
)

// requestBody is what every POST sends: a small JSON order.
var requestBody = []byte(`{"item":"sku-123","quantity":2,"amount":4200,"currency":"EUR","customer":"cus_42"}`)

// replayMarker is in every replay scenario key: the floor server replays
// the keys that carry it, since it stores nothing.
const replayMarker = "-replay-"

// scenario is one kind of request, sent to every target.
type scenario struct {
	Name   string // flag value
	Title  string // table label
	Method string
	// key returns the Idempotency-Key of a request ("" for none); run
	// makes keys unique per measured run.
	key func(run string, worker, n int) string
	// replayed is whether an ext_proc target must answer from the store.
	replayed bool
}

var scenarios = []scenario{
	{Name: "get", Title: "GET", Method: http.MethodGet,
		key: func(string, int, int) string { return "" }},
	{Name: "unkeyed", Title: "un-keyed POST", Method: http.MethodPost,
		key: func(string, int, int) string { return "" }},
	// One completed key per worker: every request is a replay, and
	// workers do not contend on one key.
	{Name: "replay", Title: "replay (completed key)", Method: http.MethodPost, replayed: true,
		key: func(run string, w, _ int) string { return fmt.Sprintf(`"bench-%s%s%d"`, run, replayMarker, w) }},
	{Name: "first", Title: "first-time keyed POST", Method: http.MethodPost,
		key: func(run string, w, n int) string { return fmt.Sprintf(`"bench-%s-%d-%d"`, run, w, n) }},
}

// Target kinds.
const (
	kindEnvoy     = "envoy"     // Envoy alone, the baseline
	kindFloor     = "floor"     // Envoy + the do-nothing ext_proc server
	kindGopotency = "gopotency" // Envoy + gopotency
)

// target is one Envoy and what stands behind it.
type target struct {
	Name  string
	Kind  string
	URL   string
	envoy *envoyrun.Envoy
	// server is gopotency or the floor (nil for the baseline); store is
	// the Redis process of a Redis target (0: none, or in-process).
	server    *child
	storePID  int
	storeTree bool // count the store's child processes too (PostgreSQL)
}

func (t target) extProc() bool { return t.Kind != kindEnvoy }

// Envoy's ext_proc counters.
const (
	statMsgs    = "http.ingress.ext_proc.stream_msgs_sent"
	statStreams = "http.ingress.ext_proc.streams_started"
)

// stat returns one of the target's Envoy counters, or -1 when it has no
// ext_proc filter or the admin endpoint does not answer.
func (t target) stat(name string) int64 {
	if !t.extProc() || t.envoy == nil {
		return -1
	}
	n, err := t.envoy.Stat(name)
	if err != nil {
		return -1
	}
	return n
}

// Processes whose CPU time is charged to a target's row.
var components = []string{"envoy", "server", "store", "upstream", "client"}

// pids returns the processes of components (0: none), upstream being the
// application shared by every target.
func (t target) pids(upstream int) map[string]int {
	m := map[string]int{"envoy": t.envoy.PID(), "upstream": upstream, "client": os.Getpid(), "store": t.storePID}
	if t.server != nil {
		m["server"] = t.server.PID()
	}
	return m
}

// bench holds what every measurement shares.
type bench struct {
	client   *http.Client
	workers  int
	duration time.Duration
	warmup   time.Duration
	rounds   int
	upstream *child
	runID    string // unique per process, so keys never collide with older runs
	seq      int
}

func (b *bench) request(t target, sc scenario, key string) (*http.Request, error) {
	var body io.Reader
	if sc.Method != http.MethodGet {
		body = bytes.NewReader(requestBody)
	}
	req, err := http.NewRequest(sc.Method, t.URL+"/orders", body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	return req, nil
}

// check accepts only the upstream's 201, replayed exactly when it should be.
func check(t target, sc scenario) func(*http.Response) error {
	want := ""
	if t.extProc() && sc.replayed {
		want = "true"
	}
	return func(resp *http.Response) error {
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if got := resp.Header.Get(idempotency.ReplayedHeader); got != want {
			return fmt.Errorf("Idempotent-Replayed %q, want %q", got, want)
		}
		return nil
	}
}

// measureAll measures sc on every target: a warm-up of each, then rounds
// that visit the targets in turn, each for duration/rounds. Interleaving
// spreads the drift of a shared machine (other processes, CPU frequency)
// over all targets instead of charging it to whichever ran last. Each round
// starts one target further on, so no target always runs in the same slot
// right after the same other target.
func (b *bench) measureAll(ctx context.Context, targets []target, sc scenario) ([]*row, error) {
	rows := make([]*row, len(targets))
	acc := make([]loadgen.Result, len(targets))
	for i, t := range targets {
		rows[i] = newRow(sc, t)
		if b.warmup > 0 {
			if _, _, err := b.run(ctx, t, sc, b.warmup); err != nil {
				return nil, err
			}
		}
	}
	slice := max(b.duration/time.Duration(b.rounds), time.Millisecond)
	for r := range b.rounds {
		for j := range targets {
			i := (r + j) % len(targets)
			t := targets[i]
			res, got, err := b.run(ctx, t, sc, slice)
			if err != nil {
				return nil, err
			}
			acc[i].Add(res)
			rows[i].add(got)
		}
	}
	for i := range rows {
		rows[i].Summary, rows[i].ErrorKinds = acc[i].Summarize(), acc[i].ErrorKind
	}
	return rows, nil
}

// seen is what was counted during one run; -1 is unknown.
type seen struct {
	calls, msgs, streams int64
	cpu                  time.Duration            // busy time of the whole machine
	proc                 map[string]time.Duration // per component
}

// sample reads every counter at one instant. The counters are read
// through HTTP, which costs Envoy and the upstream a little CPU: at the
// start (end false) they are read before the CPU times, at the end after,
// so that cost falls outside the interval.
func (b *bench) sample(t target, end bool) seen {
	s := seen{calls: -1, msgs: -1, streams: -1, cpu: -1, proc: map[string]time.Duration{}}
	counters := func() {
		s.msgs, s.streams = t.stat(statMsgs), t.stat(statStreams)
		if n, err := upstreamCalls(b.upstream.addrs[0]); err == nil {
			s.calls = n
		}
	}
	if !end {
		counters()
	}
	if c, err := cpuBusy(); err == nil {
		s.cpu = c
	}
	for name, pid := range t.pids(b.upstream.PID()) {
		if pid == 0 {
			continue
		}
		cpu := procCPU
		if name == "store" && t.storeTree {
			cpu = procTreeCPU
		}
		if c, err := cpu(pid); err == nil {
			s.proc[name] = c
		}
	}
	if end {
		counters()
	}
	return s
}

// since is s1 - s0, unknown where either is.
func since(s0, s1 seen) seen {
	d := func(a, b int64) int64 {
		if a < 0 || b < 0 {
			return -1
		}
		return b - a
	}
	out := seen{calls: d(s0.calls, s1.calls), msgs: d(s0.msgs, s1.msgs), streams: d(s0.streams, s1.streams), cpu: -1, proc: map[string]time.Duration{}}
	if s0.cpu >= 0 && s1.cpu >= 0 {
		out.cpu = s1.cpu - s0.cpu
	}
	for k, v := range s1.proc {
		if v0, ok := s0.proc[k]; ok {
			out.proc[k] = v - v0
		}
	}
	return out
}

// run is one loadgen run with keys of its own; a replay run on gopotency
// first completes each worker's key with one request, outside what it
// counts (the floor stores nothing: it replays by the key's marker).
func (b *bench) run(ctx context.Context, t target, sc scenario, d time.Duration) (*loadgen.Result, seen, error) {
	run := b.nextRun()
	if sc.replayed && t.Kind == kindGopotency {
		first := sc
		first.replayed = false
		for w := range b.workers {
			if err := b.once(t, first, sc.key(run, w, 0)); err != nil {
				return nil, seen{}, fmt.Errorf("%s: completing replay key: %w", t.Name, err)
			}
		}
	}
	s0 := b.sample(t, false)
	res, err := loadgen.Run(ctx, loadgen.Options{
		Client: b.client, Workers: b.workers, Duration: d,
		NewRequest: func(w, n int) (*http.Request, error) { return b.request(t, sc, sc.key(run, w, n)) },
		Check:      check(t, sc),
	})
	if err != nil {
		return nil, seen{}, err
	}
	return res, since(s0, b.sample(t, true)), nil
}

// nextRun names a measured run: unique per process (runID) and per run
// (seq), so the keys of a first-time run never repeat those of another run,
// target or earlier benchmark on the same store.
func (b *bench) nextRun() string {
	b.seq++
	return fmt.Sprintf("%s-%d", b.runID, b.seq)
}

func (b *bench) once(t target, sc scenario, key string) error {
	req, err := b.request(t, sc, key)
	if err != nil {
		return err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return check(t, sc)(resp)
}
