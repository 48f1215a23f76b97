package check

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// repo is the gopotency checkout this module sits in.
var repo = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}()

var loadSchemas = sync.OnceValues(func() (*Schemas, error) {
	pins, err := ReadPins("testdata/crds.pins")
	if err != nil {
		return nil, err
	}
	s := NewSchemas()
	for _, p := range pins {
		b, err := ReadPinned(context.Background(), p)
		if err != nil {
			return nil, err
		}
		if err := s.Add(p.Module+"@"+p.Version+"/"+p.Path, b); err != nil {
			return nil, err
		}
	}
	b, err := GeneratedCRDs(context.Background(), monitoringTypes)
	if err != nil {
		return nil, err
	}
	if err := s.Add(monitoringTypes+" (generated)", b); err != nil {
		return nil, err
	}
	return s, nil
})

func schemas(t *testing.T) *Schemas {
	t.Helper()
	s, err := loadSchemas()
	if err != nil {
		t.Fatalf("CRD schemas: %v", err)
	}
	return s
}

// overlays are the directories `kubectl apply -k` is documented for.
var overlays = []string{"envoy", "envoy-mtls", "istio-sidecar", "istio-sidecar-jwt", "istio-gateway", "envoy-gateway"}

// rendered renders an overlay and decodes every object, failing the test
// on any problem.
func rendered(t *testing.T, overlay string) Objects {
	t.Helper()
	out, err := Render(filepath.Join(repo, "deploy", "overlays", overlay))
	if err != nil {
		t.Fatal(err)
	}
	objs, errs := Decode(context.Background(), out, schemas(t))
	for _, err := range errs {
		t.Error(err)
	}
	if len(objs) == 0 {
		t.Fatal("no objects rendered")
	}
	return objs
}
