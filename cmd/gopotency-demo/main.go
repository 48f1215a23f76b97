// Command gopotency-demo runs the whole product on one machine: a real
// Envoy with envoy/envoy.yaml, the gopotency server on the embedded memory
// store, and a toy payments API; then it walks through what a client sees.
// `make demo` runs it (and installs Envoy first when needed).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gopotency/gopotency/internal/demoapp"
	"github.com/gopotency/gopotency/internal/envoyrun"
	"github.com/gopotency/gopotency/internal/proc"
	"github.com/gopotency/gopotency/pkg/app"
	"github.com/gopotency/gopotency/pkg/config"
)

func main() {
	serve := flag.Bool("serve", false, "keep everything running after the walkthrough (Ctrl-C stops)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *serve); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, serve bool) error {
	bin, err := envoyrun.Find()
	if err != nil {
		return err
	}
	root, err := envoyrun.ModuleRoot()
	if err != nil {
		return err
	}
	payments := &demoapp.App{Delay: 1500 * time.Millisecond}
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(upLn, payments) }()

	logf, err := os.CreateTemp("", "gopotency-demo-*.log")
	if err != nil {
		return err
	}
	cfg, err := config.Load([]string{"--config", filepath.Join(root, "envoy", "gopotency.yaml"), "--store", "memory://",
		"--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, func(string) string { return "" }, os.Stderr)
	if err != nil {
		return err
	}
	cfg.DrainDelay = 0
	srv, err := app.Start(cfg, logf)
	if err != nil {
		return err
	}
	defer func() { _ = srv.Stop() }()

	ports, err := proc.FreePorts(2)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(filepath.Join(root, "envoy", "envoy.yaml"))
	if err != nil {
		return err
	}
	addrs := envoyrun.Addrs{Listen: ports[0], Admin: ports[1], GoPotency: srv.GRPCAddr(), App: upLn.Addr().String()}
	ecfg, err := envoyrun.Rewrite(raw, addrs)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "gopotency-demo-envoy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	envoy, err := envoyrun.Start(ctx, bin, dir, ecfg, addrs)
	if err != nil {
		return err
	}
	defer envoy.Stop()

	fmt.Printf("Envoy %s  ->  gopotency ext_proc %s (memory store)  ->  payments API %s\n", envoy.URL, srv.GRPCAddr(), upLn.Addr())
	fmt.Printf("gopotency log: %s   metrics: http://%s/metrics\n\n", logf.Name(), srv.AdminAddr())
	w := &walk{base: envoy.URL, app: payments}
	w.all()
	if serve {
		fmt.Printf("\nStill running. Try:\n  curl -i -X POST %s/payments -H 'Idempotency-Key: \"my-key\"' -d '{\"amount\":5}'\nCtrl-C stops.\n", envoy.URL)
		<-ctx.Done()
	}
	return nil
}

type walk struct {
	base string
	app  *demoapp.App
	step int
}

func (w *walk) all() {
	key := fmt.Sprintf("\"demo-%d\"", time.Now().UnixNano())
	body := `{"amount": 4200, "currency": "EUR", "card": "tok_visa"}`

	w.say("A first payment with a fresh key runs once upstream.")
	w.show(w.post(key, body))

	w.say("The client times out and retries with the same key: the stored answer comes back, the card is not charged again.")
	w.show(w.post(key, body))

	w.say("The same key with a different payload is refused: 422, nothing runs.")
	w.show(w.post(key, strings.Replace(body, "4200", "9900", 1)))

	key2 := fmt.Sprintf("\"demo-concurrent-%d\"", time.Now().UnixNano())
	w.say("Two identical requests at once (a double click): one runs, the other gets 409 with Retry-After.")
	var wg sync.WaitGroup
	results := make([]string, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 200 * time.Millisecond)
			results[i] = w.post(key2, body)
		}()
	}
	wg.Wait()
	w.show(results[0])
	w.show(results[1])

	w.say("The payments route requires a key: without one, 400 and a link to the docs.")
	w.show(w.post("", body))

	key3 := fmt.Sprintf("\"demo-dropped-%d\"", time.Now().UnixNano())
	w.say("The connection drops while the charge runs, and the client retries: the card may have been charged, so the retry is told the outcome is unknown (424) instead of charging again.")
	w.show(w.postWithin(key3, body, w.app.Delay/3))
	time.Sleep(w.app.Delay) // the charge finished upstream; its answer never came back
	w.show(w.post(key3, body))

	fmt.Printf("\nCharges that really ran upstream: %d (3 requests with the first key, 2 with the second, 1 without, 2 with the third).\n", w.app.Charges())
}

func (w *walk) say(s string) {
	w.step++
	fmt.Printf("\n%d. %s\n", w.step, s)
}

func (w *walk) post(key, body string) string { return w.postWithin(key, body, 0) }

// postWithin posts as a client that gives up after timeout (0: never).
func (w *walk) postWithin(key, body string, timeout time.Duration) string {
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, w.base+"/payments", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	line := "   $ curl -X POST /payments"
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
		line += fmt.Sprintf(" -H 'Idempotency-Key: %s'", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return line + "\n   (no answer: the client gave up)"
		}
		return line + "\n   error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := fmt.Sprintf("%s\n   HTTP %d", line, resp.StatusCode)
	for _, h := range []string{"Idempotent-Replayed", "Retry-After", "Content-Type", "Location"} {
		if v := resp.Header.Get(h); v != "" {
			out += fmt.Sprintf("  %s: %s", h, v)
		}
	}
	return out + "\n   " + strings.TrimSpace(string(b))
}

func (w *walk) show(s string) { fmt.Println(s) }
