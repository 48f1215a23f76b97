package main

import (
	"fmt"
	"strings"
)

// goal is one performance target, checked on every gopotency row of a
// scenario; a zero bound is not checked.
type goal struct {
	scenario string
	minRPS   float64 // req/s over Envoy alone, at least
	minFloor float64 // req/s over the floor server's, at least
	noStream bool    // and no ext_proc stream at all
	maxCPU   float64 // server+store CPU per request over the floor's, at most
}

// goals: unguarded traffic costs nothing measurable; a replay costs what
// any ext_proc server's answer costs; a first request on a shared store,
// with its two store round trips, at most twice the floor's CPU and
// 0.8× its throughput.
var goals = []goal{
	{scenario: "get", minRPS: 0.97, noStream: true},
	{scenario: "unkeyed", minRPS: 0.97, noStream: true},
	{scenario: "replay", maxCPU: 1.1},
	{scenario: "first", minFloor: 0.8, maxCPU: 2.0},
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
			if g.minRPS > 0 {
				if q, ok := r.ratiosTo(x, kindEnvoy); ok {
					fig = append(fig, fmt.Sprintf("%.2f× Envoy alone", q.RPS))
					met = met && q.RPS >= g.minRPS
				} else {
					fig, met = append(fig, "no baseline"), false
				}
			}
			if g.minFloor > 0 {
				if q, ok := r.ratiosTo(x, kindFloor); ok {
					fig = append(fig, fmt.Sprintf("%.2f× the floor's req/s", q.RPS))
					met = met && q.RPS >= g.minFloor
				} else {
					fig, met = append(fig, "no floor"), false
				}
			}
			if g.noStream {
				n := x.perRequest(x.Streams)
				fig = append(fig, num(n, "%.2f streams/req"))
				met = met && n == 0
			}
			if g.maxCPU > 0 {
				if q, ok := r.serverVsFloor(x); ok {
					fig = append(fig, fmt.Sprintf("server+store CPU %.2f× floor", q))
					met = met && q <= g.maxCPU
				} else {
					fig, met = append(fig, "no floor CPU to compare"), false
				}
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
		var want []string
		if g.minRPS > 0 {
			want = append(want, fmt.Sprintf("≥ %.2f× Envoy alone", g.minRPS))
		}
		if g.noStream {
			want = append(want, "no ext_proc stream")
		}
		if g.minFloor > 0 {
			want = append(want, fmt.Sprintf("≥ %.1f× the floor's req/s", g.minFloor))
		}
		if g.maxCPU > 0 {
			want = append(want, fmt.Sprintf("server+store CPU ≤ %.1f× the floor's", g.maxCPU))
		}
		out = append(out, fmt.Sprintf("Goal, %s: %s. %s.", title, strings.Join(want, ", "), strings.Join(parts, "; ")))
	}
	return out
}
