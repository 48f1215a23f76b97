package envoyconfig

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/gopotency/gopotency/pkg/config"
)

// Command is the subcommand name: `gopotency envoy-config`. The generator
// owns its subcommand, so its flags live beside the code that reads them.
const Command = "envoy-config"

// Run runs `gopotency envoy-config`: it generates the Envoy side of the
// deployment from a GoPotency configuration file and writes it to stdout
// or to -o. args exclude the subcommand name.
func Run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gopotency "+Command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "GoPotency YAML file with policies and an envoy section (required)")
	extProc := fs.String("ext-proc-address", "", "where Envoy reaches GoPotency, host:port or unix:///path (overrides envoy.ext_proc_address); the Kubernetes targets want the gopotency Service's DNS name")
	target := fs.String("target", string(TargetEnvoy), "what to generate: envoy (a static Envoy 1.40 bootstrap), istio-sidecar or istio-gateway (an Istio EnvoyFilter), envoy-gateway (an Envoy Gateway EnvoyExtensionPolicy), envoy-snippet (what to add to an Envoy config of your own: the filter, the cluster, the per-route configs)")
	out := fs.String("o", "", "write to this file instead of stdout")
	// Where the Kubernetes object goes and what it attaches to: names of
	// the deployment, not GoPotency configuration, which one configuration
	// may serve several of.
	var k Kube
	fs.StringVar(&k.Name, "name", "gopotency", "istio-*, envoy-gateway: the object's name")
	fs.StringVar(&k.Namespace, "namespace", "", "istio-*, envoy-gateway: the object's namespace (required): the workload's, the gateway's (or Istio's root namespace), the HTTPRoutes'")
	fs.Func("selector", "istio-*: the workloadSelector, label=value[,label=value…] (required): the workload whose sidecar, or the gateway whose pods, run the filter", func(v string) error {
		var err error
		k.Selector, err = parseSelector(v)
		return err
	})
	fs.IntVar(&k.Port, "port", 0, "istio-sidecar: only the inbound listener of this port (default every inbound port)")
	fs.Func("virtual-service", "istio-gateway: a YAML file with the VirtualServices whose http routes envoy.routes names (repeat for more; required with envoy.routes): the patches take the Envoy route names Istio builds from them", func(v string) error {
		b, err := os.ReadFile(v)
		if err != nil {
			return err
		}
		vss, err := ParseVirtualServices(b)
		if err != nil {
			return fmt.Errorf("%s: %w", v, err)
		}
		if len(vss) == 0 {
			return fmt.Errorf("%s: no VirtualService (networking.istio.io) in it", v)
		}
		k.VirtualServices = append(k.VirtualServices, vss...)
		return nil
	})
	fs.Func("http-route", "envoy-gateway: an HTTPRoute of --namespace to attach to, NAME or NAME/RULE for one named rule (repeat for more; at least one)", func(v string) error {
		name, rule, _ := strings.Cut(v, "/")
		k.HTTPRoutes = append(k.HTTPRoutes, HTTPRouteRef{Name: name, Rule: rule})
		return nil
	})
	fs.BoolVar(&k.GRPC, "grpc", false, "istio-*: the proxy carries gRPC calls: a second filter, on a full-duplex stream, deduplicates keyed unary calls (the first skips gRPC)")
	fs.Func("grpc-route", "envoy-gateway: a GRPCRoute of --namespace whose keyed unary calls to deduplicate, NAME or NAME/RULE (repeat for more): a second policy, on full-duplex streams", func(v string) error {
		name, rule, _ := strings.Cut(v, "/")
		k.GRPCRoutes = append(k.GRPCRoutes, HTTPRouteRef{Name: name, Rule: rule})
		return nil
	})
	fs.StringVar(&k.Gateway, "gateway", "", "envoy-gateway: the Gateway of --namespace the HTTPRoutes attach to; a ClientTrafficPolicy raises its listener buffer above max_request_body (required when a policy reads request bodies)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: gopotency %s --config FILE [flags]\n\nGenerates the Envoy side (plain Envoy, Istio, Envoy Gateway) from GoPotency's configuration, so routes, matchers and attributes cannot drift.\n\n", Command)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // the usage was printed
		}
		return err
	}
	t := Target(*target)
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%s: unexpected arguments %q", Command, fs.Args())
	case *cfgPath == "":
		return fmt.Errorf("%s: --config is required", Command)
	case !slices.Contains(Targets, t):
		return fmt.Errorf("%s: --target %q: want one of %v", Command, *target, Targets)
	}
	if t == TargetEnvoy || t == TargetEnvoySnippet {
		var kubeFlags []string
		fs.Visit(func(f *flag.Flag) {
			if slices.Contains([]string{"name", "namespace", "selector", "port", "http-route", "grpc-route", "gateway", "virtual-service", "grpc"}, f.Name) {
				kubeFlags = append(kubeFlags, "--"+f.Name)
			}
		})
		if len(kubeFlags) > 0 {
			return fmt.Errorf("%s: %v name a Kubernetes object; --target %s writes Envoy's own config", Command, kubeFlags, t)
		}
		k = Kube{}
	}
	// The environment is not read: the output depends on the file and
	// the flags alone, so it can be checked in and compared.
	cfg, err := config.Load([]string{"--config", *cfgPath}, func(string) string { return "" }, stderr)
	if err != nil {
		return err
	}
	if *extProc != "" {
		if err := config.CheckExtProcAddress("--ext-proc-address", *extProc); err != nil {
			return err
		}
		e, err := cfg.RequireEnvoy()
		if err != nil {
			return err
		}
		e.ExtProcAddress = *extProc
	}
	b, err := GenerateTarget(cfg, t, k, "gopotency "+Command+" "+shellJoin(args))
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(*out, b, 0o644)
}

// parseSelector reads label=value[,label=value…].
func parseSelector(v string) (map[string]string, error) {
	m := map[string]string{}
	for _, pair := range strings.Split(v, ",") {
		key, val, ok := strings.Cut(pair, "=")
		if !ok || key == "" {
			return nil, fmt.Errorf("%q: want label=value", pair)
		}
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("label %s given twice", key)
		}
		m[key] = val
	}
	return m, nil
}

// shellJoin quotes args that a shell would split or expand.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$`\\*?[]#~;&|<>(){}") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
