package testenv

import "syscall"

// killWithParent has the kernel kill a started service if the test binary
// dies without running Cleanup (a panic, a -timeout), so no server outlives
// its tests.
func killWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
