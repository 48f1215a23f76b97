package extproc

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

func TestContractListsWhatPoliciesRead(t *testing.T) {
	def := idempotency.DefaultPolicy()
	pay := idempotency.DefaultPolicy()
	pay.KeyHeader = "X-Request-Key"
	pay.ScopeHeaders = []string{"X-Tenant", "Authorization"}
	pay.FingerprintHeaders = []string{"Content-Type"}
	pay.ScopePrincipal = true
	c := NewContract(&def, map[string]*idempotency.Policy{"pay": &pay}, true)
	require.Equal(t, []string{
		"request.method", "request.path",
		"request.headers['authorization']", "request.headers['content-type']",
		"request.headers['idempotency-key']",
		"request.headers['x-request-key']", "request.headers['x-tenant']",
		"connection.mtls", "connection.uri_san_peer_certificate", "connection.subject_peer_certificate",
		"xds.route_name", c.TokenAttribute,
	}, c.Attributes)
	assert.Equal(t, "'"+c.Token+"'", c.TokenAttribute, "the token is sent through a CEL string literal")
	assert.Regexp(t, `^gopotency-contract-v1-[0-9a-f]{16}$`, c.Token)
}

func TestContractTokenChangesWithTheList(t *testing.T) {
	def := idempotency.DefaultPolicy()
	a := NewContract(&def, nil, false)
	again := NewContract(&def, nil, false)
	assert.Equal(t, a, again, "deterministic")
	def.ScopeHeaders = append(def.ScopeHeaders, "X-Tenant")
	b := NewContract(&def, nil, false)
	assert.NotEqual(t, a.Token, b.Token, "a policy reading one more header needs a new Envoy config")
	def.AutoKey = &idempotency.AutoKey{Body: true, SourceAddress: true}
	c := NewContract(&def, nil, false)
	assert.Contains(t, c.Attributes, "source.address")
}
