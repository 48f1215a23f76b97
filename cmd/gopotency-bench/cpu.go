package main

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc/stat: 100 ticks a second on every Linux
// architecture Go supports (USER_HZ, fixed by the kernel ABI).
const userHZ = 100

// cpuBusy returns the machine's total busy CPU time so far, all CPUs and
// all processes: everything but idle, iowait and steal in /proc/stat. On a
// machine shared by every component of the benchmark, busy time per
// request is the cost that survives saturation; latency and throughput
// just split it differently. It fails where there is no /proc/stat.
func cpuBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseCPUBusy(string(b))
}

func parseCPUBusy(stat string) (time.Duration, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, errors.New("/proc/stat: no aggregate cpu line")
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, errors.New("/proc/stat: bad cpu field " + strconv.Quote(v))
		}
		// Fields: user nice system idle iowait irq softirq steal guest
		// guest_nice. Steal is another VM's time; guest time is already
		// counted in user and nice.
		switch i {
		case 3, 4, 7, 8, 9:
		default:
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / userHZ, nil
}
