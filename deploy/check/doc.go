// Package check validates the shipped deployment files offline, as
// `make test` runs them: the kustomize overlays rendered with kustomize's
// own Go API; every Kubernetes object decoded strictly into the real
// k8s.io/api types; every custom resource checked against the real CRD
// schemas (structure, unknown fields, CEL rules) of the Istio, Gateway API
// and Envoy Gateway releases pinned in go.mod and testdata/crds.pins;
// cross-references between objects (selectors, ports, probes, Secrets,
// ConfigMaps, ReferenceGrants); gopotency's own configuration loader on the
// ConfigMaps; the Istio EnvoyFilters' filter configs given to a real Envoy
// (--mode validate); and docker-compose.yml loaded by compose-go.
//
// It is a module of its own so that Kubernetes, kustomize and compose-go
// never enter the gopotency module's go.mod.
package check
