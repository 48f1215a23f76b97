//go:build !unix

package pgserver

import "syscall"

// runAs is never needed off Unix: only root must switch users, and
// os.Geteuid reports -1 there.
func runAs(*syscall.SysProcAttr, uint32, uint32) {}
