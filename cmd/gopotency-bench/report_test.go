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

func scenarioNamed(name string) scenario {
	for _, s := range scenarios {
		if s.Name == name {
			return s
		}
	}
	panic(name)
}

// sampleRow builds a row of 1 s with cpu µs per request per component.
func sampleRow(sc string, t target, rps float64, p50, p99 time.Duration, msgs, streams int64, cpu map[string]int) *row {
	x := newRow(scenarioNamed(sc), t)
	x.Summary = sum(rps, p50, p99, 0)
	x.ExtProcMsgs, x.Streams = msgs, streams
	var all time.Duration
	for k, us := range cpu {
		d := time.Duration(us) * time.Microsecond * time.Duration(rps)
		x.Proc[k] = d
		all += d
	}
	x.CPU = all
	return x
}

func sampleReport() *report {
	base := target{Name: "Envoy alone", Kind: kindEnvoy}
	fl := target{Name: "Envoy + floor ext_proc", Kind: kindFloor}
	mem := target{Name: "Envoy + gopotency (memory)", Kind: kindGopotency}
	ms2, ms4, ms8 := 2*time.Millisecond, 4*time.Millisecond, 8*time.Millisecond
	return &report{
		Facts: facts{Command: "go run ./cmd/gopotency-bench -d 5s", CPUs: 2, Platform: "linux/amd64", Go: "go1.26", Envoy: "1.40.0",
			Layout: "headers-first", Workers: 16, Duration: "5s", Warmup: "1s", Rounds: 5},
		Rows: []*row{
			sampleRow("unkeyed", base, 4000, ms2, ms8, -1, -1, map[string]int{"envoy": 100, "upstream": 50, "client": 50}),
			sampleRow("unkeyed", fl, 3900, ms2, ms8, 0, 0, map[string]int{"envoy": 100, "server": 0, "upstream": 50, "client": 50}),
			sampleRow("unkeyed", mem, 3880, ms2, ms8, 0, 0, map[string]int{"envoy": 100, "server": 1, "upstream": 50, "client": 50}),
			sampleRow("replay", base, 4000, ms2, ms8, -1, -1, map[string]int{"envoy": 100, "upstream": 50, "client": 50}),
			sampleRow("replay", fl, 3000, ms2, ms4, 2000*3000/1000, 3000, map[string]int{"envoy": 150, "server": 50, "upstream": 0, "client": 50}),
			sampleRow("replay", mem, 2000, ms4, ms8, 2*2000, 2000, map[string]int{"envoy": 150, "server": 100, "upstream": 0, "client": 50}),
		},
		Notes: []string{"Redis rows skipped: -redis-url off."},
	}
}

func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	sampleReport().writeMarkdown(&b)
	out := b.String()
	for _, want := range []string{
		"| un-keyed POST | Envoy alone | 4000 | 2.00 ms | 8.00 ms | — | — | 0 | — | — | — |",
		"| un-keyed POST | Envoy + gopotency (memory) | 3880 | 2.00 ms | 8.00 ms | 0.00 | 0.00 | 0 | 0.97× | 1.00× | 0.99× |",
		"| replay (completed key) | Envoy + gopotency (memory) | 2000 | 4.00 ms | 8.00 ms | 2.00 | 1.00 | 0 | 0.50× | 1.00× | 0.67× |",
		"| replay (completed key) | Envoy + gopotency (memory) | 150 | 100 | — | 0 | 50 | 300 | 2.00× |",
		// No stream on either side: no CPU ratio to the floor.
		"| un-keyed POST | Envoy + gopotency (memory) | 100 | 1 | — | 50 | 50 | 201 | — |",
		"Command: `go run ./cmd/gopotency-bench -d 5s`",
		"Envoy layout: headers-first",
		"Goal, un-keyed POST: ≥ 0.97× Envoy alone, no ext_proc stream. gopotency (memory) met (0.97× Envoy alone, 0.00 streams/req).",
		"Goal, replay (completed key): server+store CPU ≤ 1.1× the floor's. gopotency (memory) MISSED (server+store CPU 2.00× floor).",
		"Replays through an ext_proc server: 5000 sent, 0 reached the application.",
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
	r.Rows[2].Summary = sum(1000, 5*time.Millisecond, 25*time.Millisecond, 3)
	r.Rows[2].ErrorKinds = map[string]int{"HTTP 503": 2, "EOF": 1}
	r.Rows[4].UpstreamCalls = 7
	ws := r.warnings()
	if len(ws) != 2 || !strings.Contains(ws[0], "3 of 1003 requests failed") || !strings.Contains(ws[0], "EOF ×1, HTTP 503 ×2") ||
		!strings.Contains(ws[1], "7 replays on Envoy + floor") {
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
	var got jsonReport
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if len(got.Rows) != 6 || got.Facts.Workers != 16 || len(got.Warnings) != 0 || len(got.Goals) != 2 {
		t.Fatalf("decoded %+v", got)
	}
	if r := got.Rows[0]; r.Scenario != "unkeyed" || r.VsEnvoy != nil || r.MsgsPerReq != nil || r.RPS != 4000 || r.P99Ms != 8 {
		t.Fatalf("baseline row %+v", r)
	}
	r := got.Rows[5]
	if r.VsEnvoy == nil || r.VsEnvoy.RPS != 0.5 || r.VsFloor == nil || r.ServerVsFloor == nil || *r.ServerVsFloor != 2 {
		t.Fatalf("ratios %+v", r)
	}
	if r.MsgsPerReq == nil || *r.MsgsPerReq != 2 || *r.StreamsPerReq != 1 || r.ProcCPUUs["server"] != 100 || *r.CPUPerReqUs != 300 {
		t.Fatalf("per request %+v", r)
	}
	if got.Rows[4].VsFloor != nil {
		t.Fatal("the floor is not compared with itself")
	}
}

func TestChartDrawsEveryRow(t *testing.T) {
	svg := string(chart(sampleReport().toJSON()))
	if !strings.HasPrefix(svg, "<svg") || !strings.HasSuffix(svg, "</svg>\n") {
		t.Fatalf("not an SVG document:\n%s", svg)
	}
	for _, want := range []string{"un-keyed POST", "replay (completed key)", "0.50×", "300 µs", "baseline (4000 req/s)", "Envoy + floor ext_proc"} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart lacks %q", want)
		}
	}
}

