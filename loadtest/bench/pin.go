package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinning splits the machine's CPUs between the servers under test
// (Postgres, the gateway, the token service) and the load generator (this
// process and what it starts later), so that the generator cannot take
// the servers' CPU: on a small machine a generator sharing the servers'
// cores measures its own contention, not the servers' admission control.
type pinning struct {
	servers, generator unix.CPUSet
	serverCPUs         int
}

// newPinning gives the servers the first n CPUs and the generator the
// rest; it fails on a machine without CPUs left for the generator.
func newPinning(n int) (*pinning, error) {
	total := runtime.NumCPU()
	if n < 1 || n >= total {
		return nil, fmt.Errorf("-pin %d: the servers need at least one CPU and the generator one of its own (this machine has %d)", n, total)
	}
	p := &pinning{serverCPUs: n}
	for c := range total {
		if c < n {
			p.servers.Set(c)
		} else {
			p.generator.Set(c)
		}
	}
	return p, nil
}

// pinSelf moves this process's threads (and so the processes it starts
// from now on) to the generator's CPUs.
func (p *pinning) pinSelf() error {
	runtime.GOMAXPROCS(p.generator.Count())
	return setThreads(os.Getpid(), &p.generator)
}

// pinServer moves the process group led by pid (a server and the
// processes it forked, such as Postgres's backends) to the servers' CPUs.
func (p *pinning) pinServer(pid int) error {
	pids, err := processGroup(pid)
	if err != nil {
		return err
	}
	var errs []error
	for _, member := range pids {
		errs = append(errs, setThreads(member, &p.servers))
	}
	return errors.Join(errs...)
}

// setThreads sets the affinity of every thread of pid (a process's
// affinity is its threads'; threads started later inherit it).
func setThreads(pid int, set *unix.CPUSet) error {
	tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil {
		return fmt.Errorf("listing the threads of %d: %w", pid, err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pinning thread %d of %d: %w", tid, pid, err)
		}
	}
	return nil
}

// processGroup lists the processes whose process group is pgid.
func processGroup(pgid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")) //nolint:gosec // /proc/<pid>/stat
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and
		// parentheses, so fields are counted after the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := bytes.Fields(stat[i+1:])
		if len(fields) < 3 {
			continue
		}
		if pgrp, err := strconv.Atoi(string(fields[2])); err == nil && pgrp == pgid {
			out = append(out, pid)
		}
	}
	return out, nil
}
