// Package config loads the server configuration: flags, then environment
// variables, then an optional YAML file, then defaults. Validation reports
// every problem at once, so an operator fixes a bad deployment in one go.
package config

import (
	"bytes"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gopotency/gopotency/pkg/extproc"
	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Config is the whole server configuration. The YAML file is decoded onto
// Defaults(), so each setting is declared once, here, with its YAML key;
// flags and environment variables override what the file says (Load).
type Config struct {
	GRPCAddr  string `yaml:"grpc_addr"`
	AdminAddr string `yaml:"admin_addr"`
	// Store is a URL: memory://, redis://, rediss://, redis+cluster://,
	// redis+sentinel://, postgres://, sqlite:///path.
	Store string `yaml:"store"`
	Log   `yaml:"log"`
	// ShutdownGrace bounds graceful shutdown of in-flight streams.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// DrainDelay is how long the server reports NOT_SERVING before it
	// stops accepting streams, so Envoy's health checks move traffic away.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// StoreTimeout bounds each store call; keep it below Envoy's
	// message_timeout so a slow store is answered with a 503 problem (or
	// passed under fail_open), not Envoy's bare 504.
	StoreTimeout time.Duration `yaml:"store_timeout"`
	ReplayCache  `yaml:"replay_cache"`
	ExtProc      `yaml:"ext_proc"`
	Deploy       `yaml:",inline"` // TLS, --version (deploy.go)
	// GRPCSocketMode is the permission of a unix:// grpc_addr socket, set
	// from the grpc_socket section (socket.go).
	GRPCSocketMode os.FileMode `yaml:"-"`
	// Pprof serves net/http/pprof on the admin listener.
	Pprof bool `yaml:"pprof"`
	// Admin is the operator API (admin.go).
	Admin AdminAPI `yaml:"admin"`
	// Tracing exports OpenTelemetry spans (tracing.go); off by default.
	Tracing Tracing `yaml:"tracing"`

	// Default applies to routes that name no policy.
	Default idempotency.Policy `yaml:"-"`
	// Policies are selected per route by name.
	Policies map[string]*idempotency.Policy `yaml:"-"`
	// Envoy is the envoy section (nil without one); see envoy.go.
	Envoy *Envoy `yaml:"-"`
}

// Log is the log section.
type Log struct {
	LogLevel  string `yaml:"level"`
	LogFormat string `yaml:"format"`
}

// ReplayCache bounds the in-process cache of completed records in front
// of a shared store (replaycache); a TTL of 0 turns it off.
type ReplayCache struct {
	ReplayCacheTTL   time.Duration `yaml:"ttl"`
	ReplayCacheBytes int64         `yaml:"max_bytes"`
}

// ExtProc is the ext_proc section: see extproc.Options.
type ExtProc struct {
	PolicyHeader      string            `yaml:"policy_header"`
	RoutePolicies     map[string]string `yaml:"route_policies"`
	MaxMessageTimeout time.Duration     `yaml:"max_message_timeout"`
	MaxBufferedBytes  int64             `yaml:"max_buffered_bytes"`
}

// Defaults of the server settings, put together by Defaults. The policy
// defaults are idempotency.DefaultPolicy's, the ext_proc section's the
// ext_proc server's, the envoy section's in envoy.go.
const (
	DefaultGRPCAddr  = ":9002"
	DefaultAdminAddr = ":9003"
	DefaultStore     = "memory://"
	DefaultLogLevel  = "info"
	DefaultLogFormat = "json"
	// DefaultShutdownGrace bounds graceful shutdown.
	DefaultShutdownGrace = 30 * time.Second
	// DefaultDrainDelay covers the shipped envoy.yaml's health checks
	// (unhealthy after 2 x 1s + a 1s timeout), so Envoy stops sending new
	// streams before the server stops accepting them.
	DefaultDrainDelay = 5 * time.Second
	// DefaultStoreTimeout stays below the shipped message_timeout (1s).
	DefaultStoreTimeout = 800 * time.Millisecond
	// The replay cache's: a purge on one instance may go unseen by the
	// others for at most the TTL.
	DefaultReplayCacheTTL   = 5 * time.Second
	DefaultReplayCacheBytes = 64 << 20
	// DefaultTLSReloadInterval is how often the TLS files are re-read:
	// well under the minute or so a Kubernetes Secret update takes to
	// reach a pod.
	DefaultTLSReloadInterval = 10 * time.Second
	// DefaultGRPCSocketMode lets the socket's owner and group connect:
	// run Envoy in GoPotency's group (or the reverse) to share a socket.
	DefaultGRPCSocketMode os.FileMode = 0o660
)

// Defaults returns the configuration of a server given no settings: the
// one place the server's defaults are put together. Store is left empty
// so Load can tell a store that was never configured (StoreDefaulted).
func Defaults() Config {
	return Config{
		GRPCAddr:      DefaultGRPCAddr,
		AdminAddr:     DefaultAdminAddr,
		Log:           Log{LogLevel: DefaultLogLevel, LogFormat: DefaultLogFormat},
		ShutdownGrace: DefaultShutdownGrace,
		DrainDelay:    DefaultDrainDelay,
		StoreTimeout:  DefaultStoreTimeout,
		ReplayCache:   ReplayCache{ReplayCacheTTL: DefaultReplayCacheTTL, ReplayCacheBytes: DefaultReplayCacheBytes},
		// The ext_proc server's own defaults: the section is its options.
		ExtProc:        ExtProc{PolicyHeader: extproc.DefaultPolicyHeader, MaxBufferedBytes: extproc.DefaultMaxBufferedBytes},
		Deploy:         Deploy{GRPCTLS: TLS{ReloadInterval: DefaultTLSReloadInterval}},
		GRPCSocketMode: DefaultGRPCSocketMode,
		Default:        idempotency.DefaultPolicy(),
	}
}

// file is the YAML document: the Config's own keys, and the sections that
// are decoded in a second step (policies inherit default_policy; envoy
// routes name policies). Unknown fields are errors.
type file struct {
	Config        `yaml:",inline"`
	GRPCSocket    socketFile           `yaml:"grpc_socket"`
	DefaultPolicy yaml.Node            `yaml:"default_policy"`
	Policies      map[string]yaml.Node `yaml:"policies"`
	Envoy         *Envoy               `yaml:"envoy"`
}

// Load builds the configuration from args (without the program name), the
// environment lookup and the file named by --config. Every problem found is
// reported in one joined error.
func Load(args []string, getenv func(string) string, stderr io.Writer) (*Config, error) {
	fs := flag.NewFlagSet("gopotency", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// over holds what flags and the environment set ("" is unset); it
	// wins over the file (override).
	var over Config
	var cfgPath string
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&over.GRPCAddr, "grpc-addr", env("GOPOTENCY_GRPC_ADDR", ""), "gRPC listen address for Envoy (env GOPOTENCY_GRPC_ADDR; default "+DefaultGRPCAddr+")")
	fs.StringVar(&over.AdminAddr, "admin-addr", env("GOPOTENCY_ADMIN_ADDR", ""), "HTTP address for /metrics, /healthz, /readyz (env GOPOTENCY_ADMIN_ADDR; default "+DefaultAdminAddr+")")
	fs.StringVar(&over.Store, "store", env("GOPOTENCY_STORE", ""), "store URL (env GOPOTENCY_STORE; default "+DefaultStore+")")
	fs.StringVar(&cfgPath, "config", env("GOPOTENCY_CONFIG", ""), "YAML configuration file (env GOPOTENCY_CONFIG)")
	fs.StringVar(&over.LogLevel, "log-level", env("GOPOTENCY_LOG_LEVEL", ""), "debug, info, warn or error (env GOPOTENCY_LOG_LEVEL; default info)")
	over.registerDeployFlags(fs, env)
	fs.BoolVar(&over.Pprof, "pprof", env("GOPOTENCY_PPROF", "") == "1", "serve net/http/pprof under /debug/pprof/ on the admin address (env GOPOTENCY_PPROF=1); off by default")
	over.registerAdminFlags(fs, env)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if over.ShowVersion {
		return &over, nil
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	f := file{Config: Defaults()}
	var typeErrs []string
	if cfgPath != "" {
		raw, err := os.ReadFile(cfgPath)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
			// Unknown fields and bad values (TypeError) leave the rest
			// decoded: report them with every other problem.
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return nil, fmt.Errorf("config %s: %w", cfgPath, err)
			}
			typeErrs = te.Errors
		}
	}
	c := &f.Config
	c.emptyMeansDefault()
	// An explicit --pprof or GOPOTENCY_PPROF (either way) wins over the file.
	pprofGiven := getenv("GOPOTENCY_PPROF") != ""
	fs.Visit(func(fl *flag.Flag) { pprofGiven = pprofGiven || fl.Name == "pprof" })
	c.override(&over, pprofGiven)
	tracingErrs := c.Tracing.applyEnv(getenv)
	c.StoreDefaulted = c.Store == ""
	if c.StoreDefaulted {
		c.Store = DefaultStore
	}
	c.policies(&f, &typeErrs)
	var fieldErr error
	if len(typeErrs) > 0 {
		fieldErr = fmt.Errorf("config %s: %w", cfgPath, &yaml.TypeError{Errors: clearDurationErrors(typeErrs)})
	}
	return c.check(&f, append([]error{fieldErr}, tracingErrs...))
}

