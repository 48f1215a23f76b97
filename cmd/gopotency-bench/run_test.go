package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/gopotency/gopotency/internal/envoyrun"
)

// TestMain lets the test binary play the benchmark's servers, as the
// benchmark re-executes itself for them.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		if err := runChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRunCountsWhatEnvoyDoes runs the benchmark briefly through the real
// Envoy (memory store, TCP and unix socket) and checks what it counted,
// not how fast it went.
func TestRunCountsWhatEnvoyDoes(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Envoy; skipped in -short mode")
	}
	if _, err := envoyrun.Find(); err != nil {
		if os.Getenv("GOPOTENCY_REQUIRE_SERVICES") == "1" {
			t.Fatalf("GOPOTENCY_REQUIRE_SERVICES=1 but %v", err)
		}
		t.Skip(err)
	}
	o := &options{workers: 2, duration: 300 * time.Millisecond, rounds: 2, redisURL: "off", pgURL: "off", scenarios: scenarios, uds: true, layout: "headers-first"}
	rep, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if ws := rep.warnings(); len(ws) > 0 {
		t.Fatalf("warnings: %q", ws)
	}
	if len(rep.Rows) != 4*4 {
		t.Fatalf("%d rows, want 4 scenarios × 4 targets", len(rep.Rows))
	}
	want := map[string]struct{ msgs, streams float64 }{"get": {0, 0}, "unkeyed": {0, 0}, "replay": {2, 1}, "first": {4, 1}}
	for _, x := range rep.Rows {
		if x.Summary.OK == 0 {
			t.Errorf("%s on %s: no request succeeded", x.Scenario.Name, x.Target.Name)
		}
		for _, c := range []string{"envoy", "upstream", "client"} {
			if _, ok := x.Proc[c]; !ok {
				t.Errorf("%s on %s: no %s CPU", x.Scenario.Name, x.Target.Name, c)
			}
		}
		if !x.Target.extProc() {
			continue
		}
		w := want[x.Scenario.Name]
		if m, s := x.perRequest(x.ExtProcMsgs), x.perRequest(x.Streams); m != w.msgs || s != w.streams {
			t.Errorf("%s on %s: %.2f messages and %.2f streams per request, want %v and %v", x.Scenario.Name, x.Target.Name, m, s, w.msgs, w.streams)
		}
		if _, ok := x.Proc["server"]; !ok {
			t.Errorf("%s on %s: no server CPU", x.Scenario.Name, x.Target.Name)
		}
		if x.Scenario.Name == "first" && x.UpstreamCalls != int64(x.Summary.OK) {
			t.Errorf("%s: %d first-time requests, %d reached the application", x.Target.Name, x.Summary.OK, x.UpstreamCalls)
		}
		if x.Scenario.replayed && x.UpstreamCalls != 0 {
			t.Errorf("%s: %d replays reached the application", x.Target.Name, x.UpstreamCalls)
		}
	}
	if got := len(rep.goals()); got != 4 {
		t.Errorf("%d goal lines, want 4", got)
	}
}
