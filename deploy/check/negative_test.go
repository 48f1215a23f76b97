package check

import (
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The checks above pass on the shipped files; these prove each layer
// fails on the mistakes it exists for.

func decodeErrors(t *testing.T, doc string) string {
	t.Helper()
	_, errs := Decode(t.Context(), []byte(doc), schemas(t))
	var s []string
	for _, e := range errs {
		s = append(s, e.Error())
	}
	return strings.Join(s, "\n")
}

func TestDecodeRejects(t *testing.T) {
	const policy = `apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyExtensionPolicy
metadata: {name: p, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: orders}]
  extProc:
  - backendRefs: [{name: gopotency, namespace: gopotency, port: 9002}]
`
	for _, c := range []struct{ name, doc, want string }{
		{"unknown field in a built-in kind", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replica: 2}\n", `unknown field "spec.replica"`},
		{"duplicate field", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: ClusterIP, type: NodePort}\n", `"type" already set`},
		{"wrong type", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: ninety}]}\n", "ports"},
		{"unknown kind", "apiVersion: example.com/v1\nkind: Thing\nmetadata: {name: x}\n", "no Go type and no CRD schema"},
		{"unknown field in a custom resource", policy + "    statusOnErorr: 503\n", "statusOnErorr: unknown field"},
		{"enum of a custom resource", policy + "    statusOnError: 299\n", "statusOnError: Unsupported value: 299"},
		{"CEL rule of a custom resource", strings.Replace(policy, "name: gopotency, namespace", "kind: Pod, name: gopotency, namespace", 1), "BackendRefs only supports Service, ServiceImport, and Backend kind"},
		{"namespaced custom resource without namespace", strings.Replace(policy, ", namespace: shop}", "}", 1), "a namespaced kind needs a namespace"},
		{"Istio enum", "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: f, namespace: shop}\nspec:\n  configPatches: [{applyTo: HTTP_FILTERS}]\n", "applyTo"},
		{"Istio unknown field", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: shop}\nspec: {host: x, trafficPolicy: {connectionPool: {http: {http2MaxRequest: 1}}}}\n", "http2MaxRequest: unknown field"},
		{"Gateway API CEL rule", "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\nspec:\n  rules: [{backendRefs: [{name: orders}]}]\n", "Must have port for Service reference"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := decodeErrors(t, c.doc); !strings.Contains(got, c.want) {
				t.Fatalf("want an error containing %q, got:\n%s", c.want, got)
			}
		})
	}
}

func TestCheckGoPotencyRejects(t *testing.T) {
	out, err := Render(filepath.Join(repo, "deploy", "base"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		break_ func(Objects)
		want   string
	}{
		{"Service targetPort that is no container port", func(os Objects) {
			s, _ := os.Find("Service", "gopotency", "gopotency")
			s.Typed.(*corev1.Service).Spec.Ports[0].TargetPort = intstr.FromString("grpc")
		}, `port "grpc" is no container port`},
		{"Service selector that misses the pods", func(os Objects) {
			s, _ := os.Find("Service", "gopotency", "gopotency")
			s.Typed.(*corev1.Service).Spec.Selector = map[string]string{"app": "gopotency"}
		}, "Service gopotency/gopotency must select the pods"},
		{"probe on a missing port", func(os Objects) {
			deployment(os).Spec.Template.Spec.Containers[0].LivenessProbe.HTTPGet.Port = intstr.FromString("admin")
		}, `livenessProbe: port "admin"`},
		{"gRPC probe on a missing port", func(os Objects) {
			deployment(os).Spec.Template.Spec.Containers[0].StartupProbe.GRPC.Port = 9000
		}, "startupProbe: port 9000"},
		{"grace shorter than drain and shutdown", func(os Objects) {
			g := int64(30)
			deployment(os).Spec.Template.Spec.TerminationGracePeriodSeconds = &g
		}, "terminationGracePeriodSeconds must exceed drain_delay + shutdown_grace (35s)"},
		{"memory store", func(os Objects) {
			s, _ := os.Find("Secret", "gopotency", secretName(os))
			s.Typed.(*corev1.Secret).Data["url"] = []byte("memory://")
		}, "every replica would keep its own keys"},
		{"one replica", func(os Objects) {
			one := int32(1)
			deployment(os).Spec.Replicas = &one
		}, "at least 2 replicas"},
		{"root filesystem writable", func(os Objects) {
			f := false
			deployment(os).Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = &f
		}, "readOnlyRootFilesystem true"},
		{"config the server refuses", func(os Objects) {
			for _, o := range os.OfKind("ConfigMap") {
				cm := o.Typed.(*corev1.ConfigMap)
				cm.Data["gopotency.yaml"] += "default_policy: {lease: 1ms}\n"
			}
		}, "gopotency refuses its configuration"},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs, errs := Decode(t.Context(), out, schemas(t))
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			c.break_(objs)
			_, errs = CheckGoPotency(objs, "gopotency")
			var all []string
			for _, e := range errs {
				all = append(all, e.Error())
			}
			if got := strings.Join(all, "\n"); !strings.Contains(got, c.want) {
				t.Fatalf("want a problem containing %q, got:\n%s", c.want, got)
			}
		})
	}
}

func deployment(os Objects) *appsv1.Deployment {
	d, _ := os.Find("Deployment", "gopotency", "gopotency")
	return d.Typed.(*appsv1.Deployment)
}

func secretName(os Objects) string {
	return deployment(os).Spec.Template.Spec.Containers[0].Env[0].ValueFrom.SecretKeyRef.Name
}