// emptyMeansDefault: an empty string written in the file has always meant
// the default, as it did when the file was read into pointer fields.
func (c *Config) emptyMeansDefault() {
	d := Defaults()
	for dst, def := range map[*string]string{
		&c.GRPCAddr: d.GRPCAddr, &c.AdminAddr: d.AdminAddr, &c.LogLevel: d.LogLevel, &c.LogFormat: d.LogFormat, &c.PolicyHeader: d.PolicyHeader,
	} {
		*dst = cmp.Or(*dst, def)
	}
}

// override sets what flags and the environment (o) set over the file's
// values: the only settings that need to know whether they were given.
func (c *Config) override(o *Config, pprofGiven bool) {
	for dst, v := range map[*string]string{
		&c.GRPCAddr: o.GRPCAddr, &c.AdminAddr: o.AdminAddr, &c.Store: o.Store, &c.LogLevel: o.LogLevel,
		&c.GRPCTLS.CertFile: o.GRPCTLS.CertFile, &c.GRPCTLS.KeyFile: o.GRPCTLS.KeyFile, &c.GRPCTLS.ClientCAFile: o.GRPCTLS.ClientCAFile,
		&c.Admin.TokenFile: o.Admin.TokenFile,
	} {
		if v != "" {
			*dst = v
		}
	}
	c.Admin.Token = o.Admin.Token // environment only, never in the file
	if pprofGiven {
		c.Pprof = o.Pprof
	}
}

