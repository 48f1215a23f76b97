// Command gopotency-bench is the load benchmark through a real Envoy: Envoy
// alone against Envoy + gopotency on the memory store and on Redis, for
// un-keyed POSTs, first-time keyed POSTs and replays, all in one run on one
// machine, so the ratios compare like with like. `make bench-e2e` runs it;
// docs/benchmarks.md shows a result and how to read it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gopotency/gopotency/internal/envoyrun"
)

type options struct {
	workers   int
	duration  time.Duration
	warmup    time.Duration
	rounds    int
	redisURL  string
	scenarios []scenario
	json      bool
	args      []string
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("gopotency-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{args: args}
	var names string
	fs.IntVar(&o.workers, "c", 16, "concurrent clients (closed loop)")
	fs.DurationVar(&o.duration, "d", 5*time.Second, "measured duration of each scenario on each target")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "warm-up of each target before each scenario (not counted)")
	fs.IntVar(&o.rounds, "rounds", 5, "interleaved rounds the measured duration is split into, visiting the targets in turn")
	fs.StringVar(&o.redisURL, "redis-url", "", `Redis for the Redis rows; empty starts a throwaway redis-server from PATH, "off" skips them`)
	fs.StringVar(&names, "scenarios", "unkeyed,first,replay", "comma-separated scenarios to run")
	fs.BoolVar(&o.json, "json", false, "print JSON instead of Markdown")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if o.workers < 1 || o.workers > 1024 {
		errs = append(errs, fmt.Errorf("-c %d: want 1 to 1024", o.workers))
	}
	if o.duration <= 0 || o.duration > 10*time.Minute {
		errs = append(errs, fmt.Errorf("-d %v: want more than 0, at most 10m", o.duration))
	}
	if o.warmup < 0 || o.warmup > time.Minute {
		errs = append(errs, fmt.Errorf("-warmup %v: want 0 to 1m", o.warmup))
	}
	if o.rounds < 1 || o.rounds > 100 {
		errs = append(errs, fmt.Errorf("-rounds %d: want 1 to 100", o.rounds))
	}
	for _, n := range strings.Split(names, ",") {
		i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.Name == strings.TrimSpace(n) })
		if i < 0 {
			errs = append(errs, fmt.Errorf("-scenarios: unknown %q (unkeyed, first, replay)", n))
			continue
		}
		if !slices.ContainsFunc(o.scenarios, func(s scenario) bool { return s.Name == scenarios[i].Name }) {
			o.scenarios = append(o.scenarios, scenarios[i])
		}
	}
	return o, errors.Join(errs...)
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gopotency-bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gopotency-bench:", err)
		os.Exit(1)
	}
	if o.json {
		err = rep.writeJSON(os.Stdout)
	} else {
		rep.writeMarkdown(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gopotency-bench:", err)
		os.Exit(1)
	}
	if ws := rep.warnings(); len(ws) > 0 {
		fmt.Fprintf(os.Stderr, "\n!!!!!!!! WARNING: this run had failures; do not publish its figures !!!!!!!!\n")
		for _, w := range ws {
			fmt.Fprintln(os.Stderr, "!!", w)
		}
		os.Exit(1)
	}
}

