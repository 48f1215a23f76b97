package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// These tests break the Redis under gopotency while requests run through
// the real Envoy (issue 15): a failover to a replica that missed the last
// writes, and a Redis that stalls mid-load. They count executions per key
// at the upstream: no key may run twice, and a retry must be answered with
// a replay or a clear problem, never run again.

// post sends a keyed POST without failing the test, for goroutines (which
// must not call t.FailNow).
func post(url, key string) (result, error) {
	req, err := http.NewRequest("POST", url, bytes.NewBufferString(`{}`))
	if err != nil {
		return result{}, err
	}
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header, b}, err
}

// Kinds of answer, as the figures count them.
const (
	kindRan    = "ran"    // a fresh answer from the upstream
	kindReplay = "replay" // the recorded answer
)

// kindOf names an answer: ran, replay, "problem <status> <slug>" for a
// gopotency problem, or "bare <status>" for anything else (Envoy's own
// 504 and ext_proc error replies are bare).
func kindOf(r result, err error) string {
	if err != nil {
		return "transport error"
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
	}
	switch {
	case r.Status/100 == 2 && r.Header.Get("Idempotent-Replayed") == "true":
		return kindReplay
	case r.Status/100 == 2:
		return kindRan
	case r.Header.Get("Content-Type") == "application/problem+json" && json.Unmarshal(r.Body, &p) == nil && p.Status == r.Status && p.Type != "":
		return fmt.Sprintf("problem %d %s", r.Status, strings.TrimPrefix(p.Type, "https://gopotency.dev/problems/"))
	}
	return fmt.Sprintf("bare %d", r.Status)
}

// clearProblem: a retry may be told the key is in progress (409), its
// outcome is unknown or incomplete (424) or the store cannot serve it now
// (503), as a gopotency problem.
func clearProblem(kind string) bool {
	for _, p := range []string{"problem 409 ", "problem 424 ", "problem 503 "} {
		if strings.HasPrefix(kind, p) {
			return true
		}
	}
	return false
}

// tally counts kinds, for the log.
type tally map[string]int

func (t tally) String() string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", k, t[k])
	}
	return "{" + b.String() + "}"
}

// retrier retries keys until each is settled (replayed, or 424: recorded
// for good) or the deadline passes, and checks every answer: a key that
// already ran must never run again.
type retrier struct {
	url func(key string) string // the URL the key was first sent to
	up  *counter

	mu      sync.Mutex
	kinds   map[string]tally  // per key
	last    map[string]string // last kind per key
	replays map[string][]byte // a replay's body per key
	reruns  []string          // keys a retry ran again
	odd     []string          // answers that are neither a replay, a first run nor a clear problem
}

func newRetrier(url func(key string) string, up *counter) *retrier {
	return &retrier{url: url, up: up, kinds: map[string]tally{}, last: map[string]string{}, replays: map[string][]byte{}}
}

// once retries key once and reports whether it is settled.
func (rt *retrier) once(key string) bool {
	before := rt.up.count(key)
	r, err := post(rt.url(key), key)
	kind := kindOf(r, err)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.kinds[key] == nil {
		rt.kinds[key] = tally{}
	}
	rt.kinds[key][kind]++
	rt.last[key] = kind
	switch {
	case kind == kindRan && before > 0:
		rt.reruns = append(rt.reruns, key)
	case kind == kindRan, kind == kindReplay, clearProblem(kind):
	default:
		rt.odd = append(rt.odd, key+": "+kind+": "+string(r.Body))
	}
	if kind == kindReplay {
		rt.replays[key] = r.Body
	}
	return kind == kindReplay || strings.HasPrefix(kind, "problem 424 ")
}

