package testenv

// Throwaway certificate authorities and certificates for TLS tests (this
// was the package testcerts), so no key is ever committed.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a self-signed certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	PEM  []byte
}

// NewCA makes a CA named cn.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := template(t, cn, x509.KeyUsageCertSign|x509.KeyUsageCRLSign)
	tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// CertPair is a certificate and its private key, PEM-encoded.
type CertPair struct {
	Cert            *x509.Certificate
	CertPEM, KeyPEM []byte
}

// Server issues a server certificate for localhost, 127.0.0.1 and names.
func (ca *CA) Server(t testing.TB, names ...string) CertPair {
	return ca.issue(t, "server", x509.ExtKeyUsageServerAuth, append([]string{"localhost"}, names...))
}

// Client issues a client certificate with common name cn.
func (ca *CA) Client(t testing.TB, cn string) CertPair {
	return ca.issue(t, cn, x509.ExtKeyUsageClientAuth, nil)
}

func (ca *CA) issue(t testing.TB, cn string, usage x509.ExtKeyUsage, dns []string) CertPair {
	t.Helper()
	key := newKey(t)
	tmpl := template(t, cn, x509.KeyUsageDigitalSignature)
	tmpl.ExtKeyUsage, tmpl.DNSNames = []x509.ExtKeyUsage{usage}, dns
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	return ca.sign(t, tmpl, key)
}

// ClientURI issues a client certificate whose identity is a URI SAN (a
// SPIFFE ID, as a mesh issues), with common name cn; each call makes a new
// key, as a rotation does.
func (ca *CA) ClientURI(t testing.TB, cn, uri string) CertPair {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := template(t, cn, x509.KeyUsageDigitalSignature)
	tmpl.ExtKeyUsage, tmpl.URIs = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, []*url.URL{u}
	return ca.sign(t, tmpl, newKey(t))
}

// template is what every certificate here shares: a random serial, the
// common name cn, and a validity from an hour ago (clock skew between the
// test and the TLS peer) to a day ahead.
func template(t testing.TB, cn string, usage x509.KeyUsage) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     usage,
	}
}

func (ca *CA) sign(t testing.TB, tmpl *x509.Certificate, key *ecdsa.PrivateKey) CertPair {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return CertPair{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}

// Write stores the pair as cert and key files in dir and returns their
// paths. Existing files are replaced atomically (rename), as Kubernetes
// replaces a mounted Secret.
func (p CertPair) Write(t testing.TB, dir, cert, key string) (certPath, keyPath string) {
	t.Helper()
	return WriteFile(t, dir, cert, p.CertPEM), WriteFile(t, dir, key, p.KeyPEM)
}

// WriteFile writes b to dir/name through a temporary file and a rename.
func WriteFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
