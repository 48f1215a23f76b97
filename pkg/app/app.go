// Package app wires the server: configuration, logging, metrics, the
// store, the ext_proc gRPC service with health checking, the admin HTTP
// endpoints, and graceful shutdown.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/gopotency/gopotency/pkg/admin"
	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/envoyconfig"
	"github.com/gopotency/gopotency/pkg/extproc"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/metrics"
	"github.com/gopotency/gopotency/pkg/store/memstore"
	"github.com/gopotency/gopotency/pkg/store/replaycache"
	"github.com/gopotency/gopotency/pkg/tracing"
	"github.com/gopotency/gopotency/pkg/version"
)

// Main is the gopotency command: it runs the subcommand args name, or the
// server until ctx is done. args exclude the program name. The process's
// environment and standard streams come in as arguments, so tests run the
// command as main does.
//
//	gopotency [flags]        serve (gopotency --help lists the flags)
//	gopotency --version      print the version
//	gopotency probe [URL]    exit 0 if an admin endpoint answers 200
//	gopotency envoy-config   generate the Envoy side from a GoPotency config
//	gopotency admin …        inspect or purge a key through the admin API
func Main(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	// The one place subcommands are named; each lives with its feature.
	if len(args) > 0 {
		switch args[0] {
		case ProbeCommand:
			return Probe(ctx, args[1:], stderr)
		case envoyconfig.Command:
			return envoyconfig.Run(args[1:], stdout, stderr)
		case AdminCommand:
			return admin.CLI(ctx, args[1:], stdin, stdout, stderr, getenv)
		}
	}
	return serve(ctx, args, getenv, stdout, stderr)
}

// serve runs the server until ctx is done.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.ShowVersion {
		_, err := fmt.Fprintln(stdout, version.String())
		return err
	}
	a, err := New(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	TuneRuntime(cfg, getenv, a.log)
	if err := a.Listen(); err != nil {
		a.closeStore()
		return err
	}
	return a.Serve(ctx)
}

// App is a configured server. New, then Listen, then Serve.
type App struct {
	cfg      *config.Config
	log      *slog.Logger
	reg      *prometheus.Registry
	store    idempotency.Store
	closeFn  func() error
	grpc     *grpc.Server
	health   *health.Server
	admin    *http.Server
	grpcLn   net.Listener
	adminLn  net.Listener
	draining atomic.Bool
	tls      *certReloader // nil without grpc_tls
	adminAPI *admin.API
	// durability is what the store said at start about failovers and
	// restarts (Redis), shown by /readyz.
	durability string
	// settled waits for the outcomes still being saved (extproc.Server.Wait).
	settled func()
	// tracer exports spans; nil when tracing is off.
	tracer *tracing.Tracer
}

// Option changes how New builds the server.
type Option func(*options)

type options struct {
	store      idempotency.Store
	closeStore func() error
	// registerer, when set, wraps the registry every collector is
	// registered on (a test lists the metric families from it).
	registerer func(*prometheus.Registry) prometheus.Registerer
}

// WithStore uses store instead of opening cfg.Store (tests wrap stores to
// inject faults); closeFn runs at shutdown.
func WithStore(store idempotency.Store, closeFn func() error) Option {
	return func(o *options) { o.store, o.closeStore = store, closeFn }
}