func TestRatiosNeedABaseline(t *testing.T) {
	r := sampleReport()
	r.Rows = r.Rows[2:3] // gopotency row alone
	if _, ok := r.ratiosTo(r.Rows[0], kindEnvoy); ok {
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
	_, err = parseFlags([]string{"-c", "0", "-d", "0s", "-scenarios", "nope", "-chart-from", "x.json", "-layout", "sideways"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "-c 0") || !strings.Contains(err.Error(), "-d 0s") || !strings.Contains(err.Error(), `"nope"`) ||
		!strings.Contains(err.Error(), "-chart-from needs -svg") || !strings.Contains(err.Error(), `-layout "sideways"`) {
		t.Fatalf("want all five problems reported, got %v", err)
	}
}

func TestSlug(t *testing.T) {
	if got := slug("gopotency (memory, unix socket)"); got != "gopotency-memory-unix-socket" {
		t.Fatal(got)
	}
}

// A first-time row is a miss figure only if every request reached the
// application once: a key answered from the store is flagged.
func TestWarningsFlagFirstTimeRowsThatAreNotMisses(t *testing.T) {
	mem := target{Name: "Envoy + gopotency (Redis)", Kind: kindGopotency}
	r := sampleReport()
	ok := sampleRow("first", mem, 1000, time.Millisecond, 4*time.Millisecond, 3000, 1000, map[string]int{"envoy": 100})
	ok.UpstreamCalls = 1000
	repeated := sampleRow("first", mem, 1000, time.Millisecond, 4*time.Millisecond, 3000, 1000, map[string]int{"envoy": 100})
	repeated.UpstreamCalls = 990
	unknown := sampleRow("first", mem, 1000, time.Millisecond, 4*time.Millisecond, 3000, 1000, map[string]int{"envoy": 100})
	unknown.UpstreamCalls, unknown.callsUnknown = 1000, true
	r.Rows = append(r.Rows, ok, repeated, unknown)
	ws := r.warnings()
	if len(ws) != 2 || !strings.Contains(ws[0], "answered 201 but the application ran 990 times") || !strings.Contains(ws[1], "could not be read") {
		t.Fatalf("warnings %q", ws)
	}
}

// The keys of first-time requests never repeat: not across workers, the
// requests of one worker, the runs of one benchmark (warm-ups, rounds,
// targets), nor two benchmarks on the same store.
func TestFirstTimeKeysNeverRepeat(t *testing.T) {
	first := scenarioNamed("first")
	seen := map[string]bool{}
	for _, id := range []string{"a1", "a2"} {
		b := &bench{runID: id}
		for range 3 {
			run := b.nextRun()
			for w := range 4 {
				for n := range 50 {
					k := first.key(run, w, n)
					if seen[k] {
						t.Fatalf("key %s repeats", k)
					}
					if strings.Contains(k, replayMarker) {
						t.Fatalf("first-time key %s carries the replay marker: the floor would replay it", k)
					}
					seen[k] = true
				}
			}
		}
	}
}
