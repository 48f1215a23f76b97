package check

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/gopotency/gopotency/pkg/config"
)

// Objects is a rendered overlay.
type Objects []Object

// Find returns the object of that kind, namespace and name.
func (os Objects) Find(kind, namespace, name string) (Object, bool) {
	for _, o := range os {
		if o.GVK.Kind == kind && o.Namespace == namespace && o.Name == name {
			return o, true
		}
	}
	return Object{}, false
}

// OfKind returns the objects of one kind.
func (os Objects) OfKind(kind string) []Object {
	var out []Object
	for _, o := range os {
		if o.GVK.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// Deployment is a Deployment with what the checks derive from it.
type Deployment struct {
	*appsv1.Deployment
	Config *config.Config // gopotency's configuration as the pod gets it
}

// CheckGoPotency checks the gopotency Deployment of a rendered overlay
// and everything that points at it. It returns every problem found.
func CheckGoPotency(objs Objects, namespace string) (*Deployment, []error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	o, ok := objs.Find("Deployment", namespace, "gopotency")
	if !ok {
		return nil, []error{fmt.Errorf("no Deployment %s/gopotency", namespace)}
	}
	d := &Deployment{Deployment: o.Typed.(*appsv1.Deployment)}
	spec := &d.Spec.Template.Spec
	podLabels := labels.Set(d.Spec.Template.Labels)
	selects := func(what string, sel *metav1.LabelSelector) {
		s, err := metav1.LabelSelectorAsSelector(sel)
		switch {
		case err != nil:
			fail("%s: selector: %v", what, err)
		case s.Empty():
			fail("%s: empty selector selects every pod", what)
		case !s.Matches(podLabels):
			fail("%s: selector %s does not match the pod labels %v", what, s, podLabels)
		}
	}

	// Labels and names are what the API server accepts.
	for k, v := range podLabels {
		for _, msg := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
			fail("pod label %s=%s: %s", k, v, msg)
		}
	}
	selects("Deployment.spec.selector", d.Spec.Selector)
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		fail("Deployment: want at least 2 replicas on a shared store")
	}
	if len(spec.Containers) != 1 {
		return d, append(errs, fmt.Errorf("Deployment: want one container, have %d", len(spec.Containers)))
	}
	c := &spec.Containers[0]
	byName, byNumber := map[string]int32{}, map[int32]bool{}
	for _, p := range c.Ports {
		for _, msg := range validation.IsValidPortName(p.Name) {
			fail("container port %q: %s", p.Name, msg)
		}
		byName[p.Name], byNumber[p.ContainerPort] = p.ContainerPort, true
	}
	port := func(what string, p intstr.IntOrString) {
		if p.Type == intstr.String && byName[p.StrVal] == 0 {
			fail("%s: port %q is no container port", what, p.StrVal)
		}
		if p.Type == intstr.Int && !byNumber[p.IntVal] {
			fail("%s: port %d is no container port", what, p.IntVal)
		}
	}
	probe := func(what string, p *corev1.Probe) {
		if p == nil {
			fail("%s: missing", what)
			return
		}
		switch {
		case p.HTTPGet != nil:
			port(what, p.HTTPGet.Port)
		case p.TCPSocket != nil:
			port(what, p.TCPSocket.Port)
		case p.GRPC != nil:
			port(what, intstr.FromInt32(p.GRPC.Port))
		default:
			fail("%s: no handler", what)
		}
	}
	probe("startupProbe", c.StartupProbe)
	probe("livenessProbe", c.LivenessProbe)
	probe("readinessProbe", c.ReadinessProbe)
	if g := c.ReadinessProbe.HTTPGet; g == nil || g.Path != "/readyz" || g.Port.StrVal != "http-admin" {
		fail("readinessProbe: want GET /readyz on http-admin (store reachable, not draining)")
	}

	// Hardening.
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		fail("pod securityContext: runAsNonRoot must be true")
	}
	if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil ||
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		fail("container securityContext: want allowPrivilegeEscalation false, readOnlyRootFilesystem true, capabilities.drop [ALL]")
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			fail("resources.requests.%s missing", r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			fail("resources.limits.%s missing", r)
		}
	}
	if len(spec.TopologySpreadConstraints) == 0 {
		fail("no topologySpreadConstraints")
	}
	for i, t := range spec.TopologySpreadConstraints {
		selects(fmt.Sprintf("topologySpreadConstraints[%d]", i), t.LabelSelector)
	}

	// The store URL from a Secret that exists and is not a memory store.
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			so, ok := objs.Find("Secret", namespace, ref.Name)
			if !ok {
				fail("env %s: no Secret %s", e.Name, ref.Name)
				continue
			}
			s := so.Typed.(*corev1.Secret)
			v, ok := s.Data[ref.Key]
			if !ok {
				v, ok = []byte(s.StringData[ref.Key]), s.StringData[ref.Key] != ""
			}
			if !ok {
				fail("env %s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = string(v)
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		}
	}
	store := env["GOPOTENCY_STORE"]
	if store == "" {
		fail("GOPOTENCY_STORE is not set from a Secret: the server would run on memory://")
	} else if strings.HasPrefix(store, "memory:") || strings.HasPrefix(store, "mem:") {
		fail("GOPOTENCY_STORE is %s: every replica would keep its own keys", store)
	}

	// gopotency's configuration, loaded by gopotency's own loader from the
	// ConfigMap the pod mounts.
	d.Config, errs = loadPodConfig(objs, namespace, spec, c, env, errs)
	if d.Config != nil {
		need := d.Config.DrainDelay + d.Config.ShutdownGrace
		if spec.TerminationGracePeriodSeconds == nil || time.Duration(*spec.TerminationGracePeriodSeconds)*time.Second <= need {
			fail("terminationGracePeriodSeconds must exceed drain_delay + shutdown_grace (%s)", need)
		}
		for name, addr := range map[string]string{"grpc-extproc": d.Config.GRPCAddr, "http-admin": d.Config.AdminAddr} {
			if _, p, _ := strings.Cut(addr, ":"); p != strconv.Itoa(int(byName[name])) {
				fail("container port %s is %d but gopotency listens on %s", name, byName[name], addr)
			}
		}
	}

	// Everything else that selects the pods or names their ports.
	for _, so := range objs.OfKind("Service") {
		s := so.Typed.(*corev1.Service)
		if so.Namespace != namespace || !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) || len(s.Spec.Selector) == 0 {
			continue
		}
		for _, p := range s.Spec.Ports {
			port("Service "+s.Name+" port "+p.Name, p.TargetPort)
			for _, msg := range validation.IsValidPortName(p.Name) {
				fail("Service %s port %q: %s", s.Name, p.Name, msg)
			}
			if p.TargetPort.StrVal == "grpc-extproc" && (p.AppProtocol == nil || *p.AppProtocol != "grpc" || !strings.HasPrefix(p.Name, "grpc")) {
				fail("Service %s port %s: the ext_proc port needs appProtocol grpc and a grpc- name", s.Name, p.Name)
			}
		}
	}
	if so, ok := objs.Find("Service", namespace, "gopotency"); !ok || !labels.SelectorFromSet(so.Typed.(*corev1.Service).Spec.Selector).Matches(podLabels) {
		fail("Service %s/gopotency must select the pods", namespace)
	}
	pdbs := 0
	for _, po := range objs.OfKind("PodDisruptionBudget") {
		pdbs++
		selects("PodDisruptionBudget "+po.Name, po.Typed.(*policyv1.PodDisruptionBudget).Spec.Selector)
	}
	if pdbs == 0 {
		fail("no PodDisruptionBudget")
	}
	nps := 0
	for _, no := range objs.OfKind("NetworkPolicy") {
		np := no.Typed.(*networkingv1.NetworkPolicy)
		nps++
		selects("NetworkPolicy "+np.Name, &np.Spec.PodSelector)
		allowed := map[string]bool{}
		for i, r := range np.Spec.Ingress {
			if len(r.From) == 0 {
				fail("NetworkPolicy %s ingress[%d]: no from: admits everyone", np.Name, i)
			}
			for _, p := range r.Ports {
				port(fmt.Sprintf("NetworkPolicy %s ingress[%d]", np.Name, i), *p.Port)
				allowed[p.Port.String()] = true
			}
		}
		if !allowed["grpc-extproc"] || !allowed["http-admin"] {
			fail("NetworkPolicy %s: want rules for grpc-extproc and http-admin", np.Name)
		}
	}
	if nps == 0 {
		fail("no NetworkPolicy")
	}
	return d, errs
}

