// Package behaviortest is the behaviour suite every front end of
// GoPotency must pass: the net/http, Gin, Echo and Fiber middleware, the
// gRPC interceptor, the function API, and Envoy with the ext_proc server.
// Its rows are the client contract, the table "What a client sees" in the
// README; docs/middleware.md shows how to run it on a front end of your
// own.
//
// Run is the black-box HTTP suite. It sends real HTTP requests to a base
// URL and reads a counting Upstream, so it works for front ends in or out
// of the test's process. Put Upstream behind the front end, apply Routes()
// to the paths under their prefixes, and call Run:
//
//	up := behaviortest.NewUpstream()
//	srv := httptest.NewServer(frontEnd(up, behaviortest.Routes()))
//	defer srv.Close()
//	behaviortest.Run(t, behaviortest.Target{BaseURL: srv.URL, Upstream: up})
//
// Each row of the table is a subtest. Keys carry a random prefix per run,
// so the suite may run twice against one store.
//
// The rest of the package serves the same purpose:
//
//   - RunOps runs the rows a front end without HTTP can express (gRPC, a
//     function wrapper), written once in terms of OpCall and OpResult.
//   - OutageStore wraps a store so a row can take it down; ForEachStore
//     runs a front end's tests over the memory store and a real Redis,
//     each so wrapped (it was the package storesuite).
//   - RunCapture checks that a net/http middleware captures and replays
//     exactly what the client got, through streaming, panics, hijacks and
//     departed clients (it was the package mwtest).
//   - BenchOverhead and BenchOverheadFunc measure a front end's cost
//     against the bare handler, miss and replay, in one run (they were
//     mwtest's and the package overhead's).
//
// The stores' own contract is pkg/store/storetest.
package behaviortest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Target is the front end under test.
type Target struct {
	// BaseURL is where the front end listens, e.g. http://127.0.0.1:10000
	// (loopback only). Paths of Routes() are appended to it.
	BaseURL string
	// Upstream is the application behind the front end.
	Upstream *Upstream
	// Client sends the requests (each bounded by a 20s timeout). The
	// default does no transparent compression, so headers are compared as
	// sent, and opens at most 256 connections, which keeps the concurrency
	// row under the race detector's limit of 8128 goroutines.
	Client *http.Client
	// StoreOutage, when set, makes the front end's store unreachable until
	// the returned function is called; the StoreUnavailable row runs only
	// then. In-process front ends can use OutageStore.Outage.
	StoreOutage func(t testing.TB) (restore func())
}

// Concurrency row size: keys, and simultaneous duplicates of each.
const (
	ConcurrencyKeys       = 200
	ConcurrencyDuplicates = 10
)

// requestTimeout bounds every request of the suite.
const requestTimeout = 20 * time.Second

type suite struct {
	base   string
	up     *Upstream
	client *http.Client
	prefix string
	outage func(t testing.TB) func()
}

// Run runs every row of the behaviour table against target.
func Run(t *testing.T, target Target) {
	s := newSuite(t, target)
	runRows(t, s,
		row{"KeyForms", s.keyForms},
		row{"ClientErrorStored", s.clientErrorStored},
		row{"NotStoredStatuses", s.notStored},
		row{"AutomaticKey", s.automaticKey},
	)
}

// rows are the rows of the table both suites express, Run over HTTP and
// RunOps over OpCall, each in its own terms.
type rows interface {
	keyAbsent(t *testing.T)
	noRoute(t *testing.T)
	malformedKey(t *testing.T)
	firstAndReplay(t *testing.T)
	differentFingerprint(t *testing.T)
	differentCaller(t *testing.T)
	responseOverCap(t *testing.T)
	requestOverCap(t *testing.T)
	storeUnavailable(t *testing.T)
	inFlightConflict(t *testing.T)
	inFlightWait(t *testing.T)
	slowPastLease(t *testing.T)
	concurrency(t *testing.T)
}

// row is a row one suite alone has.
type row struct {
	name string
	run  func(t *testing.T)
}

