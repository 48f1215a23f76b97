package check

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"golang.org/x/tools/go/packages"
	"sigs.k8s.io/controller-tools/pkg/crd"
	"sigs.k8s.io/controller-tools/pkg/genall"
	"sigs.k8s.io/controller-tools/pkg/loader"
)

// monitoringTypes is the Go package the Prometheus Operator generates its
// CRDs (ServiceMonitor, PrometheusRule, ...) from, at the version go.mod
// pins. No module the go command can fetch carries the CRD files
// themselves, so GeneratedCRDs runs the generator the project runs
// (controller-tools' crd generator, also pinned in go.mod) on that package.
const monitoringTypes = "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"

// GeneratedCRDs returns the CRDs of the Go API packages pkgs, as
// controller-gen crd:crdVersions=v1 writes them.
func GeneratedCRDs(ctx context.Context, pkgs ...string) ([]byte, error) {
	var gen genall.Generator = crd.Generator{CRDVersions: []string{"v1"}}
	rt, err := genall.Generators{&gen}.ForRootsWithConfig(&packages.Config{Context: ctx}, pkgs...)
	if err != nil {
		return nil, fmt.Errorf("loading %v: %w", pkgs, err)
	}
	out := &memOutput{}
	var errs bytes.Buffer
	rt.OutputRules = genall.OutputRules{Default: out}
	rt.ErrorWriter = &errs
	if rt.Run() {
		return nil, fmt.Errorf("generating the CRDs of %v: %s", pkgs, errs.String())
	}
	if out.buf.Len() == 0 {
		return nil, fmt.Errorf("generating the CRDs of %v: nothing generated", pkgs)
	}
	return out.buf.Bytes(), nil
}

// memOutput collects every generated file into one YAML stream.
type memOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (m *memOutput) Open(_ *loader.Package, _ string) (io.WriteCloser, error) {
	return &memFile{m: m}, nil
}

type memFile struct {
	m   *memOutput
	buf bytes.Buffer
}

func (f *memFile) Write(p []byte) (int, error) { return f.buf.Write(p) }

func (f *memFile) Close() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	f.m.buf.WriteString("\n---\n")
	_, err := f.m.buf.Write(f.buf.Bytes())
	return err
}
