package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gopotency/gopotency/internal/loadgen"
)

// row is one measured scenario on one target.
type row struct {
	Scenario      scenario
	Target        target
	Summary       loadgen.Summary
	ErrorKinds    map[string]int
	UpstreamCalls int64 // requests the application saw during the measured run
	callsUnknown  bool  // the upstream's counter could not be read once
	// ExtProcMsgs and Streams are Envoy's ext_proc messages sent and
	// streams opened then (-1: no filter, or unknown).
	ExtProcMsgs, Streams int64
	CPU                  time.Duration            // busy CPU time of the whole machine then (-1: unknown)
	Proc                 map[string]time.Duration // CPU time per component (absent: none or unknown)
}

func newRow(sc scenario, t target) *row {
	return &row{Scenario: sc, Target: t, ExtProcMsgs: -1, Streams: -1, CPU: -1, Proc: map[string]time.Duration{}}
}

// add accumulates one run's counts.
func (x *row) add(s seen) {
	x.UpstreamCalls += max(s.calls, 0)
	x.callsUnknown = x.callsUnknown || s.calls < 0
	if s.msgs >= 0 {
		x.ExtProcMsgs = max(x.ExtProcMsgs, 0) + s.msgs
	}
	if s.streams >= 0 {
		x.Streams = max(x.Streams, 0) + s.streams
	}
	if s.cpu >= 0 {
		x.CPU = max(x.CPU, 0) + s.cpu
	}
	for k, v := range s.proc {
		x.Proc[k] += v
	}
}

// perRequest divides a count by the requests sent (-1 when unknown).
func (x *row) perRequest(n int64) float64 {
	if n < 0 || x.Summary.Requests == 0 {
		return -1
	}
	return float64(n) / float64(x.Summary.Requests)
}

// cpuUs is the CPU time per request in µs of one component ("all": the
// whole machine; "server+store"), or -1.
func (x *row) cpuUs(component string) float64 {
	var d time.Duration
	switch component {
	case "all":
		if x.CPU < 0 {
			return -1
		}
		d = x.CPU
	case "server+store":
		s, ok := x.Proc["server"]
		if !ok {
			return -1
		}
		d = s + x.Proc["store"]
	default:
		v, ok := x.Proc[component]
		if !ok {
			return -1
		}
		d = v
	}
	return x.perRequest(int64(d)) / float64(time.Microsecond)
}

// facts describe the run, so a table is never read without them.
type facts struct {
	Command  string `json:"command"`
	Date     string `json:"date"`
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model,omitempty"`
	Platform string `json:"platform"`
	LoadAvg  string `json:"load_avg_before,omitempty"` // 1-minute load average when the run started
	Go       string `json:"go"`
	Envoy    string `json:"envoy"`
	Redis    string `json:"redis,omitempty"`
	Postgres string `json:"postgres,omitempty"`
	Layout   string `json:"layout"` // headers-first or body-first
	Workers  int    `json:"workers"`
	Duration string `json:"duration"`
	Warmup   string `json:"warmup"`
	Rounds   int    `json:"rounds"`
}

type report struct {
	Facts facts
	Rows  []*row
	Notes []string    // skipped targets and the like
	Soak  *soakReport // -soak: the soak instead of Rows
}

