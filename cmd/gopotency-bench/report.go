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
	UpstreamCalls int64         // requests the application saw during the measured run
	ExtProcMsgs   int64         // ext_proc messages Envoy sent to gopotency then (-1: none or unknown)
	CPU           time.Duration // busy CPU time of the whole machine then (-1: unknown)
}

// cpuPerRequest is CPU per request sent, or -1.
func (x *row) cpuPerRequest() time.Duration {
	if x.CPU < 0 || x.Summary.Requests == 0 {
		return -1
	}
	return x.CPU / time.Duration(x.Summary.Requests)
}

// msgsPerRequest is ExtProcMsgs per request sent, or -1.
func (x *row) msgsPerRequest() float64 {
	if x.ExtProcMsgs < 0 || x.Summary.Requests == 0 {
		return -1
	}
	return float64(x.ExtProcMsgs) / float64(x.Summary.Requests)
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
	Workers  int    `json:"workers"`
	Duration string `json:"duration"`
	Warmup   string `json:"warmup"`
	Rounds   int    `json:"rounds"`
}

type report struct {
	Facts facts
	Rows  []*row
	Notes []string // skipped targets and the like
}

// ratios of a row against the baseline row of its scenario; ok is false
// for the baseline itself or when there is none to compare with.
type ratios struct {
	RPS float64 `json:"rps"` // target / baseline
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

func (r *report) ratios(x *row) (ratios, bool) {
	if !x.Target.gopotency {
		return ratios{}, false
	}
	for _, b := range r.Rows {
		if b.Scenario.Name == x.Scenario.Name && !b.Target.gopotency {
			s, bs := x.Summary, b.Summary
			if bs.RPS == 0 || bs.P50 == 0 || bs.P99 == 0 {
				return ratios{}, false
			}
			return ratios{RPS: s.RPS / bs.RPS, P50: float64(s.P50) / float64(bs.P50), P99: float64(s.P99) / float64(bs.P99)}, true
		}
	}
	return ratios{}, false
}

// warnings are what makes a table untrustworthy: errors, and replays that
// reached the application.
func (r *report) warnings() []string {
	var out []string
	for _, x := range r.Rows {
		if x.Summary.Errors > 0 {
			out = append(out, fmt.Sprintf("%d of %d requests failed in %q on %s (%s): its figures are not comparable",
				x.Summary.Errors, x.Summary.Requests, x.Scenario.Title, x.Target.Name, kinds(x.ErrorKinds)))
		}
		if x.Target.gopotency && x.Scenario.replayed && x.UpstreamCalls > 0 {
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
		if x.Target.gopotency && x.Scenario.replayed {
			n += int64(x.Summary.Requests)
			calls += x.UpstreamCalls
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("Replays through gopotency: %d sent, %d reached the application.", n, calls)
}

// messageCheck states the ext_proc messages Envoy sent per request in each
// scenario: the work the filter adds, counted by Envoy itself.
func (r *report) messageCheck() string {
	var labels, parts []string
	byScenario := map[string][]string{}
	var order []string
	for _, x := range r.Rows {
		m := x.msgsPerRequest()
		if m < 0 {
			continue
		}
		if _, ok := byScenario[x.Scenario.Title]; !ok {
			order = append(order, x.Scenario.Title)
		}
		byScenario[x.Scenario.Title] = append(byScenario[x.Scenario.Title], fmt.Sprintf("%.2f", m))
		if len(order) == 1 {
			labels = append(labels, strings.TrimSuffix(strings.TrimPrefix(x.Target.Name, "Envoy + gopotency ("), ")"))
		}
	}
	for _, t := range order {
		parts = append(parts, t+" "+strings.Join(byScenario[t], " / "))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("ext_proc messages Envoy sent to gopotency per request, %s (Envoy's %s): %s.",
		strings.Join(labels, " / "), extProcMsgs, strings.Join(parts, "; "))
}

func (r *report) writeMarkdown(w io.Writer) {
	f := r.Facts
	fmt.Fprintf(w, "| Scenario | Target | req/s | p50 | p99 | CPU/req | Errors | req/s vs Envoy | p50 vs Envoy | p99 vs Envoy |\n")
	fmt.Fprintf(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, x := range r.Rows {
		s := x.Summary
		rs := []string{"—", "—", "—"}
		if q, ok := r.ratios(x); ok {
			rs = []string{fmt.Sprintf("%.2f×", q.RPS), fmt.Sprintf("%.2f×", q.P50), fmt.Sprintf("%.2f×", q.P99)}
		}
		cpu := "—"
		if c := x.cpuPerRequest(); c >= 0 {
			cpu = fmt.Sprintf("%.0f µs", float64(c)/float64(time.Microsecond))
		}
		fmt.Fprintf(w, "| %s | %s | %.0f | %s | %s | %s | %d | %s | %s | %s |\n",
			x.Scenario.Title, x.Target.Name, s.RPS, ms(s.P50), ms(s.P99), cpu, s.Errors, rs[0], rs[1], rs[2])
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
	if f.LoadAvg != "" {
		fmt.Fprintf(w, "; load average %s before the run", f.LoadAvg)
	}
	fmt.Fprintf(w, ".\nThe %d CPUs are shared by Envoy, gopotency, the upstream, Redis and the load generator: the figures compare "+
		"configurations measured in one run on one machine, they are not capacity figures.\n\n", f.CPUs)
	fmt.Fprintf(w, "Load: closed loop, %d concurrent HTTP/1.1 keep-alive clients; per scenario, a %s warm-up of each target, then %s "+
		"measured per target in %d interleaved rounds; "+
		"POST /orders with a %d-byte JSON body; the upstream answers 201 with a %d-byte JSON body. "+
		"CPU/req is the busy time of all CPUs (every process, the load generator included) over the requests sent. "+
		"Ratios are against Envoy alone in the same scenario and run: req/s higher is better, p50/p99 lower is better.\n",
		f.Workers, f.Warmup, f.Duration, f.Rounds, len(requestBody), len(upstreamBody))
	var notes []string
	if c := r.messageCheck(); c != "" {
		notes = append(notes, c)
	}
	if c := r.replayCheck(); c != "" {
		notes = append(notes, c)
	}
	notes = append(notes, r.Notes...)
	for _, wn := range r.warnings() {
		notes = append(notes, "**WARNING**: "+wn)
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
	}
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
	Scenario      string         `json:"scenario"`
	Target        string         `json:"target"`
	Requests      int            `json:"requests"`
	OK            int            `json:"ok"`
	Errors        int            `json:"errors"`
	ErrorKinds    map[string]int `json:"error_kinds,omitempty"`
	ElapsedS      float64        `json:"elapsed_s"`
	RPS           float64        `json:"rps"`
	P50Ms         float64        `json:"p50_ms"`
	P99Ms         float64        `json:"p99_ms"`
	MaxMs         float64        `json:"max_ms"`
	UpstreamCalls int64          `json:"upstream_calls"`
	MsgsPerReq    *float64       `json:"ext_proc_msgs_per_request,omitempty"`
	CPUPerReqUs   *float64       `json:"cpu_per_request_us,omitempty"`
	Ratios        *ratios        `json:"vs_envoy_alone,omitempty"`
}

func (r *report) writeJSON(w io.Writer) error {
	out := struct {
		Facts    facts     `json:"facts"`
		Rows     []jsonRow `json:"rows"`
		Notes    []string  `json:"notes,omitempty"`
		Warnings []string  `json:"warnings,omitempty"`
	}{Facts: r.Facts, Notes: r.Notes, Warnings: r.warnings()}
	toMs := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for _, x := range r.Rows {
		s := x.Summary
		j := jsonRow{Scenario: x.Scenario.Name, Target: x.Target.Name, Requests: s.Requests, OK: s.OK, Errors: s.Errors,
			ErrorKinds: x.ErrorKinds, ElapsedS: s.Elapsed.Seconds(), RPS: s.RPS, P50Ms: toMs(s.P50), P99Ms: toMs(s.P99),
			MaxMs: toMs(s.Max), UpstreamCalls: x.UpstreamCalls}
		if q, ok := r.ratios(x); ok {
			j.Ratios = &q
		}
		if m := x.msgsPerRequest(); m >= 0 {
			j.MsgsPerReq = &m
		}
		if c := x.cpuPerRequest(); c >= 0 {
			us := float64(c) / float64(time.Microsecond)
			j.CPUPerReqUs = &us
		}
		if len(j.ErrorKinds) == 0 {
			j.ErrorKinds = nil
		}
		out.Rows = append(out.Rows, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
