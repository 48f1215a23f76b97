package main

import (
	"fmt"
	"strings"
)

// goal is one target of issue 9, checked on every gopotency row of a
// scenario.
type goal struct {
	scenario string
	minRPS   float64 // req/s over Envoy alone, at least
	noStream bool    // and no ext_proc stream at all
	maxCPU   float64 // server+store CPU per request over the floor's, at most
}

var goals = []goal{
	{scenario: "get", minRPS: 0.95, noStream: true, maxCPU: 1.3},
	{scenario: "unkeyed", minRPS: 0.95, noStream: true, maxCPU: 1.3},
	{scenario: "replay", minRPS: 0.6, maxCPU: 1.6},
	{scenario: "first", minRPS: 0.5, maxCPU: 1.6},
}

// goals states, per scenario measured, how each gopotency target fares
// against the goals: met or missed, with the figures.
func (r *report) goals() []string {
	var out []string
	for _, g := range goals {
		var parts []string
		title := ""
		for _, x := range r.Rows {
			if x.Scenario.Name != g.scenario || x.Target.Kind != kindGopotency {
				continue
			}
			title = x.Scenario.Title
			met := true
			var fig []string
			if q, ok := r.ratiosTo(x, kindEnvoy); ok {
				fig = append(fig, fmt.Sprintf("%.2f×", q.RPS))
				met = met && q.RPS >= g.minRPS
			} else {
				fig, met = append(fig, "no baseline"), false
			}
			if g.noStream {
				n := x.perRequest(x.Streams)
				fig = append(fig, num(n, "%.2f streams/req"))
				met = met && n == 0
			}
			if q, ok := r.serverVsFloor(x); ok {
				fig = append(fig, fmt.Sprintf("server %.2f× floor", q))
				met = met && q <= g.maxCPU
			} else if !g.noStream {
				fig, met = append(fig, "no floor CPU to compare"), false
			}
			mark := "met"
			if !met {
				mark = "MISSED"
			}
			parts = append(parts, fmt.Sprintf("%s %s (%s)", strings.TrimPrefix(x.Target.Name, "Envoy + "), mark, strings.Join(fig, ", ")))
		}
		if len(parts) == 0 {
			continue
		}
		want := fmt.Sprintf("≥ %.2f× Envoy alone", g.minRPS)
		if g.noStream {
			want += ", no ext_proc stream"
		}
		want += fmt.Sprintf(", server CPU ≤ %.1f× the floor's", g.maxCPU)
		out = append(out, fmt.Sprintf("Goal, %s: %s. %s.", title, want, strings.Join(parts, "; ")))
	}
	return out
}
