// Command gopotency-bench is the load benchmark through a real Envoy. In
// one run on one machine it measures GET, un-keyed POST, replay and
// first-time keyed POST on Envoy alone, Envoy + a do-nothing ext_proc
// server (the floor any ext_proc server pays), and Envoy + gopotency on
// the memory store, on Redis, and over a unix socket, with the CPU time
// of every process per request and Envoy's ext_proc counters, so the
// ratios can be explained. `make bench-e2e` runs it; docs/benchmarks.md
// shows how to read it.
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
	"github.com/gopotency/gopotency/internal/pgserver"
	"github.com/gopotency/gopotency/internal/proc"
	"github.com/gopotency/gopotency/pkg/config"
)

type options struct {
	workers    int
	duration   time.Duration
	warmup     time.Duration
	rounds     int
	redisURL   string
	pgURL      string
	scenarios  []scenario
	layout     string // shipped, headers-first or body-first
	uds        bool
	noCache    bool
	json       bool
	jsonOut    string
	svgOut     string
	chartFrom  string
	cpuProfile string
	soak       time.Duration
	args       []string
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
	fs.StringVar(&o.pgURL, "postgres-url", "", `PostgreSQL for the PostgreSQL rows; empty starts a throwaway cluster (initdb from /usr/lib/postgresql or PATH), "off" skips them`)
	fs.StringVar(&names, "scenarios", "get,unkeyed,replay,first", "comma-separated scenarios to run")
	fs.StringVar(&o.layout, "layout", "shipped", "Envoy layout: shipped (as envoy/gopotency.yaml says), headers-first, or body-first (envoy.body_first: keyed requests with a small body go body-first)")
	fs.BoolVar(&o.uds, "uds", true, "also measure gopotency (memory) over a unix socket")
	fs.BoolVar(&o.noCache, "no-cache-row", true, "also measure gopotency on Redis with the replay cache off")
	fs.BoolVar(&o.json, "json", false, "print JSON instead of Markdown")
	fs.StringVar(&o.jsonOut, "json-out", "", "also write the JSON report to this file")
	fs.StringVar(&o.svgOut, "svg", "", "also write the chart (SVG) to this file")
	fs.StringVar(&o.chartFrom, "chart-from", "", "measure nothing: draw the chart of this JSON report into -svg")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of each gopotency server per scenario into this directory (serves --pprof)")
	fs.DurationVar(&o.soak, "soak", 0, "instead of the scenarios: mixed load through Envoy on gopotency (Redis) for this long, reporting server RSS, goroutines and p99 per minute")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if !slices.Contains([]string{"shipped", "headers-first", "body-first"}, o.layout) {
		errs = append(errs, fmt.Errorf("-layout %q: want shipped, headers-first or body-first", o.layout))
	}
	if o.chartFrom != "" && o.svgOut == "" {
		errs = append(errs, errors.New("-chart-from needs -svg"))
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
	if o.soak < 0 || o.soak > 24*time.Hour {
		errs = append(errs, fmt.Errorf("-soak %v: want 0 (off) to 24h", o.soak))
	}
	if o.soak > 0 {
		// One target matters; the others would only idle.
		o.uds, o.noCache, o.pgURL = false, false, "off"
		if o.redisURL == "off" {
			errs = append(errs, errors.New("-soak runs on Redis: -redis-url off leaves nothing to soak"))
		}
	}
	if o.rounds < 1 || o.rounds > 100 {
		errs = append(errs, fmt.Errorf("-rounds %d: want 1 to 100", o.rounds))
	}
	for _, n := range strings.Split(names, ",") {
		i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.Name == strings.TrimSpace(n) })
		if i < 0 {
			errs = append(errs, fmt.Errorf("-scenarios: unknown %q (get, unkeyed, replay, first)", n))
			continue
		}
		if !slices.ContainsFunc(o.scenarios, func(s scenario) bool { return s.Name == scenarios[i].Name }) {
			o.scenarios = append(o.scenarios, scenarios[i])
		}
	}
	return o, errors.Join(errs...)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		if err := runChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "gopotency-bench child:", err)
			os.Exit(1)
		}
		return
	}
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gopotency-bench:", err)
		os.Exit(2)
	}
	if o.chartFrom != "" {
		if err := chartFromFile(o.chartFrom, o.svgOut); err != nil {
			fmt.Fprintln(os.Stderr, "gopotency-bench:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gopotency-bench:", err)
		os.Exit(1)
	}
	if err := output(o, rep); err != nil {
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

func output(o *options, rep *report) error {
	if rep.Soak != nil {
		if o.json {
			if err := rep.Soak.writeJSON(os.Stdout, rep.Facts); err != nil {
				return err
			}
		} else {
			rep.Soak.writeMarkdown(os.Stdout, rep.Facts)
		}
		if o.jsonOut != "" {
			f, err := os.Create(o.jsonOut)
			if err != nil {
				return err
			}
			if err := rep.Soak.writeJSON(f, rep.Facts); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}
		return nil
	}
	if o.json {
		if err := rep.writeJSON(os.Stdout); err != nil {
			return err
		}
	} else {
		rep.writeMarkdown(os.Stdout)
	}
	if o.jsonOut != "" {
		f, err := os.Create(o.jsonOut)
		if err != nil {
			return err
		}
		if err := rep.writeJSON(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if o.svgOut != "" {
		return os.WriteFile(o.svgOut, chart(rep.toJSON()), 0o644)
	}
	return nil
}

// stack is every process of a run, stopped in reverse order.
type stack struct {
	stops []func()
}

func (s *stack) add(f func()) { s.stops = append(s.stops, f) }
func (s *stack) stop() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
}

// run starts the upstream, the ext_proc servers and one Envoy per target,
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
	gpConfig := filepath.Join(root, "envoy", "gopotency.yaml")
	base, err := config.Load([]string{"--config", gpConfig}, func(string) string { return "" }, io.Discard)
	if err != nil {
		return nil, err
	}
	e, err := base.RequireEnvoy()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gopotency-bench-")
	if err != nil {
		return nil, err
	}
	bodyFirst := o.layout == "body-first" || o.layout == "shipped" && e.BodyFirst
	layout := map[bool]string{false: "headers-first", true: "body-first"}[bodyFirst]
	rep := &report{Facts: machineFacts(o, bin, layout)}
	keepDir := false
	defer func() {
		if !keepDir {
			_ = os.RemoveAll(dir)
		}
	}()
	st := &stack{}
	defer st.stop()

	up, err := startChild(dir, "upstream", "upstream")
	if err != nil {
		return nil, err
	}
	st.add(up.stop)
	appAddr := up.addrs[0]

	var targets []target
	// addTarget starts Envoy in front of extProc ("" for the baseline).
	addTarget := func(t target, extProc string) error {
		ports, err := proc.FreePorts(2)
		if err != nil {
			return err
		}
		listen, admin := ports[0], ports[1]
		cfg, err := envoyConfig(base, listen, admin, extProc, appAddr, bodyFirst, t.Kind == kindEnvoy)
		if err != nil {
			return fmt.Errorf("%s: %w", t.Name, err)
		}
		e, err := startEnvoy(ctx, bin, filepath.Join(dir, "envoy-"+strconv.Itoa(len(targets))), cfg, listen, admin)
		if err != nil {
			return fmt.Errorf("envoy for %s: %w", t.Name, err)
		}
		st.add(e.Stop)
		t.envoy, t.URL = e, e.URL
		targets = append(targets, t)
		return nil
	}
	if err := addTarget(target{Name: "Envoy alone", Kind: kindEnvoy}, ""); err != nil {
		return nil, err
	}
	fl, err := startChild(dir, "floor", "floor", "--addr", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	st.add(fl.stop)
	if err := addTarget(target{Name: "Envoy + floor ext_proc", Kind: kindFloor, server: fl}, fl.addrs[0]); err != nil {
		return nil, err
	}

	type backend struct {
		name, store, grpc string
		storePID          int
		storeTree         bool   // the store is a process tree (PostgreSQL)
		config            string // gopotency YAML (gpConfig when empty)
	}
	backends := []backend{{name: "memory", store: "memory://", grpc: "127.0.0.1:0"}}
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
			st.add(rs.Kill)
			rep.Facts.Redis = rs.Version + " (throwaway, no persistence)"
			backends = append(backends, backend{name: "Redis", store: rs.URL(), grpc: "127.0.0.1:0", storePID: rs.PID()})
			if o.noCache {
				// The replay cache measured: the same Redis without it.
				noCache, err := withReplayCacheOff(dir, gpConfig)
				if err != nil {
					return nil, err
				}
				backends = append(backends, backend{name: "Redis, no replay cache", store: rs.URL(), grpc: "127.0.0.1:0", storePID: rs.PID(), config: noCache})
			}
		}
	default:
		rep.Facts.Redis = "Redis from -redis-url (its CPU is not measured)"
		backends = append(backends, backend{name: "Redis", store: o.redisURL, grpc: "127.0.0.1:0"})
	}
	switch o.pgURL {
	case "off":
		rep.Notes = append(rep.Notes, "PostgreSQL rows skipped: -postgres-url off.")
	case "":
		pg, err := pgserver.Start()
		switch {
		case errors.Is(err, pgserver.ErrNoBinaries):
			rep.Notes = append(rep.Notes, "PostgreSQL rows skipped: no initdb/postgres/psql under /usr/lib/postgresql or on PATH (install them or pass -postgres-url).")
		case err != nil:
			rep.Notes = append(rep.Notes, "PostgreSQL rows skipped: "+err.Error())
		default:
			st.add(pg.Stop)
			rep.Facts.Postgres = pg.Version + " (throwaway, fsync off)"
			backends = append(backends, backend{name: "PostgreSQL", store: pg.URL, grpc: "127.0.0.1:0", storePID: pg.PID(), storeTree: true})
		}
	default:
		rep.Facts.Postgres = "PostgreSQL from -postgres-url (its CPU is not measured)"
		backends = append(backends, backend{name: "PostgreSQL", store: o.pgURL, grpc: "127.0.0.1:0"})
	}
	if o.uds {
		backends = append(backends, backend{name: "memory, unix socket", store: "memory://", grpc: "unix://" + filepath.Join(dir, "gopotency.sock")})
	}
	for i, b := range backends {
		cfgFile := gpConfig
		if b.config != "" {
			cfgFile = b.config
		}
		args := []string{"gopotency", "--config", cfgFile, "--store", b.store, "--grpc-addr", b.grpc, "--admin-addr", "127.0.0.1:0"}
		if o.cpuProfile != "" {
			args = append(args, "--pprof")
		}
		g, err := startChild(dir, "gopotency-"+strconv.Itoa(i), args...)
		if err != nil {
			// Only a Redis the run started itself may be skipped: a store
			// asked for by flag, or the memory store, must work.
			if !strings.HasPrefix(b.name, "Redis") && b.name != "PostgreSQL" || strings.HasPrefix(b.name, "Redis") && o.redisURL != "" || b.name == "PostgreSQL" && o.pgURL != "" {
				return nil, fmt.Errorf("gopotency (%s): %w", b.name, err)
			}
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s rows skipped: gopotency could not start: %v", b.name, err))
			continue
		}
		st.add(g.stop)
		if err := addTarget(target{Name: "Envoy + gopotency (" + b.name + ")", Kind: kindGopotency, server: g, storePID: b.storePID, storeTree: b.storeTree}, g.addrs[0]); err != nil {
			return nil, err
		}
	}

	tr := &http.Transport{MaxIdleConns: 4 * o.workers, MaxIdleConnsPerHost: 2 * o.workers, IdleConnTimeout: time.Minute, DisableCompression: true}
	defer tr.CloseIdleConnections()
	b := &bench{client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, workers: o.workers,
		duration: o.duration, warmup: o.warmup, rounds: o.rounds, upstream: up, runID: strconv.FormatInt(time.Now().UnixNano(), 36)}
	if o.soak > 0 {
		i := slices.IndexFunc(targets, func(t target) bool { return t.Name == "Envoy + gopotency (Redis)" })
		if i < 0 {
			return nil, fmt.Errorf("soak: no Redis target (%s)", strings.Join(rep.Notes, " "))
		}
		if rep.Soak, err = b.soak(ctx, targets[i], o.soak, progress); err != nil {
			return nil, err
		}
		if len(rep.warnings()) > 0 {
			keepDir = true
			rep.Notes = append(rep.Notes, "Logs of Envoy and the servers kept in "+dir+".")
		}
		return rep, nil
	}
	for _, sc := range o.scenarios {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var profiles func() error
		if o.cpuProfile != "" {
			profiles = startProfiles(o.cpuProfile, sc, targets, time.Duration(len(targets))*(o.warmup+o.duration))
		}
		rows, err := b.measureAll(ctx, targets, sc)
		if err != nil {
			return nil, err
		}
		if profiles != nil {
			if err := profiles(); err != nil {
				rep.Notes = append(rep.Notes, "CPU profile: "+err.Error())
			}
		}
		for _, x := range rows {
			s := x.Summary
			fmt.Fprintf(progress, "%-24s %-38s %8.0f req/s  p50 %-9s p99 %-9s errors %d\n", sc.Title, x.Target.Name, s.RPS, ms(s.P50), ms(s.P99), s.Errors)
		}
		rep.Rows = append(rep.Rows, rows...)
	}
	if len(rep.warnings()) > 0 {
		keepDir = true
		rep.Notes = append(rep.Notes, "Logs of Envoy and the servers kept in "+dir+".")
	}
	return rep, nil
}

func machineFacts(o *options, envoyBin, layout string) facts {
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
		LoadAvg: loadAvg(), Envoy: envoyVersion(envoyBin), Layout: layout, Workers: o.workers, Duration: o.duration.String(),
		Warmup: o.warmup.String(), Rounds: o.rounds,
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

// withReplayCacheOff writes a copy of the gopotency config with the
// replay cache turned off.
func withReplayCacheOff(dir, cfg string) (string, error) {
	b, err := os.ReadFile(cfg)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "gopotency-nocache.yaml")
	return out, os.WriteFile(out, append(b, []byte("\nreplay_cache: {ttl: 0s}\n")...), 0o600)
}