// yamlDurationErr is yaml's error for a value that is not a Go duration.
var yamlDurationErr = regexp.MustCompile("cannot unmarshal !!\\w+ `(.*)` into time.Duration")

// clearDurationErrors says what a duration should look like where yaml
// says only that the value did not decode.
func clearDurationErrors(msgs []string) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = yamlDurationErr.ReplaceAllStringFunc(m, func(s string) string {
			return strconv.Quote(yamlDurationErr.FindStringSubmatch(s)[1]) + " is not a duration like 30s or 24h"
		})
	}
	return out
}

// policies decodes default_policy onto idempotency.DefaultPolicy and each
// named policy onto a copy of the result. Decoding problems join typeErrs;
// check validates the values.
func (c *Config) policies(f *file, typeErrs *[]string) {
	c.Default = idempotency.DefaultPolicy()
	decodePolicy(&f.DefaultPolicy, &c.Default, typeErrs)
	c.Policies = make(map[string]*idempotency.Policy, len(f.Policies))
	for _, name := range slices.Sorted(maps.Keys(f.Policies)) {
		n := f.Policies[name]
		p := c.Default // named policies inherit the default policy
		decodePolicy(&n, &p, typeErrs)
		c.Policies[name] = &p
	}
}

// check validates the configuration; fileErrs, the problems found
// reading the file and the environment, are reported first.
func (c *Config) check(f *file, fileErrs []error) (*Config, error) {
	errs := append(fileErrs, c.checkDeploy()...)
	errs = append(errs, c.checkAdmin()...)
	errs = append(errs, c.socket(&f.GRPCSocket)...)
	for _, a := range []struct{ name, addr string }{{"grpc_addr", c.GRPCAddr}, {"admin_addr", c.AdminAddr}} {
		if a.name == "grpc_addr" && strings.HasPrefix(a.addr, "unix:") {
			errs = append(errs, checkUnix("grpc_addr", a.addr))
		} else if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port (or, for grpc_addr, unix:///path)", a.name, a.addr))
		}
	}
	if !strings.Contains(c.Store, "://") {
		errs = append(errs, fmt.Errorf("store: %q is not a URL (memory://, redis://..., postgres://..., sqlite:///path)", c.Store))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log level: %q is not debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		errs = append(errs, fmt.Errorf("log format: %q is not json or text", c.LogFormat))
	}
	// Named policies inherit the default's problems; report those once.
	inherited := map[string]bool{}
	for _, err := range split(c.Default.Validate()) {
		inherited[err.Error()] = true
		errs = append(errs, fmt.Errorf("default_policy: %w", err))
	}
	if c.StoreTimeout <= 0 {
		errs = append(errs, errors.New("store_timeout: must be positive"))
	}
	if c.ReplayCacheTTL < 0 || c.ReplayCacheBytes <= 0 {
		errs = append(errs, errors.New("replay_cache: ttl must not be negative (0 turns the cache off) and max_bytes must be positive"))
	}
	for _, prefix := range slices.Sorted(maps.Keys(c.RoutePolicies)) {
		name := c.RoutePolicies[prefix]
		if _, ok := f.Policies[name]; !ok {
			errs = append(errs, fmt.Errorf("ext_proc.route_policies: route %q names policy %q, which policies does not define", prefix, name))
		}
		if prefix == "" {
			errs = append(errs, errors.New("ext_proc.route_policies: an empty route name prefix would match every route; set default_policy instead"))
		}
	}
	errs = append(errs, c.checkWait("default_policy", &c.Default))
	for _, name := range slices.Sorted(maps.Keys(c.Policies)) {
		p := c.Policies[name]
		for _, err := range split(p.Validate()) {
			if !inherited[err.Error()] {
				errs = append(errs, fmt.Errorf("policies.%s: %w", name, err))
			}
		}
		if p.WaitInFlight != c.Default.WaitInFlight {
			errs = append(errs, c.checkWait("policies."+name, p))
		}
	}
	errs = append(errs, c.checkBuffered()...)
	errs = append(errs, c.envoy(f.Envoy)...)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return c, nil
}

