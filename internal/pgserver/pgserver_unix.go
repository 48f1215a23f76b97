//go:build unix

package pgserver

import "syscall"

// runAs makes the started process run as uid:gid.
func runAs(a *syscall.SysProcAttr, uid, gid uint32) {
	a.Credential = &syscall.Credential{Uid: uid, Gid: gid}
}
