package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gopotency/gopotency/pkg/config"
)

// certReloader serves the ext_proc listener's TLS configuration from
// files it re-reads every interval: a rotated certificate (cert-manager,
// a Kubernetes Secret update) is used for new connections without a
// restart, and files that do not load leave the previous ones in use.
type certReloader struct {
	files config.TLS
	log   *slog.Logger
	cur   atomic.Pointer[tls.Config]

	mu      sync.Mutex // serialises load; guards raw and lastErr
	raw     [3][]byte  // cert, key, client CA as last loaded
	lastErr string

	notAfter atomic.Int64 // unix seconds of the leaf certificate's expiry
	reloads  *prometheus.CounterVec
}

func newCertReloader(files config.TLS, log *slog.Logger, reg prometheus.Registerer) (*certReloader, error) {
	r := &certReloader{files: files, log: log}
	if _, err := r.load(); err != nil {
		return nil, err
	}
	r.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gopotency_grpc_tls_reloads_total",
		Help: "TLS file changes on the ext_proc listener, by result (ok: new files served; error: previous ones kept).",
	}, []string{"result"})
	expiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gopotency_grpc_tls_certificate_expiry_timestamp_seconds",
		Help: "When the certificate served on the ext_proc listener expires (Unix time).",
	}, func() float64 { return float64(r.notAfter.Load()) })
	for _, c := range []prometheus.Collector{r.reloads, expiry} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return r, nil
}

// load reads the files and, when they differ from the ones in use, builds
// and installs a new configuration. It reports whether it did.
func (r *certReloader) load() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var raw [3][]byte
	for i, p := range []string{r.files.CertFile, r.files.KeyFile, r.files.ClientCAFile} {
		if p == "" {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return false, fmt.Errorf("grpc_tls: %w", err)
		}
		raw[i] = b
	}
	if r.cur.Load() != nil && bytes.Equal(raw[0], r.raw[0]) && bytes.Equal(raw[1], r.raw[1]) && bytes.Equal(raw[2], r.raw[2]) {
		return false, nil
	}
	pair, err := tls.X509KeyPair(raw[0], raw[1])
	if err != nil {
		return false, fmt.Errorf("grpc_tls: certificate %s with key %s: %w", r.files.CertFile, r.files.KeyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if r.files.ClientCAFile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw[2]) {
			return false, fmt.Errorf("grpc_tls: client_ca_file %s holds no PEM certificate", r.files.ClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	if pair.Leaf != nil {
		r.notAfter.Store(pair.Leaf.NotAfter.Unix())
		if time.Now().After(pair.Leaf.NotAfter) {
			r.log.Warn("grpc_tls: the certificate has expired; Envoy will refuse it", "cert_file", r.files.CertFile, "not_after", pair.Leaf.NotAfter)
		}
	}
	r.cur.Store(cfg)
	r.raw = raw
	return true, nil
}

// configForClient is the listener's tls.Config.GetConfigForClient: every
// handshake gets the configuration loaded last.
func (r *certReloader) configForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	return r.cur.Load(), nil
}

// serverConfig is what the gRPC credentials are built from.
func (r *certReloader) serverConfig() *tls.Config {
	return &tls.Config{GetConfigForClient: r.configForClient, MinVersion: tls.VersionTLS12}
}

// check reloads if the files changed, logging a failure once per distinct
// error (the same broken file is not reported every interval).
func (r *certReloader) check() {
	changed, err := r.load()
	r.mu.Lock()
	repeat := err != nil && r.lastErr == err.Error()
	r.lastErr = ""
	if err != nil {
		r.lastErr = err.Error()
	}
	r.mu.Unlock()
	switch {
	case err != nil && !repeat:
		r.reloads.WithLabelValues("error").Inc()
		r.log.Error("grpc_tls: new files do not load; still serving the previous certificate", "error", err)
	case changed:
		r.reloads.WithLabelValues("ok").Inc()
		r.log.Info("grpc_tls: reloaded", "cert_file", r.files.CertFile, "not_after", time.Unix(r.notAfter.Load(), 0).UTC())
	}
}

// watch checks the files every interval until ctx ends.
func (r *certReloader) watch(ctx context.Context) {
	t := time.NewTicker(r.files.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.check()
		}
	}
}
