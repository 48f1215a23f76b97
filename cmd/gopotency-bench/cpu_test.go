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
