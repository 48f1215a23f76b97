package config

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Defaults of the envoy section.
const (
	DefaultEnvoyListen = "0.0.0.0:10000"
	DefaultEnvoyAdmin  = "127.0.0.1:9901"
	// DefaultMessageTimeout is Envoy's ext_proc message_timeout: above
	// the store timeout, so a slow store is answered with GoPotency's 503
	// problem rather than Envoy's bare 504.
	DefaultMessageTimeout = time.Second
)

// Envoy is the Envoy side of a deployment: the listener, the upstream
// clusters and the routes, each naming the policy that guards it. The
// server does not use it; `gopotency envoy-config` generates Envoy's
// configuration from it and the policies, so the two cannot drift.
type Envoy struct {
	// Listen and Admin are Envoy's HTTP listener and admin addresses.
	Listen string `yaml:"listen"`
	Admin  string `yaml:"admin"`
	// ExtProcAddress is where Envoy reaches GoPotency: host:port, or
	// unix:///path for a socket beside Envoy.
	ExtProcAddress string `yaml:"ext_proc_address"`
	// MessageTimeout is the ext_proc filter's message_timeout.
	MessageTimeout time.Duration `yaml:"message_timeout"`
	// BodyFirst sends keyed requests that declare a small enough
	// Content-Length body-first (request headers skipped, CEL attributes
	// on the buffered body message): one message for a replay.
	BodyFirst bool           `yaml:"body_first"`
	Clusters  []EnvoyCluster `yaml:"clusters"`
	// Routes in match order: the first whose prefix starts the path wins.
	// Plain Envoy needs at least one, and clusters; the Istio and Envoy
	// Gateway targets route with their own objects and read only names
	// and policies here.
	Routes []EnvoyRoute `yaml:"routes"`
}

// EnvoyCluster is an upstream Envoy routes to.
type EnvoyCluster struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"` // host:port
	// GRPC: the upstream serves gRPC (HTTP/2 without TLS). Envoy speaks
	// HTTP/2 to it, and keyed unary gRPC calls on its routes are
	// deduplicated (docs/extproc.md, gRPC calls).
	GRPC bool `yaml:"grpc"`
}

// EnvoyRoute is one path prefix, or one route named by the Envoy the
// filter runs in (an Istio gateway's VirtualService route).
type EnvoyRoute struct {
	// Name, when set, names the route: the generated Envoy routes' names
	// start with it, and under an Istio gateway it is the VirtualService
	// http route whose Envoy route gets the route's policy. RouteName
	// derives one from Prefix when it is empty.
	Name   string `yaml:"name"`
	Prefix string `yaml:"prefix"`
	// Policy names the policy of this route; empty is the default policy.
	Policy string `yaml:"policy"`
	// Cluster is the upstream (the only cluster when empty).
	Cluster string `yaml:"cluster"`
	// Timeout is Envoy's route timeout (0: Envoy's default, 15s).
	Timeout time.Duration `yaml:"timeout"`
	// Disabled routes never reach GoPotency.
	Disabled bool `yaml:"disabled"`
}

// UnixSocketPath returns the path of a unix:///path address, or "" when
// addr is not one.
func UnixSocketPath(addr string) string {
	p, ok := strings.CutPrefix(addr, "unix://")
	if !ok {
		return ""
	}
	return p
}

// checkUnix reports what is wrong with a unix:// address.
// CheckExtProcAddress checks where Envoy is to reach GoPotency (name is
// the setting's name, for the error): host:port or unix:///absolute/path.
func CheckExtProcAddress(name, addr string) error {
	if strings.HasPrefix(addr, "unix:") {
		return checkUnix(name, addr)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s: %q is not host:port or unix:///path", name, addr)
	}
	return nil
}

func checkUnix(name, addr string) error {
	p := UnixSocketPath(addr)
	if p == "" || !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%s: %q: a socket is unix:///absolute/path", name, addr)
	}
	// sun_path holds 108 bytes on Linux, 104 on BSDs, with the NUL.
	if len(p) > 103 {
		return fmt.Errorf("%s: socket path %q is longer than 103 bytes", name, p)
	}
	return nil
}

