// Package loadgen is a small closed-loop HTTP load generator: a fixed number
// of workers each send one request, wait for the whole answer, and send the
// next, for a fixed time. Every latency is kept, so percentiles are exact
// rather than estimated from buckets.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// DefaultMaxRequests bounds one run when Options.MaxRequests is 0: enough
// for minutes of loopback load, small enough (8 bytes a latency) to keep.
const DefaultMaxRequests = 4_000_000

// maxErrorKinds bounds the distinct error messages kept per run.
const maxErrorKinds = 8

// Options describe one run.
type Options struct {
	// Client sends the requests; its Timeout bounds each one. Give its
	// transport at least Workers idle connections per host, or connections
	// are re-opened and the run measures TCP handshakes.
	Client *http.Client
	// Workers is the number of concurrent requests (>= 1).
	Workers int
	// Duration is how long workers keep starting requests (> 0).
	Duration time.Duration
	// MaxRequests stops the run early once this many were sent (0:
	// DefaultMaxRequests).
	MaxRequests int
	// NewRequest builds the n-th request (from 0) of a worker; workers are
	// numbered from 0, so (worker, n) is unique within a run.
	NewRequest func(worker, n int) (*http.Request, error)
	// Check judges a response whose body was read; nil accepts it. Nil
	// Check accepts any 2xx.
	Check func(*http.Response) error
}

// Result is what a run measured. Only accepted responses count towards
// Latencies and throughput; every other outcome is an error.
type Result struct {
	Requests  int             // requests sent
	Errors    int             // transport errors, rejected responses, request build failures
	ErrorKind map[string]int  // a few distinct error messages with their counts
	Elapsed   time.Duration   // from the first request to the last answer
	Latencies []time.Duration // of accepted responses, sorted ascending
}

// Run drives the load until Duration has passed (no request starts later),
// MaxRequests were sent or ctx ends, then waits for requests in flight.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Client == nil || o.NewRequest == nil || o.Workers < 1 || o.Duration <= 0 {
		return nil, errors.New("loadgen: Client, NewRequest, Workers >= 1 and Duration > 0 are required")
	}
	if o.MaxRequests <= 0 {
		o.MaxRequests = DefaultMaxRequests
	}
	if o.Check == nil {
		o.Check = Accept2xx
	}
	perWorker := max(1, o.MaxRequests/o.Workers)
	workers := make([]worker, o.Workers)
	start := time.Now()
	end := start.Add(o.Duration)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.lat = make([]time.Duration, 0, min(perWorker, 1<<14))
		wg.Go(func() { w.loop(ctx, &o, i, perWorker, end) })
	}
	wg.Wait()
	r := &Result{Elapsed: time.Since(start), ErrorKind: map[string]int{}}
	for i := range workers {
		w := &workers[i]
		r.Requests += w.sent
		r.Errors += w.errors
		r.Latencies = append(r.Latencies, w.lat...)
		for k, n := range w.kinds {
			if _, ok := r.ErrorKind[k]; ok || len(r.ErrorKind) < maxErrorKinds {
				r.ErrorKind[k] += n
			}
		}
	}
	slices.Sort(r.Latencies)
	return r, nil
}

// Add merges o into r as if both were one run: counts and elapsed times
// add up, latencies stay sorted.
func (r *Result) Add(o *Result) {
	r.Requests += o.Requests
	r.Errors += o.Errors
	r.Elapsed += o.Elapsed
	if r.ErrorKind == nil {
		r.ErrorKind = map[string]int{}
	}
	for k, n := range o.ErrorKind {
		if _, ok := r.ErrorKind[k]; ok || len(r.ErrorKind) < maxErrorKinds {
			r.ErrorKind[k] += n
		}
	}
	r.Latencies = append(r.Latencies, o.Latencies...)
	slices.Sort(r.Latencies)
}

type worker struct {
	sent, errors int
	lat          []time.Duration
	kinds        map[string]int
}

func (w *worker) loop(ctx context.Context, o *Options, id, limit int, end time.Time) {
	for n := 0; n < limit && ctx.Err() == nil && time.Now().Before(end); n++ {
		w.sent++
		lat, err := once(ctx, o, id, n)
		if err != nil {
			w.fail(err)
			continue
		}
		w.lat = append(w.lat, lat)
	}
}

func (w *worker) fail(err error) {
	w.errors++
	if w.kinds == nil {
		w.kinds = map[string]int{}
	}
	msg := err.Error()
	if _, ok := w.kinds[msg]; ok || len(w.kinds) < maxErrorKinds {
		w.kinds[msg]++
	}
}

// once sends one request and reads the whole answer, so the connection
// goes back to the pool and the latency includes the body.
func once(ctx context.Context, o *Options, id, n int) (time.Duration, error) {
	req, err := o.NewRequest(id, n)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req = req.WithContext(ctx)
	t0 := time.Now()
	resp, err := o.Client.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	lat := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("read body: %w", err)
	}
	if err := o.Check(resp); err != nil {
		return 0, err
	}
	return lat, nil
}

// Accept2xx accepts any 2xx status.
func Accept2xx(resp *http.Response) error {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}
