package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	cases := []struct {
		vals []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
		{ms(hundred...), 50, 50 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 99.5, 100 * time.Millisecond},
		{ms(hundred...), 0, 0},
	}
	for _, c := range cases {
		if got := Percentile(c.vals, c.p); got != c.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", c.vals, c.p, got, c.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	r := &Result{Requests: 5, Errors: 1, Elapsed: 2 * time.Second, Latencies: ms(1, 2, 3, 40)}
	s := r.Summarize()
	if s.OK != 4 || s.Errors != 1 || s.RPS != 2 || s.P50 != 2*time.Millisecond || s.P99 != 40*time.Millisecond || s.Max != 40*time.Millisecond {
		t.Fatalf("Summarize = %+v", s)
	}
	if (&Result{}).Summarize().RPS != 0 {
		t.Fatal("empty result must have 0 rps")
	}
}

// TestRun checks the counts against what the server saw, that (worker, n)
// is unique, that rejected responses count as errors and that the run
// stops on time.
func TestRun(t *testing.T) {
	var hits atomic.Int64
	var mu sync.Mutex
	seen := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		mu.Lock()
		dup := seen[r.Header.Get("X-Id")]
		seen[r.Header.Get("X-Id")] = true
		mu.Unlock()
		if dup || n%10 == 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()

	const workers = 4
	begin := time.Now()
	r, err := Run(context.Background(), Options{
		Client: srv.Client(), Workers: workers, Duration: 200 * time.Millisecond,
		NewRequest: func(w, n int) (*http.Request, error) {
			req, err := http.NewRequest(http.MethodPost, srv.URL, nil)
			req.Header.Set("X-Id", strconv.Itoa(w)+"/"+strconv.Itoa(n))
			return req, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Fatalf("run took %v for a 200ms duration", took)
	}
	if int64(r.Requests) != hits.Load() || r.Requests == 0 {
		t.Fatalf("sent %d, server saw %d", r.Requests, hits.Load())
	}
	wantErr := int(hits.Load() / 10)
	if r.Errors != wantErr || len(r.Latencies) != r.Requests-wantErr {
		t.Fatalf("errors %d (want %d), latencies %d of %d requests", r.Errors, wantErr, len(r.Latencies), r.Requests)
	}
	if r.ErrorKind["HTTP 500"] != wantErr {
		t.Fatalf("error kinds %v", r.ErrorKind)
	}
	if !slices.IsSorted(r.Latencies) {
		t.Fatal("latencies not sorted")
	}
}

func TestRunLimitsAndFailures(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	r, err := Run(context.Background(), Options{
		Client: srv.Client(), Workers: 2, Duration: time.Minute, MaxRequests: 10,
		NewRequest: func(w, n int) (*http.Request, error) {
			if n == 0 {
				return nil, fmt.Errorf("no request %d/%d", w, n)
			}
			return http.NewRequest(http.MethodGet, srv.URL, nil)
		},
		Check: func(resp *http.Response) error {
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 10 || r.Errors != 2 || len(r.Latencies) != 8 || len(r.ErrorKind) != 2 {
		t.Fatalf("requests %d errors %d latencies %d kinds %v", r.Requests, r.Errors, len(r.Latencies), r.ErrorKind)
	}
	if _, err := Run(context.Background(), Options{Workers: 1, Duration: time.Second}); err == nil {
		t.Fatal("Run without Client/NewRequest must fail")
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	_, err := Run(ctx, Options{Client: srv.Client(), Workers: 2, Duration: time.Minute,
		NewRequest: func(int, int) (*http.Request, error) { return http.NewRequest(http.MethodGet, srv.URL, nil) }})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Fatalf("run ignored cancellation: %v", took)
	}
}

func TestAdd(t *testing.T) {
	var r Result
	r.Add(&Result{Requests: 3, Errors: 1, ErrorKind: map[string]int{"HTTP 500": 1}, Elapsed: time.Second, Latencies: ms(1, 5)})
	r.Add(&Result{Requests: 2, Elapsed: time.Second, Latencies: ms(2, 9)})
	s := r.Summarize()
	if s.Requests != 5 || s.OK != 4 || s.Errors != 1 || s.RPS != 2 || r.ErrorKind["HTTP 500"] != 1 {
		t.Fatalf("merged %+v, kinds %v", s, r.ErrorKind)
	}
	if !slices.Equal(r.Latencies, ms(1, 2, 5, 9)) {
		t.Fatalf("latencies %v", r.Latencies)
	}
}