// envoy checks the envoy section e (nil: none) and fills in its defaults
// (a zero listen, admin or message_timeout takes the default). It runs
// after the policies are built, since routes name them.
func (c *Config) envoy(e *Envoy) []error {
	if e == nil {
		return nil
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("envoy."+format, args...)) }
	e.Listen = cmp.Or(e.Listen, DefaultEnvoyListen)
	e.Admin = cmp.Or(e.Admin, DefaultEnvoyAdmin)
	e.MessageTimeout = cmp.Or(e.MessageTimeout, DefaultMessageTimeout)
	for _, a := range []struct{ name, addr string }{{"listen", e.Listen}, {"admin", e.Admin}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			bad("%s: %q is not host:port", a.name, a.addr)
		}
	}
	// An empty ext_proc_address is left to the generator, which may be
	// given one on its command line.
	switch {
	case e.ExtProcAddress == "" && UnixSocketPath(c.GRPCAddr) != "":
		e.ExtProcAddress = c.GRPCAddr // beside Envoy, on the same socket
	case e.ExtProcAddress == "":
	default:
		if err := CheckExtProcAddress("envoy.ext_proc_address", e.ExtProcAddress); err != nil {
			errs = append(errs, err)
		}
	}
	if e.MessageTimeout <= c.StoreTimeout {
		bad("message_timeout: %s must be above store_timeout (%s), or Envoy answers a slow store with a bare 504 before GoPotency's 503 problem",
			e.MessageTimeout, c.StoreTimeout)
	}
	if c.MaxMessageTimeout > 0 && c.MaxMessageTimeout < e.MessageTimeout {
		bad("message_timeout: %s is above ext_proc.max_message_timeout (%s)", e.MessageTimeout, c.MaxMessageTimeout)
	}
	clusters := map[string]bool{}
	for i, cl := range e.Clusters {
		switch {
		case !clusterName.MatchString(cl.Name):
			bad("clusters[%d]: name %q: use letters, digits, '.', '_' and '-'", i, cl.Name)
		case cl.Name == GoPotencyCluster:
			bad("clusters[%d]: the name %q is taken by the ext_proc cluster", i, cl.Name)
		case clusters[cl.Name]:
			bad("clusters[%d]: %q defined twice", i, cl.Name)
		}
		clusters[cl.Name] = true
		if _, _, err := net.SplitHostPort(cl.Address); err != nil {
			bad("clusters.%s: address %q is not host:port", cl.Name, cl.Address)
		}
	}
	// Clusters and routes may be left out: the targets that route with
	// objects of their own (Istio, Envoy Gateway) do not use them, and
	// `gopotency envoy-config` refuses a plain Envoy without them.
	names := map[string]bool{}
	for i := range e.Routes {
		r := &e.Routes[i]
		at := fmt.Sprintf("routes[%d] (%s)", i, cmp.Or(r.Prefix, r.Name))
		switch {
		case r.Prefix == "" && r.Name == "":
			bad("%s: a route needs a prefix (plain Envoy) or a name (an Istio gateway's VirtualService route)", at)
		case r.Prefix != "" && !strings.HasPrefix(r.Prefix, "/"):
			bad("%s: prefix must start with /", at)
		case r.Prefix != "":
			for _, prev := range e.Routes[:i] {
				if prev.Prefix != "" && strings.HasPrefix(r.Prefix, prev.Prefix) {
					bad("%s: never matched, the earlier prefix %q takes every path it would", at, prev.Prefix)
					break
				}
			}
		}
		if r.Name != "" && !routeName.MatchString(r.Name) {
			bad("%s: name %q: use letters, digits, '.', '_', '-', '/' and ':'", at, r.Name)
		}
		if n := r.RouteName(); names[n] {
			bad("%s: a second route named %q (set name to tell them apart)", at, n)
		} else {
			names[n] = true
		}
		if r.Cluster == "" && len(e.Clusters) == 1 {
			r.Cluster = e.Clusters[0].Name
		}
		if (r.Cluster != "" || len(e.Clusters) > 0) && !clusters[r.Cluster] {
			bad("%s: cluster %q is not among envoy.clusters", at, r.Cluster)
		}
		if r.Timeout < 0 {
			bad("%s: timeout must not be negative", at)
		}
		switch {
		case r.Disabled && r.Policy != "":
			bad("%s: a disabled route names no policy", at)
		case r.Policy != "" && c.Policies[r.Policy] == nil:
			bad("%s: policy %q is not among policies", at, r.Policy)
		}
	}
	c.Envoy = e
	return errs
}

var (
	clusterName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	routeName   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:/-]*$`)
)

// RouteName is the route's name, or one derived from its prefix ("root"
// for "/").
func (r EnvoyRoute) RouteName() string {
	if r.Name != "" {
		return r.Name
	}
	if n := strings.Trim(r.Prefix, "/"); n != "" {
		return n
	}
	return "root"
}

// GoPotencyCluster is the name of the ext_proc cluster in generated
// Envoy configurations.
const GoPotencyCluster = "gopotency"

// errNoEnvoy is returned by RequireEnvoy.
var errNoEnvoy = errors.New("the configuration has no envoy section (listener, clusters, routes): see envoy/gopotency.yaml")

// RequireEnvoy returns c.Envoy, or an error saying it is missing.
func (c *Config) RequireEnvoy() (*Envoy, error) {
	if c.Envoy == nil {
		return nil, errNoEnvoy
	}
	return c.Envoy, nil
}