// run retries every key, at least rounds times, then until it is settled
// or the deadline passes; 16 keys at a time, 100ms between a key's tries.
func (rt *retrier) run(keys []string, rounds int, deadline time.Time) {
	work := make(chan string)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for key := range work {
				for i := 0; ; i++ {
					settled := rt.once(key)
					if i+1 >= rounds && (settled || time.Now().After(deadline)) {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
}

// byKind sums the per-key tallies of keys.
func (rt *retrier) byKind(keys []string) tally {
	out := tally{}
	for _, k := range keys {
		for kind, n := range rt.kinds[k] {
			out[kind] += n
		}
	}
	return out
}

// executions tallies keys by how often the upstream ran them.
func executions(up *counter, keys []string) tally {
	out := tally{}
	for _, k := range keys {
		out[fmt.Sprintf("ran %dx", up.count(k))]++
	}
	return out
}

// storeOnlyConfig is a configuration without the replay cache, plus extra
// YAML: retries must be answered from what Redis holds, as they are on
// another instance, or on this one once its cache entry expired (5s). With
// the cache, this instance replays records the failover lost.
func storeOnlyConfig(t *testing.T, extra string) string {
	return writeConfig(t, "ext_proc: {max_message_timeout: 30s}\nreplay_cache: {ttl: 0s}\n"+extra)
}

// postPastUnconfirmed posts like a client that retries a 503 (nothing
// ran): on a loaded machine the replica's first acknowledgements can come
// after a claim's WAIT gave up.
func postPastUnconfirmed(url, key string) (result, error) {
	for try := 0; ; try++ {
		r, err := post(url, key)
		if try == 40 || kindOf(r, err) != "problem 503 store-unavailable" {
			return r, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ranTwice lists the keys the upstream ran more than once.
func ranTwice(up *counter, keys []string) []string {
	var out []string
	for _, k := range keys {
		if n := up.count(k); n > 1 {
			out = append(out, fmt.Sprintf("%s: %dx", k, n))
		}
	}
	return out
}

// TestSentinelFailoverLaggingReplica: N keys complete and reach the
// replica; K more are running when the replica is cut off, so their claims
// are on it but not their records; then M more keys are sent once each
// while it is cut off. Then the master dies and Sentinel promotes the
// replica, which never got the last writes. Retried again and again on the
// new master, no key may run a second time: a request may run only once
// its claim is on the replica, and a claim left without its record is
// answered in-progress, then outcome-unknown.
func TestSentinelFailoverLaggingReplica(t *testing.T) {
	rf := testenv.StartRedisFailover(t)
	up := newCounter()
	// A 2s lease: the K keys' claims, which the replica holds without their
	// records, expire within the test.
	s := startStack(t, stackOptions{upstream: up, store: rf.URL() + "?restart_grace=500ms", config: storeOnlyConfig(t, "default_policy: {lease: 2s}\n")})
	const n, k, m = 20, 10, 20
	prefix := fmt.Sprintf("failover-%d-", time.Now().UnixNano())
	keys := make([]string, n+k+m)
	for i := range keys {
		keys[i] = prefix + itoa(i)
	}
	replicated, inflight, lagged := keys[:n], keys[n:n+k], keys[n+k:]

	for _, key := range replicated {
		r, err := postPastUnconfirmed(s.URL+"/orders", key)
		require.Equal(t, kindRan, kindOf(r, err), "key %s: body %s", key, r.Body)
		require.Equal(t, kindReplay, kindOf(do(t, "POST", s.URL+"/orders", key, `{}`), nil))
	}

	var wg sync.WaitGroup
	inflightKinds := make([]string, k)
	for i, key := range inflight {
		wg.Go(func() {
			r, err := postPastUnconfirmed(s.URL+"/orders?sleep=1s", key)
			inflightKinds[i] = kindOf(r, err)
		})
	}
	require.Eventually(t, func() bool { return executions(up, inflight)["ran 1x"] == k }, 10*time.Second, 5*time.Millisecond, "K requests running")
	rf.WaitReplicated(t) // their claims are on the replica (the server may not wait for that)

	rf.CutReplica(t)
	// M keys at once: a claim that waits for the cut-off replica must not
	// hold up the others, nor the failover.
	cut := make([]string, m)
	for i, key := range lagged {
		wg.Go(func() { r, err := post(s.URL+"/orders", key); cut[i] = kindOf(r, err) })
	}
	wg.Wait()
	cutKinds, inflightTally := tally{}, tally{}
	for i, kind := range cut {
		cutKinds[kind]++
		if kind != kindRan {
			assert.True(t, clearProblem(kind), "key %s during the cut: %s", lagged[i], kind)
			assert.Zero(t, up.count(lagged[i]), "key %s got %s but ran", lagged[i], kind)
		}
	}
	for _, kind := range inflightKinds {
		inflightTally[kind]++
	}
	ranDuringCut := executions(up, lagged)

	rf.Failover(t)
	// gopotency follows Sentinel to the new master.
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + s.app.AdminAddr() + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == 200
	}, 30*time.Second, 20*time.Millisecond, "gopotency ready on the promoted replica")

	// Three tries of every key at least, and on until each is settled or
	// the 500ms restart grace and the 2s lease are long past, so a key the
	// new master lost has every chance to run again.
	rt := newRetrier(func(key string) string {
		if slices.Contains(inflight, key) {
			return s.URL + "/orders?sleep=1s"
		}
		return s.URL + "/orders"
	}, up)
	rt.run(keys, 3, time.Now().Add(4*time.Second))

	t.Logf("N=%d keys before the cut: all ran once and replayed", n)
	t.Logf("K=%d keys running at the cut: %v", k, inflightTally)
	t.Logf("M=%d keys during the cut: %v; executions %v", m, cutKinds, ranDuringCut)
	t.Logf("retries after the failover: N keys %v; K keys %v; M keys %v", rt.byKind(replicated), rt.byKind(inflight), rt.byKind(lagged))
	t.Logf("executions per key after the retries: N keys %v; K keys %v; M keys %v", executions(up, replicated), executions(up, inflight), executions(up, lagged))
	assert.Empty(t, ranTwice(up, keys), "keys the upstream ran more than once")
	assert.Empty(t, rt.reruns, "retries that ran an executed key again")
	assert.Empty(t, rt.odd, "retries answered neither with a replay, a first run nor a clear problem")
	for _, key := range replicated {
		assert.Equal(t, kindReplay, rt.last[key], "key %s was replicated before the cut: it replays from the new master", key)
	}
}

// TestRedisPausedMidLoad: first-time keyed POSTs from 12 clients, and Redis
// freezes (SIGSTOP) for 3s in the middle. A request whose upstream ran must
// get the upstream's answer or a gopotency problem, never a bare Envoy 5xx
// (the client would retry what already ran, blind); no key runs twice; and
// once Redis is back new keys run, and every key that ran is recorded
// within a few seconds.
func TestRedisPausedMidLoad(t *testing.T) {
	rs := testenv.StartRedis(t)
	up := newCounter()
	s := startStack(t, stackOptions{upstream: up, store: rs.URL(), config: storeOnlyConfig(t, "")})
	url := s.URL + "/orders?sleep=20ms"
	prefix := fmt.Sprintf("paused-%d-", time.Now().UnixNano())

	type answer struct {
		key     string
		kind    string
		body    []byte
		started time.Time
	}
	const clients, perClient = 12, 1000
	var (
		mu      sync.Mutex
		answers []answer
		wg      sync.WaitGroup
	)
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	t.Cleanup(halt) // also when a require below ends the test early
	for c := range clients {
		wg.Go(func() {
			for i := range perClient {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("%s%d-%d", prefix, c, i)
				started := time.Now()
				r, err := post(url, key)
				mu.Lock()
				answers = append(answers, answer{key, kindOf(r, err), r.Body, started})
				mu.Unlock()
			}
		})
	}
	ranSince := func(since time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, a := range answers {
			if a.kind == kindRan && a.started.After(since) {
				n++
			}
		}
		return n
	}
	start := time.Now()
	require.Eventually(t, func() bool { return ranSince(time.Time{}) >= 50 }, 15*time.Second, 10*time.Millisecond, "load running")
	time.Sleep(time.Until(start.Add(1500 * time.Millisecond))) // ~1.5s of load before the fault, ~1.5s after
	rs.Pause()
	paused := time.Now()
	time.Sleep(3 * time.Second) // the fault itself, not a wait for a condition
	rs.Resume()
	resumed := time.Now()
	require.Eventually(t, func() bool { return ranSince(resumed) >= 50 }, 15*time.Second, 10*time.Millisecond,
		"new keys run once Redis is back")
	time.Sleep(time.Until(resumed.Add(1500 * time.Millisecond)))
	halt()
	loadEnd := time.Now()

	// The upstream's count per key before any retry tells which load
	// requests ran.
	ran := map[string]bool{}
	first := map[string]answer{}
	load, loadRan := tally{}, tally{}
	var bareRan []string
	var keys []string
	for _, a := range answers {
		keys = append(keys, a.key)
		first[a.key] = a
		load[a.kind]++
		if up.count(a.key) > 0 {
			ran[a.key] = true
			loadRan[a.kind]++
			if a.kind != kindRan && !strings.HasPrefix(a.kind, "problem ") {
				bareRan = append(bareRan, fmt.Sprintf("%s (sent at pause%+v): %s %q", a.key, a.started.Sub(paused).Round(time.Millisecond), a.kind, a.body))
			}
		}
	}

	// Every key that ran must replay within a few seconds; the others
	// may run now, once.
	rt := newRetrier(func(string) string { return url }, up)
	rt.run(keys, 2, loadEnd.Add(5*time.Second))

	var unrecorded, wrongReplay []string
	for _, k := range keys {
		if !ran[k] {
			continue
		}
		if rt.last[k] != kindReplay {
			unrecorded = append(unrecorded, k+": "+rt.last[k])
		} else if a := first[k]; a.kind == kindRan && !bytes.Equal(a.body, rt.replays[k]) {
			wrongReplay = append(wrongReplay, k)
		}
	}
	var retriedRan, retriedNot []string
	for _, k := range keys {
		if ran[k] {
			retriedRan = append(retriedRan, k)
		} else {
			retriedNot = append(retriedNot, k)
		}
	}
	t.Logf("load: %d keys from %d clients over %v, Redis paused %v after the start for 3s", len(keys), clients, loadEnd.Sub(start).Round(time.Millisecond), paused.Sub(start).Round(time.Millisecond))
	t.Logf("load answers: %v", load)
	t.Logf("load answers of the %d keys whose upstream ran: %v", len(ran), loadRan)
	t.Logf("retries of keys that ran: %v; of keys that did not: %v", rt.byKind(retriedRan), rt.byKind(retriedNot))
	t.Logf("executions per key after the retries: %v", executions(up, keys))
	assert.Empty(t, bareRan, "requests whose upstream ran got a bare 5xx (not gopotency's problem)")
	assert.Empty(t, ranTwice(up, keys), "keys the upstream ran more than once")
	assert.Empty(t, rt.reruns, "retries that ran an executed key again")
	assert.Empty(t, rt.odd, "retries answered neither with a replay, a first run nor a clear problem")
	assert.Empty(t, unrecorded, "keys that ran but were not replayed within 5s of the load's end")
	assert.Empty(t, wrongReplay, "keys whose replay is not the answer the client got")
}
