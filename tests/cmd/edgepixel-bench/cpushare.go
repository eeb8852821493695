package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuParts samples, over a run, the CPU time of the processes taking part
// and the machine's own accounting (/proc/stat), so a figure that moved
// can be told apart by who took the cores: the measured process, its
// neighbours, the load generator or the kernel.
type cpuParts struct {
	names []string
	pids  []int
}

// add names another process to sample (pid 0: this process; below 0: a
// column left empty, for a process not running in this run).
func (p *cpuParts) add(name string, pid int) {
	p.names, p.pids = append(p.names, name), append(p.pids, pid)
}

// cpuSample is one reading of cpuParts.
type cpuSample struct {
	at    time.Time
	procs []time.Duration
	// The machine's CPU time over all cores (proc(5), the "cpu" line):
	// user and nice, system, interrupts (irq and softirq) and idle (with
	// iowait).
	user, system, irq, idle time.Duration
}

func (p *cpuParts) sample() cpuSample {
	s := cpuSample{at: time.Now()}
	for _, pid := range p.pids {
		if pid == 0 {
			pid = os.Getpid()
		}
		s.procs = append(s.procs, procCPU(pid))
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	tick := func(i int) time.Duration {
		if i >= len(f) {
			return 0
		}
		n, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(n) * 10 * time.Millisecond // USER_HZ is 100 on Linux
	}
	// f[0] is "cpu"; then user nice system idle iowait irq softirq steal.
	s.user, s.system, s.idle, s.irq = tick(1)+tick(2), tick(3), tick(4)+tick(5), tick(6)+tick(7)
	return s
}

// cpuShare is what each part used between two samples, in cores (1.0: one
// core busy the whole time).
type cpuShare struct {
	procs                   []float64
	user, system, irq, idle float64
}

func (p *cpuParts) share(a, b cpuSample) cpuShare {
	el := b.at.Sub(a.at).Seconds()
	c := func(d time.Duration) float64 { return d.Seconds() / el }
	s := cpuShare{user: c(b.user - a.user), system: c(b.system - a.system), irq: c(b.irq - a.irq), idle: c(b.idle - a.idle)}
	for i, pid := range p.pids {
		if pid < 0 {
			s.procs = append(s.procs, math.NaN())
			continue
		}
		s.procs = append(s.procs, c(b.procs[i]-a.procs[i]))
	}
	return s
}

// header is the table columns for cells.
func (p *cpuParts) header() string {
	return strings.Join(p.names, " | ") + " | machine user / system / irq / idle"
}

// cells formats s for a table row of header's columns.
func (s cpuShare) cells() string {
	var b strings.Builder
	for _, v := range s.procs {
		if math.IsNaN(v) {
			b.WriteString("- | ")
			continue
		}
		fmt.Fprintf(&b, "%.2f | ", v)
	}
	fmt.Fprintf(&b, "%.2f / %.2f / %.2f / %.2f", s.user, s.system, s.irq, s.idle)
	return b.String()
}
