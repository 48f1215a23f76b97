package main

import (
	"errors"
	"fmt"
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

// procCPU returns the CPU time (user + system, every thread) a process
// has used so far, from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStat(string(b))
}

func parseProcStat(stat string) (time.Duration, error) {
	// The command name is in parentheses and may hold spaces: count the
	// fields after the last ')'. utime and stime are fields 14 and 15 of
	// the line, so 11 and 12 after it (state is the first).
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("/proc/<pid>/stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, errors.New("/proc/<pid>/stat: too few fields")
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/<pid>/stat: bad field %q", v)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
