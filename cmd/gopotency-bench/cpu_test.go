package main

import (
	"testing"
	"time"
)

func TestParseCPUBusy(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	got, err := parseCPUBusy("cpu  100 5 50 9000 30 2 3 40 7 1\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := 160 * 10 * time.Millisecond; got != want { // 100+5+50+2+3 ticks of 10ms
		t.Fatalf("busy %v, want %v", got, want)
	}
	for _, bad := range []string{"", "intr 1 2 3", "cpu 1 2 x 4 5"} {
		if _, err := parseCPUBusy(bad); err == nil {
			t.Errorf("parseCPUBusy(%q) accepted", bad)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
	got, err := parseProcStat("4242 (envoy main) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 9 0\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := (1234 + 567) * 10 * time.Millisecond; got != want {
		t.Fatalf("cpu %v, want %v", got, want)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 x 5"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("parseProcStat(%q) accepted", bad)
		}
	}
}