// runRows runs the shared rows of s, with its own after
// FirstRequestAndReplay.
func runRows(t *testing.T, s rows, own ...row) {
	t.Run("KeyAbsent", s.keyAbsent)
	t.Run("NoRoute", s.noRoute)
	t.Run("MalformedKey", s.malformedKey)
	t.Run("FirstRequestAndReplay", s.firstAndReplay)
	for _, r := range own {
		t.Run(r.name, r.run)
	}
	t.Run("DifferentFingerprint", s.differentFingerprint)
	t.Run("DifferentCaller", s.differentCaller)
	t.Run("ResponseOverCap", s.responseOverCap)
	t.Run("RequestOverCap", s.requestOverCap)
	t.Run("StoreUnavailable", s.storeUnavailable)
	t.Run("InFlight", func(t *testing.T) {
		t.Run("Conflict", s.inFlightConflict)
		t.Run("WaitMode", s.inFlightWait)
		t.Run("SlowHandlerPastLease", s.slowPastLease)
	})
	t.Run("Concurrency", s.concurrency)
}

// runPrefix is a random key prefix for one run of a suite, so the suite
// may run twice against one store.
func runPrefix(suite string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return suite + hex.EncodeToString(b[:])
}

func newSuite(t *testing.T, target Target) *suite {
	t.Helper()
	if target.BaseURL == "" || target.Upstream == nil {
		t.Fatal("behaviortest: Target needs BaseURL and Upstream")
	}
	if err := checkLoopback(target.BaseURL); err != nil {
		t.Fatalf("behaviortest: %v", err)
	}
	s := &suite{base: strings.TrimSuffix(target.BaseURL, "/"), up: target.Upstream, client: target.Client,
		prefix: runPrefix("bt"), outage: target.StoreOutage}
	if s.client == nil {
		tr := &http.Transport{MaxConnsPerHost: 256, MaxIdleConnsPerHost: 256, DisableCompression: true, IdleConnTimeout: 30 * time.Second}
		t.Cleanup(tr.CloseIdleConnections)
		s.client = &http.Client{Transport: tr}
	}
	return s
}

// id returns a run-unique key and tag for a row.
func (s *suite) id(name string) string { return s.prefix + "." + name }

// call is one request of the suite; POST unless method says otherwise.
type call struct {
	method string
	path   string
	key    string   // raw Idempotency-Key value; "" sends none
	keys   []string // several raw fields, instead of key
	auth   string
	tag    string
	body   string
}

// answer is a response read in full.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) String() string {
	b := a.body
	if len(b) > 200 {
		b = append(b[:200:200], "…"...)
	}
	return fmt.Sprintf("%d %v %q", a.status, a.header, b)
}

// do sends c. It is safe from any goroutine.
func (s *suite) do(c call) (answer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	method := c.method
	if method == "" {
		method = http.MethodPost
	}
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+c.path, body)
	if err != nil {
		return answer{}, fmt.Errorf("build %s %s: %w", method, c.path, err)
	}
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header["Idempotency-Key"] = []string{c.key}
	}
	if c.keys != nil {
		req.Header["Idempotency-Key"] = c.keys
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	if c.tag != "" {
		req.Header.Set(TagHeader, c.tag)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: %w", method, c.path, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return answer{}, fmt.Errorf("%s %s: read body: %w", method, c.path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: buf.Bytes()}, nil
}

// send is do for the test's own goroutine: a transport error ends the test.
func (s *suite) send(t testing.TB, c call) answer {
	t.Helper()
	a, err := s.do(c)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// sendAsync sends c from a goroutine; the channel yields its outcome.
func (s *suite) sendAsync(c call) <-chan result {
	return async(func() (answer, error) { return s.do(c) })
}

type result = outcome[answer]

// wait receives an async result, ending the test on a transport error.
func wait(t testing.TB, ch <-chan result) answer {
	t.Helper()
	return await(t, ch)
}

// outcome is what a call made by async yields.
type outcome[T any] struct {
	v   T
	err error
}

// async runs f in a goroutine; the channel yields its outcome.
func async[T any](f func() (T, error)) <-chan outcome[T] {
	ch := make(chan outcome[T], 1)
	go func() {
		v, err := f()
		ch <- outcome[T]{v, err}
	}()
	return ch
}

// await receives an outcome, ending the test on an error.
func await[T any](t testing.TB, ch <-chan outcome[T]) T {
	t.Helper()
	o := <-ch
	if o.err != nil {
		t.Fatal(o.err)
	}
	return o.v
}

// checkLoopback refuses a base URL off this machine: the suite sends a few
// thousand requests and must only ever load a local front end.
func checkLoopback(base string) error {
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("BaseURL %q: %w", base, err)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("BaseURL %q is not a loopback address", base)
}
