package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gopotency/gopotency/internal/envoyrun"
	"github.com/gopotency/gopotency/internal/loadgen"
	"github.com/gopotency/gopotency/pkg/idempotency"
)

// requestBody is what every scenario POSTs: a small JSON order.
var requestBody = []byte(`{"item":"sku-123","quantity":2,"amount":4200,"currency":"EUR","customer":"cus_42"}`)

// scenario is one kind of request, sent to every target.
type scenario struct {
	Name  string // flag value
	Title string // table label
	// key returns the Idempotency-Key of a request ("" for none); run
	// makes keys unique per measured run.
	key func(run string, worker, n int) string
	// replayed is whether gopotency must answer from the store.
	replayed bool
}

var scenarios = []scenario{
	{Name: "unkeyed", Title: "un-keyed POST",
		key: func(string, int, int) string { return "" }},
	{Name: "first", Title: "first-time keyed POST",
		key: func(run string, w, n int) string { return fmt.Sprintf(`"bench-%s-%d-%d"`, run, w, n) }},
	// One completed key per worker: every request is a replay, and
	// workers do not contend on one key.
	{Name: "replay", Title: "replay (completed key)", replayed: true,
		key: func(run string, w, _ int) string { return fmt.Sprintf(`"bench-%s-replay-%d"`, run, w) }},
}

// target is one Envoy: the baseline or one with gopotency behind it.
type target struct {
	Name      string
	URL       string
	gopotency bool
	envoy     *envoyrun.Envoy
}

// extProcMsgs is Envoy's count of ext_proc messages sent to gopotency.
const extProcMsgs = "http.ingress.ext_proc.stream_msgs_sent"

// messages returns the target's extProcMsgs, or -1 when it has none or the
// admin endpoint does not answer.
func (t target) messages() int64 {
	if !t.gopotency || t.envoy == nil {
		return -1
	}
	n, err := t.envoy.Stat(extProcMsgs)
	if err != nil {
		return -1
	}
	return n
}

// bench holds what every measurement shares.
type bench struct {
	client   *http.Client
	workers  int
	duration time.Duration
	warmup   time.Duration
	rounds   int
	upstream *upstream
	runID    string // unique per process, so keys never collide with older runs
	seq      int
}

func (b *bench) request(t target, key string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, t.URL+"/orders", bytes.NewReader(requestBody))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	return req, nil
}

// check accepts only the upstream's 201, replayed exactly when it should be.
func check(t target, sc scenario) func(*http.Response) error {
	want := ""
	if t.gopotency && sc.replayed {
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
// over all targets instead of charging it to whichever ran last.
func (b *bench) measureAll(ctx context.Context, targets []target, sc scenario) ([]*row, error) {
	rows := make([]*row, len(targets))
	acc := make([]loadgen.Result, len(targets))
	for i, t := range targets {
		rows[i] = &row{Scenario: sc, Target: t, ExtProcMsgs: -1, CPU: -1}
		if b.warmup > 0 {
			if _, _, err := b.run(ctx, t, sc, b.warmup); err != nil {
				return nil, err
			}
		}
	}
	slice := max(b.duration/time.Duration(b.rounds), time.Millisecond)
	for range b.rounds {
		for i, t := range targets {
			res, got, err := b.run(ctx, t, sc, slice)
			if err != nil {
				return nil, err
			}
			acc[i].Add(res)
			rows[i].UpstreamCalls += got.calls
			if got.msgs >= 0 {
				rows[i].ExtProcMsgs = max(rows[i].ExtProcMsgs, 0) + got.msgs
			}
			if got.cpu >= 0 {
				rows[i].CPU = max(rows[i].CPU, 0) + got.cpu
			}
		}
	}
	for i := range rows {
		rows[i].Summary, rows[i].ErrorKinds = acc[i].Summarize(), acc[i].ErrorKind
	}
	return rows, nil
}

// seen is what was counted during a run: calls that reached the
// application, ext_proc messages sent (-1: unknown) and the machine's busy
// CPU time (-1: unknown).
type seen struct {
	calls, msgs int64
	cpu         time.Duration
}

// run is one loadgen run with keys of its own; a replay run first
// completes each worker's key with one request, outside what it counts.
func (b *bench) run(ctx context.Context, t target, sc scenario, d time.Duration) (*loadgen.Result, seen, error) {
	b.seq++
	run := fmt.Sprintf("%s-%d", b.runID, b.seq)
	if sc.replayed {
		first := sc
		first.replayed = false
		for w := range b.workers {
			if err := b.once(t, first, sc.key(run, w, 0)); err != nil {
				return nil, seen{}, fmt.Errorf("%s: completing replay key: %w", t.Name, err)
			}
		}
	}
	calls, msgs := b.upstream.calls.Load(), t.messages()
	cpu0, cpuErr := cpuBusy()
	res, err := loadgen.Run(ctx, loadgen.Options{
		Client: b.client, Workers: b.workers, Duration: d,
		NewRequest: func(w, n int) (*http.Request, error) { return b.request(t, sc.key(run, w, n)) },
		Check:      check(t, sc),
	})
	if err != nil {
		return nil, seen{}, err
	}
	out := seen{calls: b.upstream.calls.Load() - calls, msgs: -1, cpu: -1}
	if cpu1, err := cpuBusy(); err == nil && cpuErr == nil {
		out.cpu = cpu1 - cpu0
	}
	if m := t.messages(); msgs >= 0 && m >= 0 {
		out.msgs = m - msgs
	}
	return res, out, nil
}

func (b *bench) once(t target, sc scenario, key string) error {
	req, err := b.request(t, key)
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
