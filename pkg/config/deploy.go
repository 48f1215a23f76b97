package config

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// Deploy holds the settings of how the server is run rather than what it
// decides: TLS on the ext_proc listener and what --version asks for.
type Deploy struct {
	// GRPCTLS secures the ext_proc listener; off when CertFile is empty.
	GRPCTLS TLS `yaml:"grpc_tls"`
	// ShowVersion: print the version and exit (--version).
	ShowVersion bool `yaml:"-"`
	// StoreDefaulted is true when no store was configured anywhere and
	// memory:// was taken by default.
	StoreDefaulted bool `yaml:"-"`
}

// TLS is a server certificate and key, and optionally the CA bundle that
// client certificates must chain to (mTLS: clients without one are
// refused). The files are re-read every ReloadInterval, so rotated
// certificates are served without a restart.
type TLS struct {
	CertFile       string        `yaml:"cert_file"`
	KeyFile        string        `yaml:"key_file"`
	ClientCAFile   string        `yaml:"client_ca_file"`
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// Enabled reports whether the listener serves TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// registerDeployFlags adds the flags of Deploy, with their environment
// variables as defaults like every other flag.
func (c *Config) registerDeployFlags(fs *flag.FlagSet, env func(name, def string) string) {
	fs.BoolVar(&c.ShowVersion, "version", false, "print the version and exit")
	fs.StringVar(&c.GRPCTLS.CertFile, "grpc-tls-cert", env("GOPOTENCY_GRPC_TLS_CERT", ""), "PEM certificate (chain) of the ext_proc listener; enables TLS (env GOPOTENCY_GRPC_TLS_CERT)")
	fs.StringVar(&c.GRPCTLS.KeyFile, "grpc-tls-key", env("GOPOTENCY_GRPC_TLS_KEY", ""), "PEM private key of --grpc-tls-cert (env GOPOTENCY_GRPC_TLS_KEY)")
	fs.StringVar(&c.GRPCTLS.ClientCAFile, "grpc-tls-client-ca", env("GOPOTENCY_GRPC_TLS_CLIENT_CA", ""), "PEM CA bundle; when set, clients must present a certificate it signed (mTLS) (env GOPOTENCY_GRPC_TLS_CLIENT_CA)")
}

// checkDeploy checks the grpc_tls section.
func (c *Config) checkDeploy() []error {
	t := &c.GRPCTLS
	var errs []error
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		errs = append(errs, errors.New("grpc_tls: cert_file is set but key_file is not"))
	case t.CertFile == "" && t.KeyFile != "":
		errs = append(errs, errors.New("grpc_tls: key_file is set but cert_file is not"))
	}
	if t.ClientCAFile != "" && t.CertFile == "" {
		errs = append(errs, errors.New("grpc_tls: client_ca_file needs cert_file and key_file (mTLS is TLS with client certificates)"))
	}
	if t.ReloadInterval < time.Second {
		errs = append(errs, fmt.Errorf("grpc_tls: reload_interval %s: must be at least 1s", t.ReloadInterval))
	}
	return errs
}
