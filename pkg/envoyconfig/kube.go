package envoyconfig

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/gopotency/gopotency/pkg/config"
)

// Target is what `gopotency envoy-config --target` generates.
type Target string

// The targets.
const (
	TargetEnvoy        Target = "envoy"
	TargetIstioSidecar Target = "istio-sidecar"
	TargetIstioGateway Target = "istio-gateway"
	TargetEnvoyGateway Target = "envoy-gateway"
	// TargetEnvoySnippet is what to add to an Envoy config of your own.
	TargetEnvoySnippet Target = "envoy-snippet"
)

var targetNames = map[Target]string{TargetEnvoy: "Envoy", TargetIstioSidecar: "Istio sidecar", TargetIstioGateway: "Istio gateway", TargetEnvoyGateway: "Envoy Gateway", TargetEnvoySnippet: "Envoy snippet"}

// Targets lists every target.
var Targets = []Target{TargetEnvoy, TargetIstioSidecar, TargetIstioGateway, TargetEnvoyGateway, TargetEnvoySnippet}

// Kube names the Kubernetes object a target other than plain Envoy
// renders and what it attaches to. None of it is GoPotency
// configuration: one configuration can serve several workloads or
// gateways, each with an object of its own.
type Kube struct {
	// Name and Namespace are the object's.
	Name, Namespace string
	// Selector is an Istio EnvoyFilter's workloadSelector: the workload
	// whose sidecar, or the gateway whose pods, run the filter.
	Selector map[string]string
	// Port, when set, limits an Istio sidecar's filter to the inbound
	// listener of that port.
	Port int
	// HTTPRoutes are the Envoy Gateway policy's targets.
	HTTPRoutes []HTTPRouteRef
	// GRPCRoutes are the targets of a second Envoy Gateway policy, for
	// gRPC calls (full-duplex streams).
	GRPCRoutes []HTTPRouteRef
	// VirtualServices are the Istio gateway's, whose http routes the
	// envoy section's routes name.
	VirtualServices []VirtualService
	// Gateway is the Envoy Gateway Gateway (of Namespace) those routes
	// attach to, whose listener buffer a ClientTrafficPolicy raises.
	Gateway string
	// GRPC: the Istio proxy carries gRPC calls to deduplicate; they get
	// a second ext_proc filter of their own, on a full-duplex stream.
	GRPC bool
}

// HTTPRouteRef is an HTTPRoute of the policy's namespace, or one named
// rule of it.
type HTTPRouteRef struct{ Name, Rule string }

// GenerateTarget renders cfg for target t; k names the object for the
// Kubernetes targets (it must be zero for plain Envoy). command is the
// line written at the top that regenerates the output.
func GenerateTarget(cfg *config.Config, t Target, k Kube, command string) ([]byte, error) {
	plan, err := NewPlan(cfg)
	if err == nil {
		var out []byte
		switch t {
		case TargetEnvoy:
			out, err = plan.Envoy(command)
		case TargetIstioSidecar, TargetIstioGateway:
			out, err = plan.Istio(t == TargetIstioGateway, k, command)
		case TargetEnvoyGateway:
			out, err = plan.EnvoyGateway(k, command)
		case TargetEnvoySnippet:
			out, err = plan.Snippet(command)
		default:
			err = fmt.Errorf("unknown target %q (want one of %v)", t, Targets)
		}
		if err == nil {
			return out, nil
		}
	}
	return nil, errors.Join(fmt.Errorf("cannot generate the %s configuration:", cmp.Or(targetNames[t], string(t))), err)
}

// checkKube reports what is missing from k or wrong in it.
func checkKube(k Kube) []error {
	var errs []error
	for _, f := range [][2]string{{"name", k.Name}, {"namespace", k.Namespace}} {
		if !dnsLabel.MatchString(f[1]) {
			errs = append(errs, fmt.Errorf("the object's %s %q: want a DNS label (lower case letters, digits, '-')", f[0], f[1]))
		}
	}
	return errs
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// kubeService is a Kubernetes Service named by its DNS name.
type kubeService struct {
	Name, Namespace string
	Host            string // the whole DNS name
	Port            int
}

// service reads ext_proc_address as a Service's DNS name:
// <service>.<namespace>.svc[.<cluster domain>]:<port>.
func (p *Plan) service() (kubeService, error) {
	e := p.ExtProc
	if e.Pipe != "" {
		return kubeService{}, errors.New("envoy.ext_proc_address: a unix socket cannot be reached through the cluster; name the gopotency Service (gopotency.gopotency.svc.cluster.local:9002)")
	}
	if _, err := netip.ParseAddr(e.Host); err == nil {
		return kubeService{}, fmt.Errorf("envoy.ext_proc_address: %s is an IP address; name the gopotency Service (<service>.<namespace>.svc.cluster.local:<port>)", e.Host)
	}
	labels := strings.Split(e.Host, ".")
	if len(labels) < 3 || labels[2] != "svc" || slices.ContainsFunc(labels, func(l string) bool { return !dnsLabel.MatchString(l) }) {
		return kubeService{}, fmt.Errorf("envoy.ext_proc_address: %q is not a Service's DNS name <service>.<namespace>.svc.cluster.local", e.Host)
	}
	return kubeService{Name: labels[0], Namespace: labels[1], Host: e.Host, Port: e.Port}, nil
}

// labelPairs are a selector's labels sorted by key.
func labelPairs(m map[string]string) [][2]string {
	var out [][2]string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, [2]string{k, m[k]})
	}
	return out
}