// New builds the server from cfg: it opens the store but binds nothing.
func New(ctx context.Context, cfg *config.Config, stderr io.Writer, opts ...Option) (*App, error) {
	log := newLogger(cfg, stderr)
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	reg := prometheus.NewRegistry()
	var regr prometheus.Registerer = reg
	if o.registerer != nil {
		regr = o.registerer(reg)
	}
	regr.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := metrics.New(regr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	store, closeFn := o.store, o.closeStore
	if closeFn == nil {
		closeFn = func() error { return nil }
	}
	durability := ""
	if store == nil {
		if store, closeFn, err = OpenStore(ctx, cfg.Store, log, StoreOptions{RestartGrace: restartGrace(cfg)}); err != nil {
			return nil, err
		}
		if d, ok := store.(interface{ Durability() (string, bool) }); ok {
			durability, _ = d.Durability()
		}
		if _, local := store.(*memstore.Store); !local && cfg.ReplayCacheTTL > 0 {
			// Replays come in storms right after a first request: answer
			// them from memory, without a store round trip.
			store = replaycache.New(store, replaycache.Options{TTL: cfg.ReplayCacheTTL, MaxBytes: cfg.ReplayCacheBytes})
		}
	}
	storeTimeout := cfg.StoreTimeout
	if _, local := store.(*memstore.Store); local {
		storeTimeout = 0 // no I/O to bound: spare every call a timer
	}
	engineStore, tracer, decided, err := traced(ctx, cfg, store)
	if err != nil {
		_ = closeFn()
		return nil, err
	}
	eng := idempotency.New(engineStore, idempotency.WithHooks(m.Hooks()), idempotency.WithLogger(log), idempotency.WithStoreTimeout(storeTimeout))
	srv, err := extproc.New(extproc.Options{
		Engine: eng, Default: &cfg.Default, Policies: cfg.Policies, PolicyHeader: cfg.PolicyHeader,
		MaxMessageTimeout: cfg.MaxMessageTimeout, Logger: log, StreamsActive: m.StreamsActive,
		RoutePolicies: cfg.RoutePolicies, MaxBufferedBytes: cfg.MaxBufferedBytes,
		Buffered: m.Buffered, ProtocolError: m.ProtocolError, AnswerWithin: storeTimeout,
		Decided: decided,
	})
	if err != nil {
		_ = closeFn()
		return nil, err
	}
	m.BufferedLimit(cmp.Or(max(cfg.MaxBufferedBytes, 0), extproc.DefaultMaxBufferedBytes))
	a := &App{cfg: cfg, log: log, reg: reg, store: store, closeFn: closeFn, health: health.NewServer(), durability: durability, settled: srv.Wait, tracer: tracer}
	grpcOpts := []grpc.ServerOption{
		// A buffered body plus headers and framing. Envoy's BUFFERED_PARTIAL
		// can pass a body over its buffer limit in one message (a read that
		// arrived whole, as after Expect: 100-continue): leave room for it,
		// so the over-cap body reaches the processor and gets its 413
		// instead of failing the stream (Envoy's bare 503).
		grpc.MaxRecvMsgSize(int(2*maxBody(cfg)) + 4<<20),
		// Envoy pings idle HTTP/2 connections; grpc-go's default policy
		// (5 min, no pings without streams) answers faster pings with
		// GOAWAY too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// Stop returns once every handler has: the settles a cut stream
		// starts are then known to Wait before the store closes.
		grpc.WaitForHandlers(true),
	}
	if cfg.GRPCTLS.Enabled() {
		if a.tls, err = newCertReloader(cfg.GRPCTLS, log, regr); err != nil {
			_ = closeFn()
			return nil, err
		}
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(a.tls.serverConfig())))
	}
	if tracer != nil {
		grpcOpts = append(grpcOpts, tracing.ServerOption(tracer.Provider, tracer.Propagator))
	}
	a.grpc = grpc.NewServer(grpcOpts...)
	extprocv3.RegisterExternalProcessorServer(a.grpc, srv)
	healthpb.RegisterHealthServer(a.grpc, a.health)
	if a.adminAPI, err = newAdminAPI(cfg, store, log, regr); err != nil {
		_ = closeFn()
		return nil, err
	}
	a.admin = &http.Server{Handler: a.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
	return a, nil
}

// traced wraps the engine's store and the ext_proc server in tracing when
// the configuration turns it on; otherwise it returns store as it is.
func traced(ctx context.Context, cfg *config.Config, store idempotency.Store) (idempotency.Store, *tracing.Tracer, func(context.Context, extproc.Decision), error) {
	if !cfg.Tracing.Enabled() {
		return store, nil, nil, nil
	}
	t, err := tracing.New(ctx, tracing.Options{URL: cfg.Tracing.URL, Protocol: cfg.Tracing.Protocol, ServiceVersion: version.Version()})
	if err != nil {
		return nil, nil, nil, err
	}
	return tracing.Store(store, t.Provider), t, tracing.Decided, nil
}

