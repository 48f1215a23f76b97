package check

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	apiextensions "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

// Pin is one line of testdata/crds.pins: a CRD file inside a Go module at
// an exact version, with the file's SHA-256.
type Pin struct {
	Module, Version, Path, SHA256 string
}

// ReadPins parses a pin file: "module@version path sha256" per line, #
// comments.
func ReadPins(path string) ([]Pin, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pins []Pin
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		mod, ver, ok := strings.Cut(fields[0], "@")
		if len(fields) != 3 || !ok {
			return nil, fmt.Errorf("%s:%d: want \"module@version path sha256\"", path, n)
		}
		pins = append(pins, Pin{mod, ver, fields[1], fields[2]})
	}
	return pins, sc.Err()
}

// moduleDir returns where the go command keeps module mod, downloading it
// if needed, and the version this module's go.mod selects.
func moduleDir(ctx context.Context, mod string) (dir, version string, err error) {
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", mod).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return "", "", fmt.Errorf("go mod download %s: %w (the CRDs come from the Go module proxy)", mod, err)
	}
	var m struct{ Dir, Version, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", "", err
	}
	if m.Error != "" {
		return "", "", fmt.Errorf("go mod download %s: %s", mod, m.Error)
	}
	return m.Dir, m.Version, nil
}

// ReadPinned returns the pinned file's bytes after checking the module
// version go.mod selects and the file's hash.
func ReadPinned(ctx context.Context, p Pin) ([]byte, error) {
	dir, version, err := moduleDir(ctx, p.Module)
	if err != nil {
		return nil, err
	}
	if version != p.Version {
		return nil, fmt.Errorf("%s: go.mod selects %s but the pin says %s: update testdata/crds.pins with the new hashes", p.Module, version, p.Version)
	}
	b, err := os.ReadFile(dir + "/" + p.Path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != p.SHA256 {
		return nil, fmt.Errorf("%s@%s %s: sha256 %s, pinned %s", p.Module, p.Version, p.Path, got, p.SHA256)
	}
	return b, nil
}

// Schemas validates custom resources like an API server with the CRDs
// installed would.
type Schemas struct {
	byGVK map[schema.GroupVersionKind]*crdVersion
}

type crdVersion struct {
	crd        string
	namespaced bool
	validator  validation.SchemaValidator
	structural *structuralschema.Structural
	cel        *cel.Validator
}

// NewSchemas returns an empty set; Add CRD files to it.
func NewSchemas() *Schemas { return &Schemas{byGVK: map[schema.GroupVersionKind]*crdVersion{}} }

// Add loads every CustomResourceDefinition of a multi-document YAML file.
func (s *Schemas) Add(src string, b []byte) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := dec.Decode(&crd); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			continue
		}
		var in apiextensions.CustomResourceDefinition
		if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&crd, &in, nil); err != nil {
			return fmt.Errorf("%s %s: %w", src, crd.Name, err)
		}
		for _, v := range in.Spec.Versions {
			if !v.Served {
				continue
			}
			props := in.Spec.Validation
			if v.Schema != nil {
				props = v.Schema
			}
			if props == nil || props.OpenAPIV3Schema == nil {
				return fmt.Errorf("%s %s/%s: no schema", src, crd.Name, v.Name)
			}
			val, _, err := validation.NewSchemaValidator(props.OpenAPIV3Schema)
			if err != nil {
				return fmt.Errorf("%s %s/%s: %w", src, crd.Name, v.Name, err)
			}
			st, err := structuralschema.NewStructural(props.OpenAPIV3Schema)
			if err != nil {
				return fmt.Errorf("%s %s/%s: %w", src, crd.Name, v.Name, err)
			}
			gvk := schema.GroupVersionKind{Group: in.Spec.Group, Version: v.Name, Kind: in.Spec.Names.Kind}
			s.byGVK[gvk] = &crdVersion{
				crd: src + " " + crd.Name, namespaced: in.Spec.Scope == apiextensions.NamespaceScoped,
				validator: val, structural: st, cel: cel.NewValidator(st, true, celconfig.PerCallLimit),
			}
		}
	}
}

// Has reports whether a schema for gvk is loaded.
func (s *Schemas) Has(gvk schema.GroupVersionKind) bool { return s.byGVK[gvk] != nil }

// Validate checks obj (a decoded JSON object) against its kind's schema:
// fields the schema does not know, OpenAPI constraints after defaulting,
// and the CEL rules (x-kubernetes-validations). It returns every problem.
func (s *Schemas) Validate(ctx context.Context, gvk schema.GroupVersionKind, obj map[string]any) ([]string, error) {
	v := s.byGVK[gvk]
	if v == nil {
		return nil, fmt.Errorf("no CRD schema for %s (add its CRD to testdata/crds.pins)", gvk)
	}
	var problems []string
	meta, _ := obj["metadata"].(map[string]any)
	if _, ok := meta["namespace"]; v.namespaced && !ok {
		problems = append(problems, "metadata.namespace: a namespaced kind needs a namespace")
	}
	// Unknown fields: what the API server would prune (drop silently).
	pruned := deepCopy(obj)
	for _, p := range pruning.PruneWithOptions(pruned, v.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}) {
		if !strings.HasPrefix(p, "metadata.") {
			problems = append(problems, p+": unknown field (pruned by the API server)")
		}
	}
	defaulting.Default(pruned, v.structural)
	for _, e := range validation.ValidateCustomResource(nil, pruned, v.validator) {
		problems = append(problems, e.Error())
	}
	errs, _ := v.cel.Validate(ctx, field.NewPath(""), v.structural, pruned, nil, celconfig.RuntimeCELCostBudget)
	for _, e := range errs {
		problems = append(problems, e.Error())
	}
	return problems, nil
}

// YAMLToJSONObject decodes one YAML document into a JSON-typed map.
func YAMLToJSONObject(doc []byte) (map[string]any, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	// The API server's decoder: integers as int64, as CEL rules expect.
	var m map[string]any
	if err := utiljson.Unmarshal(j, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func deepCopy(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = utiljson.Unmarshal(b, &out)
	return out
}
