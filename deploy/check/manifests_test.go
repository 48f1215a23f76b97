package check

import (
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestOverlays renders every overlay and checks what it ships: strict
// decoding, CRD schemas (inside rendered), and the gopotency Deployment
// with everything that refers to it.
func TestOverlays(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			objs := rendered(t, overlay)
			d, errs := CheckGoPotency(objs, "gopotency")
			for _, err := range errs {
				t.Error(err)
			}
			if d == nil {
				return
			}
			for _, o := range objs {
				if o.Namespace == "" && o.GVK.Kind != "Namespace" {
					t.Errorf("%s has no namespace", o)
				}
			}
			ns, ok := objs.Find("Namespace", "", "gopotency")
			if !ok {
				t.Fatal("no Namespace gopotency")
			}
			labels := ns.Typed.(*corev1.Namespace).Labels
			istio := strings.HasPrefix(overlay, "istio-")
			if got := labels["istio-injection"] == "enabled"; got != istio {
				t.Errorf("istio-injection=enabled is %v, want %v", got, istio)
			}
			if !istio && labels["pod-security.kubernetes.io/enforce"] != "restricted" {
				t.Errorf("outside Istio the namespace enforces the restricted Pod Security level")
			}
			tlsOn := d.Config.GRPCTLS.Enabled()
			if want := overlay == "envoy-mtls"; tlsOn != want || (tlsOn && d.Config.GRPCTLS.ClientCAFile == "") {
				t.Errorf("grpc_tls enabled %v (client CA %q), want %v with a client CA", tlsOn, d.Config.GRPCTLS.ClientCAFile, want)
			}
			if tlsOn && d.Spec.Template.Spec.Containers[0].StartupProbe.GRPC != nil {
				t.Error("the kubelet's gRPC probe cannot speak TLS")
			}
		})
	}
}

// TestBaseIsNotAppliedAlone: the base renders and passes the same checks,
// so an overlay's problems are its own.
func TestBase(t *testing.T) {
	out, err := Render(filepath.Join(repo, "deploy", "base"))
	if err != nil {
		t.Fatal(err)
	}
	objs, errs := Decode(t.Context(), out, schemas(t))
	for _, err := range errs {
		t.Error(err)
	}
	if _, errs := CheckGoPotency(objs, "gopotency"); len(errs) > 0 {
		t.Error(errs)
	}
}
