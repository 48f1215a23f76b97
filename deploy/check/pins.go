//go:build pins

package check

// These modules carry the CRD files testdata/crds.pins names. Nothing
// builds this file (tag "pins"); it keeps the modules in go.mod, and so
// their exact versions in go.sum, for `go mod tidy`.
import (
	_ "github.com/envoyproxy/gateway"
	_ "istio.io/api/networking/v1alpha3"
	_ "sigs.k8s.io/gateway-api/apis/v1"
)