// run starts the upstream, the gopotency servers and one Envoy per target,
// then measures every scenario on every target, the baseline first.
func run(ctx context.Context, o *options, progress io.Writer) (*report, error) {
	bin, err := envoyrun.Find()
	if err != nil {
		return nil, err
	}
	root, err := envoyrun.ModuleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gopotency-bench-")
	if err != nil {
		return nil, err
	}
	rep := &report{Facts: machineFacts(o, bin)}
	keepDir := false
	defer func() {
		if !keepDir {
			_ = os.RemoveAll(dir)
		}
	}()

	up, err := startUpstream()
	if err != nil {
		return nil, err
	}
	defer up.srv.Close()

	type backend struct{ name, store, version string }
	backends := []backend{{"memory", "memory://", ""}}
	switch o.redisURL {
	case "off":
		rep.Notes = append(rep.Notes, "Redis rows skipped: -redis-url off.")
	case "":
		rs, found, err := startRedis(dir)
		switch {
		case !found:
			rep.Notes = append(rep.Notes, "Redis rows skipped: no redis-server on PATH (install it or pass -redis-url).")
		case err != nil:
			rep.Notes = append(rep.Notes, "Redis rows skipped: "+err.Error())
		default:
			defer rs.Stop()
			backends = append(backends, backend{"Redis", rs.URL, rs.Version + " (throwaway, no persistence)"})
		}
	default:
		backends = append(backends, backend{"Redis", o.redisURL, "Redis from -redis-url"})
	}

	var targets []target
	var gpAddr string
	for _, b := range backends {
		logf, err := os.Create(filepath.Join(dir, "gopotency-"+strings.ToLower(b.name)+".log"))
		if err != nil {
			return nil, err
		}
		defer logf.Close()
		g, err := startGopotency(root, b.store, logf)
		if err != nil {
			// Only a Redis the run started itself may be skipped: a store
			// asked for by flag, or the memory store, must work.
			if b.name == "memory" || o.redisURL != "" {
				return nil, fmt.Errorf("gopotency (%s): %w", b.name, err)
			}
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s rows skipped: gopotency could not open the store: %v", b.name, err))
			continue
		}
		defer func() { _ = g.Stop() }()
		if b.version != "" {
			rep.Facts.Redis = b.version
		}
		if gpAddr == "" {
			gpAddr = g.GRPCAddr()
		}
		e, err := startEnvoy(ctx, bin, root, filepath.Join(dir, "envoy-"+strings.ToLower(b.name)), g.GRPCAddr(), up.addr, false)
		if err != nil {
			return nil, fmt.Errorf("envoy for gopotency (%s): %w", b.name, err)
		}
		defer e.Stop()
		targets = append(targets, target{Name: "Envoy + gopotency (" + b.name + ")", URL: e.URL, gopotency: true, envoy: e})
	}
	// The baseline's rewrite needs some gopotency address; stripExtProc
	// then removes the filter and that cluster.
	base, err := startEnvoy(ctx, bin, root, filepath.Join(dir, "envoy-baseline"), gpAddr, up.addr, true)
	if err != nil {
		return nil, fmt.Errorf("baseline envoy: %w", err)
	}
	defer base.Stop()
	targets = slices.Insert(targets, 0, target{Name: "Envoy alone", URL: base.URL, envoy: base})

	tr := &http.Transport{MaxIdleConns: 4 * o.workers, MaxIdleConnsPerHost: 2 * o.workers, IdleConnTimeout: time.Minute, DisableCompression: true}
	defer tr.CloseIdleConnections()
	b := &bench{client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, workers: o.workers,
		duration: o.duration, warmup: o.warmup, rounds: o.rounds, upstream: up, runID: strconv.FormatInt(time.Now().UnixNano(), 36)}
	for _, sc := range o.scenarios {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rows, err := b.measureAll(ctx, targets, sc)
		if err != nil {
			return nil, err
		}
		for _, x := range rows {
			s := x.Summary
			fmt.Fprintf(progress, "%-24s %-28s %8.0f req/s  p50 %-9s p99 %-9s errors %d\n", sc.Title, x.Target.Name, s.RPS, ms(s.P50), ms(s.P99), s.Errors)
		}
		rep.Rows = append(rep.Rows, rows...)
	}
	if len(rep.warnings()) > 0 {
		keepDir = true
		rep.Notes = append(rep.Notes, "Logs of Envoy and gopotency kept in "+dir+".")
	}
	return rep, nil
}

func machineFacts(o *options, envoyBin string) facts {
	cmd := []string{"go run ./cmd/gopotency-bench"}
	for _, a := range o.args {
		if strings.ContainsAny(a, " '\"$`\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		cmd = append(cmd, a)
	}
	return facts{
		Command: strings.Join(cmd, " "), Date: time.Now().UTC().Format("2006-01-02"),
		CPUs: runtime.NumCPU(), CPUModel: cpuModel(), Platform: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(),
		LoadAvg: loadAvg(), Envoy: envoyVersion(envoyBin), Workers: o.workers, Duration: o.duration.String(), Warmup: o.warmup.String(), Rounds: o.rounds,
	}
}

// loadAvg reads the 1-minute load average ("" where there is none): other
// processes on the machine skew every figure.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return ""
}

// cpuModel reads the first "model name" of /proc/cpuinfo ("" elsewhere).
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
