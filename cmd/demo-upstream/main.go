// Command demo-upstream serves the demo payments API (docker-compose's
// "app" service).
package main

import (
	"flag"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/gopotency/gopotency/internal/demoapp"
)

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	delay := flag.Duration("delay", time.Second, "how long a charge takes")
	flag.Parse()
	srv := &http.Server{Addr: *addr, Handler: &demoapp.App{Delay: *delay}, ReadHeaderTimeout: 5 * time.Second}
	slog.Info("demo upstream listening", "addr", *addr)
	if err := srv.ListenAndServe(); err != nil {
		slog.Error("demo upstream", "error", err)
		os.Exit(1)
	}
}