// ratios of a row against another row of its scenario.
type ratios struct {
	RPS float64 `json:"rps"` // target / other
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// find returns the first row of scenario sc whose target is of kind.
func (r *report) find(sc, kind string) *row {
	for _, b := range r.Rows {
		if b.Scenario.Name == sc && b.Target.Kind == kind {
			return b
		}
	}
	return nil
}

// ratiosTo compares x with the row of kind in its scenario; ok is false
// for that row itself or when there is none.
func (r *report) ratiosTo(x *row, kind string) (ratios, bool) {
	b := r.find(x.Scenario.Name, kind)
	if b == nil || b == x {
		return ratios{}, false
	}
	s, bs := x.Summary, b.Summary
	if bs.RPS == 0 || bs.P50 == 0 || bs.P99 == 0 {
		return ratios{}, false
	}
	return ratios{RPS: s.RPS / bs.RPS, P50: float64(s.P50) / float64(bs.P50), P99: float64(s.P99) / float64(bs.P99)}, true
}

// minServerUs is the server CPU per request under which a ratio to the
// floor means nothing: with no stream opened, both servers only answer
// health checks.
const minServerUs = 2

// serverVsFloor is the CPU per request of a gopotency row's server and
// store over the floor server's in the same scenario.
func (r *report) serverVsFloor(x *row) (float64, bool) {
	f := r.find(x.Scenario.Name, kindFloor)
	if x.Target.Kind != kindGopotency || f == nil {
		return 0, false
	}
	a, b := x.cpuUs("server+store"), f.cpuUs("server")
	if a < 0 || b < minServerUs {
		return 0, false
	}
	return a / b, true
}

// warnings are what makes a table untrustworthy: errors (any answer but
// the upstream's 201, replayed exactly where it should be), replays that
// reached the application, and first-time requests that did not each reach
// it once (a key that repeated, across runs or workers, is answered from
// the store: that is not a miss figure).
func (r *report) warnings() []string {
	var out []string
	if r.Soak != nil {
		out = append(out, r.Soak.Flags...)
	}
	for _, x := range r.Rows {
		if x.Summary.Errors > 0 {
			out = append(out, fmt.Sprintf("%d of %d requests failed in %q on %s (%s): its figures are not comparable",
				x.Summary.Errors, x.Summary.Requests, x.Scenario.Title, x.Target.Name, kinds(x.ErrorKinds)))
		}
		if x.Scenario.Name == "first" && x.Summary.Errors == 0 {
			switch {
			case x.callsUnknown:
				out = append(out, fmt.Sprintf("%q on %s: the application's call counter could not be read, so nothing proves each request ran once: not a miss figure", x.Scenario.Title, x.Target.Name))
			case x.UpstreamCalls != int64(x.Summary.OK):
				out = append(out, fmt.Sprintf("%q on %s: %d requests answered 201 but the application ran %d times (keys repeated, or answers came from the store): not a miss figure",
					x.Scenario.Title, x.Target.Name, x.Summary.OK, x.UpstreamCalls))
			}
		}
		if x.Target.extProc() && x.Scenario.replayed && x.UpstreamCalls > 0 {
			out = append(out, fmt.Sprintf("%d replays on %s reached the application", x.UpstreamCalls, x.Target.Name))
		}
	}
	return out
}

func kinds(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// replayCheck states how many replays reached the application, the proof
// that the replay rows measure the store path.
func (r *report) replayCheck() string {
	var n, calls int64
	for _, x := range r.Rows {
		if x.Target.extProc() && x.Scenario.replayed {
			n += int64(x.Summary.Requests)
			calls += x.UpstreamCalls
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("Replays through an ext_proc server: %d sent, %d reached the application.", n, calls)
}

// num formats a per-request figure; -1 is "—".
func num(v float64, format string) string {
	if v < 0 {
		return "—"
	}
	return fmt.Sprintf(format, v)
}

func times(q float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.2f×", q)
}

func (r *report) writeMarkdown(w io.Writer) {
	f := r.Facts
	fmt.Fprintf(w, "| Scenario | Target | req/s | p50 | p99 | ext_proc msgs/req | streams/req | Errors | req/s vs Envoy | p99 vs Envoy | req/s vs floor |\n")
	fmt.Fprintf(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, x := range r.Rows {
		s := x.Summary
		vsEnvoy, okE := r.ratiosTo(x, kindEnvoy)
		vsFloor, okF := r.ratiosTo(x, kindFloor)
		fmt.Fprintf(w, "| %s | %s | %.0f | %s | %s | %s | %s | %d | %s | %s | %s |\n",
			x.Scenario.Title, x.Target.Name, s.RPS, ms(s.P50), ms(s.P99), num(x.perRequest(x.ExtProcMsgs), "%.2f"),
			num(x.perRequest(x.Streams), "%.2f"), s.Errors, times(vsEnvoy.RPS, okE), times(vsEnvoy.P99, okE),
			times(vsFloor.RPS, okF && x.Target.Kind == kindGopotency))
	}
	fmt.Fprintf(w, "\nCPU time per request, µs, by process (from /proc/<pid>/stat; \"all CPUs\" is the busy time of the whole machine):\n\n")
	fmt.Fprintf(w, "| Scenario | Target | Envoy | server | store | upstream | client | all CPUs | server+store vs floor |\n")
	fmt.Fprintf(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, x := range r.Rows {
		cells := make([]string, 0, len(components)+1)
		for _, c := range components {
			cells = append(cells, num(x.cpuUs(c), "%.0f"))
		}
		cells = append(cells, num(x.cpuUs("all"), "%.0f"))
		q, ok := r.serverVsFloor(x)
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", x.Scenario.Title, x.Target.Name, strings.Join(cells, " | "), times(q, ok))
	}
	fmt.Fprintf(w, "\nCommand: `%s` (%s)\n\n", f.Command, f.Date)
	machine := fmt.Sprintf("%d CPUs", f.CPUs)
	if f.CPUModel != "" {
		machine += " (" + f.CPUModel + ")"
	}
	fmt.Fprintf(w, "Machine: %s, %s; %s; Envoy %s with --concurrency 2", machine, f.Platform, f.Go, f.Envoy)
	if f.Redis != "" {
		fmt.Fprintf(w, "; %s", f.Redis)
	}
	if f.Postgres != "" {
		fmt.Fprintf(w, "; %s", f.Postgres)
	}
	if f.LoadAvg != "" {
		fmt.Fprintf(w, "; load average %s before the run", f.LoadAvg)
	}
	fmt.Fprintf(w, ".\nThe %d CPUs are shared by Envoy, the ext_proc servers, the upstream, the stores and the load generator: the figures compare "+
		"configurations measured in one run on one machine, they are not capacity figures.\n\n", f.CPUs)
	fmt.Fprintf(w, "Load: closed loop, %d concurrent HTTP/1.1 keep-alive clients; per scenario, a %s warm-up of each target, then %s "+
		"measured per target in %d interleaved rounds; GET /orders, or POST /orders with a %d-byte JSON body; the upstream answers 201 with a %d-byte JSON body. "+
		"Envoy layout: %s (generated from envoy/gopotency.yaml as envoy/envoy.yaml is). "+
		"Ratios are against Envoy alone, or the floor server, in the same scenario and run: req/s higher is better, p99 lower is better.\n",
		f.Workers, f.Warmup, f.Duration, f.Rounds, len(requestBody), len(upstreamBody), f.Layout)
	var notes []string
	notes = append(notes, r.goals()...)
	if c := r.replayCheck(); c != "" {
		notes = append(notes, c)
	}
	notes = append(notes, r.Notes...)
	for _, wn := range r.warnings() {
		notes = append(notes, "**WARNING**: "+wn)
	}
	fmt.Fprintln(w)
	for _, n := range notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
}

// ms formats a latency in milliseconds with three significant digits or so.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

type jsonRow struct {
	Scenario      string             `json:"scenario"`
	Target        string             `json:"target"`
	Kind          string             `json:"kind"`
	Requests      int                `json:"requests"`
	OK            int                `json:"ok"`
	Errors        int                `json:"errors"`
	ErrorKinds    map[string]int     `json:"error_kinds,omitempty"`
	ElapsedS      float64            `json:"elapsed_s"`
	RPS           float64            `json:"rps"`
	P50Ms         float64            `json:"p50_ms"`
	P99Ms         float64            `json:"p99_ms"`
	MaxMs         float64            `json:"max_ms"`
	UpstreamCalls int64              `json:"upstream_calls"`
	MsgsPerReq    *float64           `json:"ext_proc_msgs_per_request,omitempty"`
	StreamsPerReq *float64           `json:"ext_proc_streams_per_request,omitempty"`
	CPUPerReqUs   *float64           `json:"cpu_per_request_us,omitempty"`
	ProcCPUUs     map[string]float64 `json:"process_cpu_per_request_us,omitempty"`
	VsEnvoy       *ratios            `json:"vs_envoy_alone,omitempty"`
	VsFloor       *ratios            `json:"vs_floor,omitempty"`
	ServerVsFloor *float64           `json:"server_cpu_vs_floor,omitempty"`
}

type jsonReport struct {
	Facts    facts     `json:"facts"`
	Rows     []jsonRow `json:"rows"`
	Goals    []string  `json:"goals,omitempty"`
	Notes    []string  `json:"notes,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
}

func ptr(v float64) *float64 {
	if v < 0 {
		return nil
	}
	return &v
}

func (r *report) toJSON() jsonReport {
	out := jsonReport{Facts: r.Facts, Goals: r.goals(), Notes: r.Notes, Warnings: r.warnings()}
	toMs := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for _, x := range r.Rows {
		s := x.Summary
		j := jsonRow{Scenario: x.Scenario.Name, Target: x.Target.Name, Kind: x.Target.Kind, Requests: s.Requests, OK: s.OK, Errors: s.Errors,
			ErrorKinds: x.ErrorKinds, ElapsedS: s.Elapsed.Seconds(), RPS: s.RPS, P50Ms: toMs(s.P50), P99Ms: toMs(s.P99),
			MaxMs: toMs(s.Max), UpstreamCalls: x.UpstreamCalls, MsgsPerReq: ptr(x.perRequest(x.ExtProcMsgs)),
			StreamsPerReq: ptr(x.perRequest(x.Streams)), CPUPerReqUs: ptr(x.cpuUs("all"))}
		if q, ok := r.ratiosTo(x, kindEnvoy); ok {
			j.VsEnvoy = &q
		}
		if q, ok := r.ratiosTo(x, kindFloor); ok && x.Target.Kind == kindGopotency {
			j.VsFloor = &q
		}
		if q, ok := r.serverVsFloor(x); ok {
			j.ServerVsFloor = &q
		}
		for _, c := range components {
			if v := x.cpuUs(c); v >= 0 {
				if j.ProcCPUUs == nil {
					j.ProcCPUUs = map[string]float64{}
				}
				j.ProcCPUUs[c] = v
			}
		}
		if len(j.ErrorKinds) == 0 {
			j.ErrorKinds = nil
		}
		out.Rows = append(out.Rows, j)
	}
	return out
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.toJSON())
}