func maxBody(cfg *config.Config) int64 {
	n := cfg.Default.MaxRequestBody
	for _, p := range cfg.Policies {
		n = max(n, p.MaxRequestBody)
	}
	return n
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Listen binds the gRPC and admin addresses.
func (a *App) Listen() error {
	var err error
	if a.grpcLn, err = listenGRPC(a.cfg.GRPCAddr, a.cfg.GRPCSocketMode); err != nil {
		return fmt.Errorf("grpc listener: %w", err)
	}
	if a.adminLn, err = net.Listen("tcp", a.cfg.AdminAddr); err != nil {
		_ = a.grpcLn.Close()
		return fmt.Errorf("admin listener: %w", err)
	}
	return nil
}

// GRPCAddr and AdminAddr return the bound addresses (after Listen); a
// socket is unix:///path.
func (a *App) GRPCAddr() string {
	if a.grpcLn.Addr().Network() == "unix" {
		return "unix://" + a.grpcLn.Addr().String()
	}
	return a.grpcLn.Addr().String()
}
func (a *App) AdminAddr() string { return a.adminLn.Addr().String() }

// Serve runs until ctx is done, then shuts down gracefully: health turns
// NOT_SERVING first so Envoy moves traffic away, then in-flight streams get
// ShutdownGrace to finish before they are cut.
func (a *App) Serve(ctx context.Context) error {
	a.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	a.health.SetServingStatus(extprocv3.ExternalProcessor_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	errc := make(chan error, 2)
	go func() { errc <- a.grpc.Serve(a.grpcLn) }()
	go func() {
		if err := a.admin.Serve(a.adminLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	a.log.Info("gopotency serving", "version", version.Version(), "grpc_addr", a.GRPCAddr(), "grpc_tls", a.tlsMode(), "admin_addr", a.AdminAddr(),
		"store", redactURL(a.cfg.Store), "tracing", endpointOf(a.cfg.Tracing.URL), "policies", len(a.cfg.Policies), "retention", a.cfg.Default.Retention.String(), "lease", a.cfg.Default.Lease.String())
	a.warnUnsafeDeployment()
	a.logAdminAPI()
	if a.tls != nil {
		go a.tls.watch(ctx)
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		a.log.Error("server failed", "error", serveErr)
	}
	a.shutdown()
	return serveErr
}

func (a *App) shutdown() {
	a.draining.Store(true)
	a.health.Shutdown() // every service NOT_SERVING
	a.log.Info("shutting down", "drain_delay", a.cfg.DrainDelay.String(), "grace", a.cfg.ShutdownGrace.String())
	time.Sleep(a.cfg.DrainDelay)
	done := make(chan struct{})
	go func() { a.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(a.cfg.ShutdownGrace):
		a.log.Warn("grace period over; cutting remaining streams (their keys are recorded as outcome-unknown)")
		a.grpc.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.admin.Shutdown(ctx)
	a.settled() // outcomes a slow store kept in the background
	if a.tracer != nil {
		if err := a.tracer.Shutdown(ctx); err != nil {
			a.log.Warn("sending the last spans", "error", err)
		}
	}
	a.closeStore()
	a.log.Info("stopped")
}

func (a *App) closeStore() {
	if err := a.closeFn(); err != nil {
		a.log.Warn("closing store", "error", err)
	}
}

// Running is a server started in the background by Start.
type Running struct {
	*App
	cancel context.CancelFunc
	done   chan error
}

// Start builds cfg, binds its addresses and serves in the background (the
// demo, the load benchmark and the end-to-end tests run the real wiring
// this way). Stop shuts it down.
func Start(cfg *config.Config, stderr io.Writer, opts ...Option) (*Running, error) {
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg, stderr, opts...)
	if err == nil {
		if err = a.Listen(); err != nil {
			a.closeStore()
		}
	}
	if err != nil {
		cancel()
		return nil, err
	}
	r := &Running{App: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Serve(ctx) }()
	return r, nil
}

// Stop shuts the server down gracefully and waits for it. It is safe to
// call more than once.
func (r *Running) Stop() error {
	r.cancel()
	err := <-r.done
	r.done <- err // later calls get the same answer
	return err
}