// loadPodConfig runs gopotency's configuration loader on the ConfigMap the
// container's --config names, with the container's environment.
func loadPodConfig(objs Objects, namespace string, spec *corev1.PodSpec, c *corev1.Container, env map[string]string, errs []error) (*config.Config, []error) {
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	cfgPath := ""
	for i, a := range c.Args {
		if a == "--config" && i+1 < len(c.Args) {
			cfgPath = c.Args[i+1]
		}
	}
	if cfgPath == "" {
		fail("container args: no --config")
		return nil, errs
	}
	var cm *corev1.ConfigMap
	for _, m := range c.VolumeMounts {
		if !strings.HasPrefix(cfgPath, m.MountPath+"/") {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				if o, ok := objs.Find("ConfigMap", namespace, v.ConfigMap.Name); ok {
					cm = o.Typed.(*corev1.ConfigMap)
				} else {
					fail("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
				}
			}
		}
	}
	if cm == nil {
		fail("--config %s is not in a mounted ConfigMap", cfgPath)
		return nil, errs
	}
	data, ok := cm.Data[filepath.Base(cfgPath)]
	if !ok {
		fail("ConfigMap %s has no %s", cm.Name, filepath.Base(cfgPath))
		return nil, errs
	}
	dir, err := os.MkdirTemp("", "gopotency-config")
	if err != nil {
		return nil, append(errs, err)
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "gopotency.yaml")
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		return nil, append(errs, err)
	}
	args := append([]string{}, c.Args...)
	for i := range args {
		if args[i] == cfgPath {
			args[i] = p
		}
	}
	// TLS files are paths inside the pod; they are checked by name only.
	cfg, err := config.Load(args, func(k string) string { return env[k] }, nopWriter{})
	if err != nil {
		fail("ConfigMap %s: gopotency refuses its configuration: %v", cm.Name, err)
		return nil, errs
	}
	return cfg, errs
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
