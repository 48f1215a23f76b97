package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gopotency/gopotency/internal/loadgen"
)

func sum(rps float64, p50, p99 time.Duration, errs int) loadgen.Summary {
	return loadgen.Summary{Requests: int(rps) + errs, OK: int(rps), Errors: errs, Elapsed: time.Second, RPS: rps, P50: p50, P99: p99, Max: p99}
}

func sampleReport() *report {
	base := target{Name: "Envoy alone"}
	mem := target{Name: "Envoy + gopotency (memory)", gopotency: true}
	first, replay := scenarios[1], scenarios[2]
	return &report{
		Facts: facts{Command: "go run ./cmd/gopotency-bench -d 5s", CPUs: 2, Platform: "linux/amd64", Go: "go1.26", Envoy: "1.40.0",
			Workers: 16, Duration: "5s", Warmup: "1s", Rounds: 5},
		Rows: []*row{
			{Scenario: first, Target: base, Summary: sum(4000, 2*time.Millisecond, 10*time.Millisecond, 0), ExtProcMsgs: -1, CPU: time.Second},
			{Scenario: first, Target: mem, Summary: sum(1000, 5*time.Millisecond, 25*time.Millisecond, 0), ExtProcMsgs: 4000, CPU: 2 * time.Second},
			{Scenario: replay, Target: base, Summary: sum(3000, 4*time.Millisecond, 8*time.Millisecond, 0), ExtProcMsgs: -1, CPU: -1},
			{Scenario: replay, Target: mem, Summary: sum(1500, 3*time.Millisecond, 12*time.Millisecond, 0), ExtProcMsgs: 3000, CPU: -1},
		},
		Notes: []string{"Redis rows skipped: -redis-url off."},
	}
}

func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	sampleReport().writeMarkdown(&b)
	out := b.String()
	for _, want := range []string{
		"| first-time keyed POST | Envoy alone | 4000 | 2.00 ms | 10.0 ms | 250 µs | 0 | — | — | — |",
		"| first-time keyed POST | Envoy + gopotency (memory) | 1000 | 5.00 ms | 25.0 ms | 2000 µs | 0 | 0.25× | 2.50× | 2.50× |",
		"| replay (completed key) | Envoy + gopotency (memory) | 1500 | 3.00 ms | 12.0 ms | — | 0 | 0.50× | 0.75× | 1.50× |",
		"Command: `go run ./cmd/gopotency-bench -d 5s`",
		"The 2 CPUs are shared by Envoy, gopotency",
		"Replays through gopotency: 1500 sent, 0 reached the application.",
		"ext_proc messages Envoy sent to gopotency per request, memory (Envoy's http.ingress.ext_proc.stream_msgs_sent): first-time keyed POST 4.00; replay (completed key) 2.00.",
		"- Redis rows skipped: -redis-url off.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "WARNING") {
		t.Errorf("clean run printed a warning:\n%s", out)
	}
}

func TestWarnings(t *testing.T) {
	r := sampleReport()
	r.Rows[1].Summary = sum(1000, 5*time.Millisecond, 25*time.Millisecond, 3)
	r.Rows[1].ErrorKinds = map[string]int{"HTTP 503": 2, "EOF": 1}
	r.Rows[3].UpstreamCalls = 7
	ws := r.warnings()
	if len(ws) != 2 || !strings.Contains(ws[0], "3 of 1003 requests failed") || !strings.Contains(ws[0], "EOF ×1, HTTP 503 ×2") ||
		!strings.Contains(ws[1], "7 replays") {
		t.Fatalf("warnings %q", ws)
	}
	var b bytes.Buffer
	r.writeMarkdown(&b)
	if strings.Count(b.String(), "**WARNING**") != 2 {
		t.Fatalf("markdown must carry both warnings:\n%s", b.String())
	}
}

func TestJSON(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().writeJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Facts facts
		Rows  []struct {
			Scenario, Target string
			RPS              float64  `json:"rps"`
			P99Ms            float64  `json:"p99_ms"`
			Ratios           *ratios  `json:"vs_envoy_alone"`
			MsgsPerReq       *float64 `json:"ext_proc_msgs_per_request"`
			CPUPerReqUs      *float64 `json:"cpu_per_request_us"`
		}
		Warnings []string
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if len(got.Rows) != 4 || got.Facts.Workers != 16 || len(got.Warnings) != 0 {
		t.Fatalf("decoded %+v", got)
	}
	if r := got.Rows[0]; r.Scenario != "first" || r.Ratios != nil || r.MsgsPerReq != nil || r.RPS != 4000 || r.P99Ms != 10 {
		t.Fatalf("baseline row %+v", r)
	}
	if q := got.Rows[1].Ratios; q == nil || q.RPS != 0.25 || q.P50 != 2.5 || q.P99 != 2.5 {
		t.Fatalf("ratios %+v", q)
	}
	if m := got.Rows[1].MsgsPerReq; m == nil || *m != 4 {
		t.Fatalf("messages per request %v", m)
	}
	if c := got.Rows[1].CPUPerReqUs; c == nil || *c != 2000 || got.Rows[3].CPUPerReqUs != nil {
		t.Fatalf("CPU per request %v, %v", c, got.Rows[3].CPUPerReqUs)
	}
}

func TestRatiosNeedABaseline(t *testing.T) {
	r := sampleReport()
	r.Rows = r.Rows[1:2] // gopotency row alone
	if _, ok := r.ratios(r.Rows[0]); ok {
		t.Fatal("ratio without a baseline")
	}
}

func TestMs(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850 * time.Microsecond:   "0.85 ms",
		12340 * time.Microsecond: "12.3 ms",
		250 * time.Millisecond:   "250 ms",
	} {
		if got := ms(d); got != want {
			t.Errorf("ms(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-c", "4", "-scenarios", "replay,unkeyed,replay"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.workers != 4 || len(o.scenarios) != 2 || o.scenarios[0].Name != "replay" || o.scenarios[1].Name != "unkeyed" {
		t.Fatalf("options %+v", o)
	}
	_, err = parseFlags([]string{"-c", "0", "-d", "0s", "-scenarios", "nope"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "-c 0") || !strings.Contains(err.Error(), "-d 0s") || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("want all three problems reported, got %v", err)
	}
}
