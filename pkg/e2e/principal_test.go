package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// tlsClient is an HTTPS client presenting pair (none when pair is nil),
// trusting ca; each has its own connections, so its own certificate.
func tlsClient(t *testing.T, ca *testenv.CA, pair *testenv.CertPair) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if pair != nil {
		cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
		require.NoError(t, err)
		cfg.Certificates = []tls.Certificate{cert}
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
}

// mtlsExample is envoy/examples/mtls-principal.yaml with throwaway server
// and CA files, and the CA that issues the clients' certificates.
type mtlsExample struct {
	ca          *testenv.CA
	socket      any   // the listener's transport_socket
	httpFilters []any // the filters that set x-client-principal
}

func newMTLSExample(t *testing.T) mtlsExample {
	t.Helper()
	ca := testenv.NewCA(t, "e2e client CA")
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	require.NoError(t, os.Mkdir(tlsDir, 0o700))
	ca.Server(t).Write(t, tlsDir, "server.crt", "server.key")
	testenv.WriteFile(t, tlsDir, "client-ca.crt", ca.PEM)
	var m struct {
		Socket  any   `yaml:"transport_socket"`
		Filters []any `yaml:"http_filters"`
	}
	require.NoError(t, yaml.Unmarshal(example(t, "mtls-principal.yaml", dir), &m))
	require.NotNil(t, m.Socket)
	require.NotEmpty(t, m.Filters)
	return mtlsExample{ca: ca, socket: m.Socket, httpFilters: m.Filters}
}

// stack runs the generated Envoy config with the example's downstream
// mTLS and filters (when given) first in the chain, and gopotency's
// default policy changed by scope.
func (x mtlsExample) stack(t *testing.T, up http.Handler, scope map[string]any, filters []any) (s *stack, url string, attrs any) {
	t.Helper()
	s = identityStack(t, up, withScope(t, scope), func(e *envoyEdit) {
		e.chain()["transport_socket"] = x.socket
		e.prependFilters(filters)
		attrs = e.extProc()["request_attributes"]
	})
	return s, strings.Replace(s.URL, "http://", "https://", 1) + "/orders", attrs
}

func (x mtlsExample) client(t *testing.T, p testenv.CertPair) *http.Client {
	return tlsClient(t, x.ca, &p)
}

func uniqueKey(name string) string { return name + "-" + itoa(int(time.Now().UnixNano())) }

