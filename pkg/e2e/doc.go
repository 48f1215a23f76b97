// Package e2e holds the end-to-end tests: a real Envoy 1.40 running the
// project's envoy/envoy.yaml, the gopotency server wired as cmd/gopotency
// wires it (pkg/app), a real store, and a counting upstream. There is no
// non-test code here.
package e2e
