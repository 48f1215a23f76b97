//go:build !linux

package testenv

import "syscall"

// killWithParent is Linux-only (Pdeathsig); elsewhere Cleanup alone stops
// started services.
func killWithParent(*syscall.SysProcAttr) {}
