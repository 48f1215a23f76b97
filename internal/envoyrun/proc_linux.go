package envoyrun

import "syscall"

// killWithParent has the kernel kill Envoy if the process that started it
// dies without stopping it (a test binary's -timeout panic, a killed
// benchmark), so no Envoy outlives its run holding ports.
func killWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