// checkWait: a duplicate that waits for an in-flight request must be able
// to extend Envoy's message timeout past the wait, or Envoy answers 504.
func (c *Config) checkWait(name string, p *idempotency.Policy) error {
	if p.WaitInFlight <= 0 || c.MaxMessageTimeout > p.WaitInFlight {
		return nil
	}
	return fmt.Errorf("%s: wait_in_flight %s needs ext_proc.max_message_timeout above it (and the same max_message_timeout on Envoy's ext_proc filter); it is %s",
		name, p.WaitInFlight, c.MaxMessageTimeout)
}

// split unpacks an errors.Join result so each problem gets its own prefix.
func split(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err != nil {
		return []error{err}
	}
	return nil
}

// checkBuffered: the server's body budget must hold one request's bodies
// under every policy, or such a request could never be admitted.
func (c *Config) checkBuffered() []error {
	var errs []error
	check := func(name string, p *idempotency.Policy) {
		if need := p.MaxRequestBody + p.MaxResponseBody; c.MaxBufferedBytes < need {
			errs = append(errs, fmt.Errorf("ext_proc.max_buffered_bytes: %d is below one request's bodies under %s (max_request_body + max_response_body = %d)", c.MaxBufferedBytes, name, need))
		}
	}
	check("default_policy", &c.Default)
	for _, name := range slices.Sorted(maps.Keys(c.Policies)) {
		check("policies."+name, c.Policies[name])
	}
	return errs
}
