package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// tlsFiles writes a server pair (and optionally the CA as client CA) and
// returns the grpc_tls YAML section naming them.
type tlsFiles struct {
	dir, cert, key, ca string
}

func writeTLS(t *testing.T, ca *testenv.CA, clientCA bool) tlsFiles {
	t.Helper()
	f := tlsFiles{dir: t.TempDir()}
	f.cert, f.key = ca.Server(t).Write(t, f.dir, "tls.crt", "tls.key")
	if clientCA {
		f.ca = testenv.WriteFile(t, f.dir, "ca.crt", ca.PEM)
	}
	return f
}

func (f tlsFiles) yaml() string {
	s := fmt.Sprintf("grpc_tls:\n  cert_file: %s\n  key_file: %s\n  reload_interval: 1s\n", f.cert, f.key)
	if f.ca != "" {
		s += "  client_ca_file: " + f.ca + "\n"
	}
	return s
}

// healthOverTLS runs one gRPC health check with the given client TLS.
func healthOverTLS(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("status %v", resp.GetStatus())
	}
	return err
}

func clientTLS(ca *testenv.CA, pair *testenv.CertPair) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	if pair != nil {
		c, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
		if err != nil {
			panic(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}

func TestMTLSRequiresAClientCertificateFromTheCA(t *testing.T) {
	ca, other := testenv.NewCA(t, "gopotency test CA"), testenv.NewCA(t, "someone else")
	r := start(t, writeTLS(t, ca, true).yaml())
	envoyCert, strangerCert := ca.Client(t, "envoy"), other.Client(t, "envoy")

	require.NoError(t, healthOverTLS(t, r.app.GRPCAddr(), clientTLS(ca, &envoyCert)), "a client certificate from the CA is accepted")
	require.Error(t, healthOverTLS(t, r.app.GRPCAddr(), clientTLS(ca, nil)), "no client certificate")
	require.Error(t, healthOverTLS(t, r.app.GRPCAddr(), clientTLS(ca, &strangerCert)), "a client certificate from another CA")
	require.Error(t, r.plaintextHealth(t), "plaintext is refused on a TLS listener")
	require.Contains(t, r.logs.String(), `"grpc_tls":"mtls"`)
}

func TestTLSWithoutClientCA(t *testing.T) {
	ca := testenv.NewCA(t, "gopotency test CA")
	r := start(t, writeTLS(t, ca, false).yaml())
	require.NoError(t, healthOverTLS(t, r.app.GRPCAddr(), clientTLS(ca, nil)))
	require.Error(t, healthOverTLS(t, r.app.GRPCAddr(), clientTLS(testenv.NewCA(t, "not the issuer"), nil)), "the client checks the server")
}

// plaintextHealth checks health over the harness's insecure connection.
func (r *running) plaintextHealth(t *testing.T) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(r.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// servedSerial is the serial number of the certificate a new connection gets.
func servedSerial(t *testing.T, addr string, ca *testenv.CA, pair *testenv.CertPair) *big.Int {
	t.Helper()
	cfg := clientTLS(ca, pair)
	cfg.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", addr, cfg)
	require.NoError(t, err)
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

func TestRotatedCertificateIsServedWithoutRestart(t *testing.T) {
	ca := testenv.NewCA(t, "gopotency test CA")
	f := writeTLS(t, ca, true)
	r := start(t, f.yaml())
	envoyCert := ca.Client(t, "envoy")
	first := servedSerial(t, r.app.GRPCAddr(), ca, &envoyCert)

	// A broken rotation (a key that does not match) keeps the old pair.
	testenv.WriteFile(t, f.dir, "tls.key", ca.Server(t).KeyPEM)
	require.Eventually(t, func() bool { return strings.Contains(r.logs.String(), "still serving the previous certificate") }, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, first, servedSerial(t, r.app.GRPCAddr(), ca, &envoyCert))
	_, metrics := r.get(t, "/metrics")
	require.Contains(t, metrics, `gopotency_grpc_tls_reloads_total{result="error"} 1`)

	// A good one is picked up by the next handshake.
	next := ca.Server(t)
	next.Write(t, f.dir, "tls.crt", "tls.key")
	require.Eventually(t, func() bool {
		return servedSerial(t, r.app.GRPCAddr(), ca, &envoyCert).Cmp(next.Cert.SerialNumber) == 0
	}, 10*time.Second, 100*time.Millisecond)
	require.NoError(t, healthOverTLS(t, r.app.GRPCAddr(), clientTLS(ca, &envoyCert)))
	_, metrics = r.get(t, "/metrics")
	require.Contains(t, metrics, `gopotency_grpc_tls_reloads_total{result="ok"} 1`)
	require.Contains(t, metrics, fmt.Sprintf("gopotency_grpc_tls_certificate_expiry_timestamp_seconds %g", float64(next.Cert.NotAfter.Unix())))

	// A new client CA is honoured too: certificates of the old one stop working.
	ca2 := testenv.NewCA(t, "next CA")
	testenv.WriteFile(t, f.dir, "ca.crt", ca2.PEM)
	newClient := ca2.Client(t, "envoy")
	require.Eventually(t, func() bool { return healthOverTLS(t, r.app.GRPCAddr(), clientTLS(ca, &newClient)) == nil }, 10*time.Second, 100*time.Millisecond)
	require.Error(t, healthOverTLS(t, r.app.GRPCAddr(), clientTLS(ca, &envoyCert)))
}

func TestBadTLSFilesFailAtStart(t *testing.T) {
	ca := testenv.NewCA(t, "gopotency test CA")
	good := writeTLS(t, ca, true)
	garbage := testenv.WriteFile(t, t.TempDir(), "garbage.pem", []byte("not PEM\n"))
	otherKey := testenv.WriteFile(t, t.TempDir(), "other.key", ca.Server(t).KeyPEM)
	for _, c := range []struct {
		name string
		tls  config.TLS
		want string
	}{
		{"missing cert", config.TLS{CertFile: "/does/not/exist.crt", KeyFile: good.key}, "grpc_tls: open /does/not/exist.crt"},
		{"key of another certificate", config.TLS{CertFile: good.cert, KeyFile: otherKey}, "grpc_tls: certificate " + good.cert + " with key " + otherKey},
		{"garbage cert", config.TLS{CertFile: garbage, KeyFile: good.key}, "grpc_tls: certificate " + garbage},
		{"garbage client CA", config.TLS{CertFile: good.cert, KeyFile: good.key, ClientCAFile: garbage}, "client_ca_file " + garbage + " holds no PEM certificate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := config.Load(nil, func(string) string { return "" }, io.Discard)
			require.NoError(t, err)
			c.tls.ReloadInterval = time.Second
			cfg.GRPCTLS = c.tls
			_, err = New(context.Background(), cfg, io.Discard)
			require.ErrorContains(t, err, c.want)
		})
	}
}

func TestStartupWarnsAboutAMemoryStore(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{nil, "no store configured (GOPOTENCY_STORE, --store or store:), so memory:// is used"},
		{map[string]string{"GOPOTENCY_STORE": "memory://"}, `"msg":"memory store: keys live in this process only`},
	} {
		cfg, err := config.Load([]string{"--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, func(k string) string { return c.env[k] }, io.Discard)
		require.NoError(t, err)
		cfg.DrainDelay = 0
		logs := &syncBuffer{}
		srv, err := Start(cfg, logs)
		require.NoError(t, err)
		require.NoError(t, srv.Stop())
		require.Contains(t, logs.String(), c.want)
		require.Contains(t, logs.String(), `"level":"WARN"`)
	}
	// A shared store gets no such warning.
	cfg, err := config.Load([]string{"--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--store", "sqlite://" + filepath.Join(t.TempDir(), "k.db")},
		func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	cfg.DrainDelay = 0
	logs := &syncBuffer{}
	srv, err := Start(cfg, logs)
	require.NoError(t, err)
	require.NoError(t, srv.Stop())
	require.NotContains(t, logs.String(), "keys live in this process only")
	require.Contains(t, logs.String(), "gopotency serving")
}
