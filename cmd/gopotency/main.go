// Command gopotency is the Envoy ext_proc idempotency server.
//
//	gopotency [flags]        serve (gopotency --help lists the flags)
//	gopotency --version      print the version
//	gopotency probe [URL]    exit 0 if an admin endpoint answers 200 (container health checks)
//	gopotency envoy-config   print the Envoy configuration generated from a GoPotency config (--help)
//	gopotency admin …        inspect or purge a key through the admin API (docs/admin.md)
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gopotency/gopotency/pkg/admin"
	"github.com/gopotency/gopotency/pkg/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	run := func() error { return app.Main(ctx, os.Args[1:], os.Stderr) }
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		run = func() error { return probe(ctx, os.Args[2:], os.Stderr) }
	}
	if len(os.Args) > 1 && os.Args[1] == "admin" {
		run = func() error { return admin.CLI(ctx, os.Args[2:], os.Stdin, os.Stdout, os.Stderr, os.Getenv) }
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gopotency:", err)
		stop()
		os.Exit(1)
	}
}
