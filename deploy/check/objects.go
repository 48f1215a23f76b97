package check

import (
	"bytes"
	"context"
	"fmt"
	"io"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Object is one rendered Kubernetes object: Typed is set for the built-in
// kinds (decoded strictly into k8s.io/api), Raw always.
type Object struct {
	GVK       schema.GroupVersionKind
	Name      string
	Namespace string
	Raw       map[string]any
	Typed     runtime.Object
}

func (o Object) String() string { return fmt.Sprintf("%s %s/%s", o.GVK.Kind, o.Namespace, o.Name) }

// builtin is the scheme of the kinds the manifests use that have Go types:
// the built-in ones, and the Prometheus Operator's (ServiceMonitor,
// PrometheusRule), which are also checked against the CRDs generated from
// those types (GeneratedCRDs).
var builtin = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme, monitoringv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strict decodes YAML into the typed objects, failing on unknown and
// duplicate fields like `kubectl apply --validate=strict`.
var strict = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, builtin, builtin, kjson.SerializerOptions{Yaml: true, Strict: true})

// Render runs kustomize (its Go API, as `kubectl apply -k` does) on dir.
func Render(dir string) ([]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	return res.AsYaml()
}

// Decode splits a multi-document YAML stream and decodes each object: the
// built-in kinds strictly into their Go types, custom resources against
// schemas. Every problem is returned.
func Decode(ctx context.Context, stream []byte, schemas *Schemas) ([]Object, []error) {
	var objs []Object
	var errs []error
	r := utilyaml.NewYAMLReader(bufioReader(stream))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return objs, append(errs, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 || bytes.Equal(bytes.TrimSpace(doc), []byte("---")) {
			continue
		}
		raw, err := YAMLToJSONObject(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", i, err))
			continue
		}
		if raw == nil {
			continue
		}
		o := Object{Raw: raw}
		apiVersion, _ := raw["apiVersion"].(string)
		kind, _ := raw["kind"].(string)
		o.GVK = schema.FromAPIVersionAndKind(apiVersion, kind)
		meta, _ := raw["metadata"].(map[string]any)
		o.Name, _ = meta["name"].(string)
		o.Namespace, _ = meta["namespace"].(string)
		switch {
		case builtin.Recognizes(o.GVK):
			typed, _, err := strict.Decode(doc, nil, nil)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", o, err))
				continue
			}
			o.Typed = typed
			if schemas.Has(o.GVK) {
				problems, err := schemas.Validate(ctx, o.GVK, raw)
				if err != nil {
					errs = append(errs, err)
				}
				for _, p := range problems {
					errs = append(errs, fmt.Errorf("%s: %s", o, p))
				}
			}
		case schemas.Has(o.GVK):
			problems, err := schemas.Validate(ctx, o.GVK, raw)
			if err != nil {
				errs = append(errs, err)
			}
			for _, p := range problems {
				errs = append(errs, fmt.Errorf("%s: %s", o, p))
			}
		default:
			errs = append(errs, fmt.Errorf("%s: no Go type and no CRD schema for %s", o, o.GVK))
			continue
		}
		objs = append(objs, o)
	}
	return objs, errs
}
