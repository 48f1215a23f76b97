package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopotency/gopotency/pkg/app"
	"github.com/gopotency/gopotency/pkg/config"
)

// The benchmark runs each server in a process of its own (this binary
// re-executed with childArg), so /proc tells their CPU time apart: the
// upstream, gopotency, the floor server, and the load generator itself.
const childArg = "__serve"

// readyPrefix starts the one line a child prints on stdout once it serves.
const readyPrefix = "READY"

// runChild runs one server until SIGTERM or SIGINT; args follow childArg.
func runChild(args []string) error {
	if len(args) == 0 {
		return errors.New("child: which server?")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "upstream":
		return serveUpstream(ctx)
	case "gopotency":
		return serveGopotency(ctx, args[1:])
	case "floor":
		fs := flag.NewFlagSet("floor", flag.ContinueOnError)
		addr := fs.String("addr", "127.0.0.1:0", "host:port or unix:///path")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return serveFloor(ctx, *addr)
	}
	return fmt.Errorf("child: unknown server %q", args[0])
}

func ready(addrs ...string) {
	line := readyPrefix
	for _, a := range addrs {
		line += " " + a
	}
	fmt.Println(line)
}

// callsPath answers the number of requests the upstream served; the
// benchmark asks it directly, not through Envoy.
const callsPath = "/__calls"

// upstreamBody is the application's answer: about 200 bytes of JSON, the
// size of a typical "created" resource.
var upstreamBody = []byte(`{"id":"ord_5f2c9a7e1b3d4c8f","status":"created","item":"sku-123","quantity":2,` +
	`"amount":4200,"currency":"EUR","customer":"cus_42","created_at":"2025-01-01T00:00:00Z",` +
	`"links":{"self":"/orders/ord_5f2c9a7e1b3d4c8f"}}`)

// serveUpstream is the trivial application behind every Envoy: it reads
// the request and answers 201. It counts calls, so a replay that reached
// it would show.
func serveUpstream(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var calls atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+callsPath, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(strconv.FormatInt(calls.Load(), 10)))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "/orders/ord_5f2c9a7e1b3d4c8f")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(upstreamBody)
	})
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: mux}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	ready(ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serveGopotency runs the server as cmd/gopotency wires it, on the
// arguments given (config file, store, addresses), with two changes that
// do not alter what is measured: no drain delay at shutdown, and records
// kept 10 minutes instead of 24 hours, so a Redis given with -redis-url
// is not left full of them (the retention is one argument of the same
// store calls).
func serveGopotency(ctx context.Context, args []string) error {
	cfg, err := config.Load(args, func(string) string { return "" }, os.Stderr)
	if err != nil {
		return err
	}
	cfg.DrainDelay, cfg.ShutdownGrace = 0, 2*time.Second
	cfg.Default.Retention = 10 * time.Minute
	for _, p := range cfg.Policies {
		p.Retention = 10 * time.Minute
	}
	// The server's own runtime defaults (GOGC, memory limit), as
	// cmd/gopotency sets them: part of what is measured.
	app.TuneRuntime(cfg, os.Getenv, slog.New(slog.DiscardHandler))
	r, err := app.Start(cfg, os.Stderr)
	if err != nil {
		return err
	}
	ready(r.GRPCAddr(), r.AdminAddr())
	<-ctx.Done()
	return r.Stop()
}
