// Command istio-xds runs Istio's own config generator (pilot's
// FakeDiscoveryServer, the code istiod pushes from) over a set of
// Kubernetes and Istio objects and prints the Envoy config istiod would
// send to one proxy: listeners, route configurations and clusters, as
// JSON. GoPotency's tests feed it the shipped overlays and run the result
// in a real Envoy.
//
// It is a module of its own so that Istio's dependency tree stays out of
// GoPotency's go.mod.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"istio.io/istio/pilot/pkg/features"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config/constants"
	"istio.io/istio/pkg/jwt"
)

// istioVersion is what the proxy reports; generated config is gated on it,
// so it matches the generator's own release line.
const istioVersion = "1.31.0"

type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	var files fileList
	proxy := flag.String("proxy", "", "gateway or sidecar")
	namespace := flag.String("namespace", "", "the proxy's namespace (default istio-system for gateway, shop for sidecar)")
	labels := flag.String("labels", "", "the proxy's labels, k=v,... (default istio=ingressgateway for gateway, app=orders for sidecar)")
	ip := flag.String("ip", "10.10.0.10", "the proxy's IP; for a sidecar, the IP of the Pod it runs in")
	filterGW := flag.Bool("filter-gateway-clusters", false, "as istiod with PILOT_FILTER_GATEWAY_CLUSTER_CONFIG=true")
	out := flag.String("o", "-", "output file")
	flag.Var(&files, "f", "YAML file of Kubernetes and Istio objects (repeatable)")
	flag.Parse()
	if err := run(*proxy, *namespace, *labels, *ip, *filterGW, files, *out); err != nil {
		fmt.Fprintln(os.Stderr, "istio-xds:", err)
		os.Exit(1)
	}
}

func run(kind, namespace, labelFlag, ip string, filterGW bool, files []string, out string) error {
	p := &model.Proxy{IPAddresses: []string{ip}, Metadata: &model.NodeMetadata{IstioVersion: istioVersion}}
	switch kind {
	case "gateway":
		p.Type = model.Router
		p.ConfigNamespace, labelFlag = orDefault(namespace, "istio-system"), orDefault(labelFlag, "istio=ingressgateway")
	case "sidecar":
		p.Type = model.SidecarProxy
		p.ConfigNamespace, labelFlag = orDefault(namespace, "shop"), orDefault(labelFlag, "app=orders")
	default:
		return fmt.Errorf("-proxy must be gateway or sidecar, not %q", kind)
	}
	labels := map[string]string{}
	for _, kv := range strings.Split(labelFlag, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("-labels: %q is not k=v", kv)
		}
		labels[k] = v
	}
	p.Labels = labels
	p.Metadata.Labels = labels
	p.Metadata.Namespace = p.ConfigNamespace
	p.ID = "proxy." + p.ConfigNamespace
	// Plain package variables, read at every push: setting them here is
	// what the environment variables do in istiod.
	features.FilterGatewayClusterConfig = filterGW
	// istiod would fetch a RequestAuthentication's jwksUri itself; here
	// nothing leaves the machine: Envoy's to fetch (PILOT_JWT_ENABLE_REMOTE_JWKS=envoy).
	features.JwksFetchMode = jwt.Envoy
	// And no name is resolved, should some other path try the network.
	net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("istio-xds resolves no names: it works offline")
	}}

	istioObjs, kubeObjs, err := readObjects(files)
	if err != nil {
		return err
	}
	f := &failer{}
	defer f.cleanup()
	var res output
	err = f.try(func() {
		s := xds.NewFakeDiscoveryServer(f, xds.FakeOptions{
			ConfigString:           strings.Join(istioObjs, "\n---\n"),
			KubernetesObjectString: strings.Join(kubeObjs, "\n---\n"),
			DefaultClusterName:     constants.DefaultClusterName,
		})
		p := s.SetupProxy(p)
		ls := s.Listeners(p)
		res.Listeners = marshalAll(f, ls)
		res.Routes = marshalAll(f, s.RoutesFromListeners(p, ls))
		res.Clusters = marshalAll(f, s.Clusters(p))
	})
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	b = append(b, '\n')
	if out == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}

type output struct {
	Listeners []json.RawMessage `json:"listeners"`
	Routes    []json.RawMessage `json:"routes"`
	Clusters  []json.RawMessage `json:"clusters"`
}

func marshalAll[M proto.Message](f *failer, ms []M) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(ms))
	for _, m := range ms {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// readObjects splits the files into Istio configs (by API group) and the
// Kubernetes objects the registry reads (Services, Pods, endpoints);
// everything else (Deployments, ConfigMaps, ...) plays no part in xDS.
func readObjects(files []string) (istio, kube []string, err error) {
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, nil, fmt.Errorf("read: %w", err)
		}
		for _, doc := range docSep.Split(string(b), -1) {
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", name, err)
			}
			switch {
			case head.Kind == "":
			case strings.Contains(head.APIVersion, "istio.io/"):
				istio = append(istio, doc)
			case head.Kind == "Service" || head.Kind == "Pod" || head.Kind == "Endpoints" ||
				head.Kind == "EndpointSlice" || head.Kind == "Namespace":
				kube = append(kube, doc)
			}
		}
	}
	return istio, kube, nil
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// failer is the test.Failer the fake server reports through: Fatal
// unwinds to try, which turns it into an error.
type failer struct{ cleanups []func() }

type fatal struct{ msg string }

func (f *failer) try(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			ft, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = errors.New(ft.msg)
		}
	}()
	fn()
	return nil
}

func (f *failer) cleanup() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func (f *failer) Fail()                             { panic(fatal{"failed"}) }
func (f *failer) FailNow()                          { panic(fatal{"failed"}) }
func (f *failer) Fatal(args ...any)                 { panic(fatal{fmt.Sprint(args...)}) }
func (f *failer) Fatalf(format string, args ...any) { panic(fatal{fmt.Sprintf(format, args...)}) }
func (f *failer) Log(args ...any)                   { fmt.Fprintln(os.Stderr, args...) }
func (f *failer) Logf(format string, args ...any)   { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (f *failer) Helper()                           {}
func (f *failer) Cleanup(fn func())                 { f.cleanups = append(f.cleanups, fn) }
func (f *failer) Skip(args ...any)                  { panic(fatal{"skipped: " + fmt.Sprint(args...)}) }
func (f *failer) TempDir() string {
	d, err := os.MkdirTemp("", "istio-xds")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(d) })
	return d
}
