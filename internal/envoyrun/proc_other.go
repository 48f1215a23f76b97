//go:build !linux

package envoyrun

import "syscall"

// killWithParent is Linux-only (Pdeathsig); elsewhere Stop alone ends Envoy.
func killWithParent(*syscall.SysProcAttr) {}
