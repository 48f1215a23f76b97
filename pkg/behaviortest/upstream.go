package behaviortest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TagHeader names the request header the suite tags every logical operation
// with; the upstream counts executions per tag. Front ends must pass it
// through (it is not part of any fingerprint or scope).
const TagHeader = "X-Test-Tag"

// maxSleep and maxSize bound what a request can ask of the upstream.
const (
	maxSleep = 10 * time.Second
	maxSize  = 8 << 20
)

// Upstream is the application behind the front end under test. It counts
// executions (when a request starts) per tag, per key and in total, and
// answers according to the query string:
//
//   - status=N: answer with status N (default 201 for POST, PUT and PATCH,
//     200 otherwise);
//   - sleep=D: wait D (a Go duration, at most 10s) before answering; the
//     wait ignores the client going away, as a real handler may;
//   - size=N: answer with N bytes of application/octet-stream;
//   - otherwise: a JSON echo {"exec", "method", "target", "key", "tag",
//     "body"} with Location, X-Upstream-Exec, two X-Multi fields, two
//     Set-Cookie fields and Cache-Control. "exec" is the execution's serial
//     number, so a replay is told apart from a re-run.
//
// It reads the whole request body, so a front end that consumed the body
// without restoring it shows up in the echo.
type Upstream struct {
	mu     sync.Mutex
	total  int
	byTag  map[string]int
	byKey  map[string]int
	ended  map[string]int
	notify chan struct{}
}

// NewUpstream returns an upstream with no executions counted.
func NewUpstream() *Upstream {
	return &Upstream{byTag: map[string]int{}, byKey: map[string]int{}, ended: map[string]int{}, notify: make(chan struct{})}
}

// Echo is the JSON body of the upstream's default answer.
type Echo struct {
	Exec   int    `json:"exec"`
	Method string `json:"method"`
	Target string `json:"target"`
	Key    string `json:"key"`
	Tag    string `json:"tag"`
	Body   string `json:"body"`
}

func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Cloned: a front end may hand over strings backed by buffers it
	// reuses (Fiber's net/http adaptor does), and the counts keep them.
	tag, key := strings.Clone(r.Header.Get(TagHeader)), strings.Clone(r.Header.Get("Idempotency-Key"))
	exec := u.start(tag, key)
	defer u.end(tag)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	if d, err := time.ParseDuration(q.Get("sleep")); err == nil && d > 0 {
		time.Sleep(min(d, maxSleep))
	}
	status := http.StatusOK
	if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		status = http.StatusCreated
	}
	if n, err := strconv.Atoi(q.Get("status")); err == nil && n >= 200 && n <= 599 {
		status = n
	}
	h := w.Header()
	h.Set("X-Upstream-Exec", strconv.Itoa(exec))
	if n, err := strconv.Atoi(q.Get("size")); err == nil && n >= 0 {
		h.Set("Content-Type", "application/octet-stream")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(strings.Repeat("0123456789abcdef", min(n, maxSize)/16+1)[:min(n, maxSize)]))
		return
	}
	out, _ := json.Marshal(Echo{Exec: exec, Method: r.Method, Target: r.URL.RequestURI(), Key: key, Tag: tag, Body: string(body)})
	h.Set("Content-Type", "application/json")
	h.Set("Location", fmt.Sprintf("/things/%d", exec))
	h.Set("Cache-Control", "no-store")
	h.Add("X-Multi", "first")
	h.Add("X-Multi", "second")
	h.Add("Set-Cookie", fmt.Sprintf("session=s%d; Path=/; HttpOnly", exec))
	h.Add("Set-Cookie", "theme=dark; Path=/")
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

func (u *Upstream) start(tag, key string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.total++
	u.byTag[tag]++
	if key != "" {
		u.byKey[key]++
	}
	u.broadcast()
	return u.total
}

func (u *Upstream) end(tag string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.ended[tag]++
	u.broadcast()
}

// broadcast wakes every waiter; the caller holds u.mu.
func (u *Upstream) broadcast() {
	close(u.notify)
	u.notify = make(chan struct{})
}

// Executions returns how many requests tagged tag reached the upstream.
func (u *Upstream) Executions(tag string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.byTag[tag]
}

// ExecutionsByKey returns how many requests with Idempotency-Key: key (the
// raw field value) reached the upstream.
func (u *Upstream) ExecutionsByKey(key string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.byKey[key]
}

// Total returns how many requests reached the upstream.
func (u *Upstream) Total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.total
}

// WaitStarted waits until n executions tagged tag have started, or timeout
// passes; it reports whether they did.
func (u *Upstream) WaitStarted(tag string, n int, timeout time.Duration) bool {
	return u.waitFor(func() bool { return u.byTag[tag] >= n }, timeout)
}

// WaitEnded waits until n executions tagged tag have finished answering,
// or timeout passes; it reports whether they did.
func (u *Upstream) WaitEnded(tag string, n int, timeout time.Duration) bool {
	return u.waitFor(func() bool { return u.ended[tag] >= n }, timeout)
}

func (u *Upstream) waitFor(cond func() bool, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		u.mu.Lock()
		ok, ch := cond(), u.notify
		u.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}