// checkPeerScope: callers are their certificates' URI SANs, whatever
// Authorization they send, whatever their common names; a re-issued
// certificate with the same URI SAN is the same caller; without a
// certificate nothing gets in.
func checkPeerScope(t *testing.T, x mtlsExample, up *counter, url string) {
	const body = `{"item":"book"}`
	alice := x.client(t, x.ca.ClientURI(t, "client", "spiffe://example.org/ns/shop/sa/alice"))
	aliceRotated := x.client(t, x.ca.ClientURI(t, "client-2027", "spiffe://example.org/ns/shop/sa/alice"))
	bob := x.client(t, x.ca.ClientURI(t, "client", "spiffe://example.org/ns/shop/sa/bob"))

	t.Run("one certificate, two tokens: one caller", func(t *testing.T) {
		k := uniqueKey("tokens")
		first := doWith(t, alice, "POST", url, k, body, "Authorization", "Bearer token-before-refresh")
		require.Equal(t, 201, first.Status, "body: %s", first.Body)
		again := doWith(t, alice, "POST", url, k, body, "Authorization", "Bearer token-after-refresh")
		require.Equal(t, 201, again.Status, "body: %s", again.Body)
		assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
		assert.Equal(t, string(first.Body), string(again.Body))
		assert.Equal(t, 1, up.count(k))
	})

	t.Run("URI SANs tell callers apart, common names do not", func(t *testing.T) {
		k := uniqueKey("uri")
		first := doWith(t, alice, "POST", url, k, body)
		require.Equal(t, 201, first.Status, "body: %s", first.Body)
		other := doWith(t, bob, "POST", url, k, body)
		require.Equal(t, 201, other.Status, "body: %s", other.Body)
		assert.Empty(t, other.Header.Get("Idempotent-Replayed"), "bob (alice's common name, his own URI SAN) must not get alice's response")
		assert.Equal(t, 2, up.count(k))
		rotated := doWith(t, aliceRotated, "POST", url, k, body)
		require.Equal(t, 201, rotated.Status, "body: %s", rotated.Body)
		assert.Equal(t, "true", rotated.Header.Get("Idempotent-Replayed"), "a re-issued certificate with the same URI SAN is the same caller")
		assert.Equal(t, string(first.Body), string(rotated.Body))
		assert.Equal(t, 2, up.count(k))
	})

	t.Run("no client certificate, no request", func(t *testing.T) {
		before := up.total.Load()
		req, err := http.NewRequest("POST", url, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Idempotency-Key", uniqueKey("anonymous"))
		resp, err := tlsClient(t, x.ca, nil).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		require.Error(t, err, "the handshake fails without a client certificate")
		assert.Equal(t, before, up.total.Load())
	})
}

// TestPeerCertificateHeaderScope runs envoy/examples/mtls-principal.yaml
// as shipped: Envoy writes the verified certificate's URI SAN into
// x-client-principal (removing the client's own) and gopotency scopes on
// that header alone.
func TestPeerCertificateHeaderScope(t *testing.T) {
	x := newMTLSExample(t)
	up := newWitness("X-Client-Principal")
	_, url, _ := x.stack(t, up, map[string]any{"scope_headers": []any{"x-client-principal"}}, x.httpFilters)
	checkPeerScope(t, x, up.counter, url)

	t.Run("a forged header is replaced", func(t *testing.T) {
		const body = `{"item":"book"}`
		k := uniqueKey("forged")
		alice := x.client(t, x.ca.ClientURI(t, "client", "spiffe://example.org/ns/shop/sa/alice"))
		require.Equal(t, 201, doWith(t, alice, "POST", url, k, body).Status)
		mallory := x.client(t, x.ca.ClientURI(t, "client", "spiffe://example.org/ns/shop/sa/mallory"))
		r := doWith(t, mallory, "POST", url, k, body, "X-Client-Principal", "spiffe://example.org/ns/shop/sa/alice")
		require.Equal(t, 201, r.Status, "body: %s", r.Body)
		assert.Empty(t, r.Header.Get("Idempotent-Replayed"), "mallory never gets alice's response")
		assert.Equal(t, []string{"spiffe://example.org/ns/shop/sa/mallory"}, up.last())

		// Without a URI SAN there is no header at all: the client's is gone
		// too, and the caller is anonymous (docs/identity.md).
		carol := x.client(t, x.ca.Client(t, "carol"))
		r = doWith(t, carol, "POST", url, uniqueKey("carol"), body, "X-Client-Principal", "spiffe://example.org/ns/shop/sa/alice")
		require.Equal(t, 201, r.Status)
		assert.Empty(t, up.last())
	})
}

// TestPrincipalScope is scope_principal (the mTLS peer as the transport
// reports it, no scope headers) through the real Envoy, with the
// example's downstream mTLS and the ext_proc filter sending the request
// attributes the server's contract names for it.
//
// Envoy has no "source.principal" attribute; the server reads the peer from
// connection.uri_san_peer_certificate (else the subject) and fails closed
// when a scope_principal policy gets no connection.mtls attribute.
func TestPrincipalScope(t *testing.T) {
	x := newMTLSExample(t)
	up := newCounter()
	s, url, attrs := x.stack(t, up, map[string]any{"scope_headers": []any{}, "scope_principal": true}, nil)
	assert.NotEmpty(t, attrs, "the generator has the filter send the peer attribute the server's contract names")
	checkPeerScope(t, x, up, url)
	assert.NotContains(t, s.logs.tail(1<<20), "Envoy sends no connection.mtls", "the processor found the peer attributes")
}
