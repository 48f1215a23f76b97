package config

import (
	"errors"
	"flag"
)

// AdminAPI configures the operator API on the admin listener (inspect and
// purge keys, see docs/admin.md). It is off unless a bearer token is
// configured.
type AdminAPI struct {
	// TokenFile holds the accepted bearer tokens, one per line. The server
	// re-reads it on every API request, so a rotated token (a Kubernetes
	// Secret update) is accepted, and the old one refused, at once.
	TokenFile string `yaml:"token_file"`
	// Token is the one accepted token when it comes from the environment
	// (GOPOTENCY_ADMIN_TOKEN). Never logged.
	Token string `yaml:"-"`
}

// Enabled reports whether the API is served.
func (a AdminAPI) Enabled() bool { return a.TokenFile != "" || a.Token != "" }

// registerAdminFlags adds the admin API's flag and reads its token from
// the environment. The token itself has no flag: command lines are visible
// to every user of the machine.
func (c *Config) registerAdminFlags(fs *flag.FlagSet, env func(name, def string) string) {
	fs.StringVar(&c.Admin.TokenFile, "admin-token-file", env("GOPOTENCY_ADMIN_TOKEN_FILE", ""),
		"file of bearer tokens (one per line) that turn on the admin API on --admin-addr (env GOPOTENCY_ADMIN_TOKEN_FILE; or the token itself in GOPOTENCY_ADMIN_TOKEN)")
	c.Admin.Token = env("GOPOTENCY_ADMIN_TOKEN", "")
}

// checkAdmin checks the admin section.
func (c *Config) checkAdmin() []error {
	if c.Admin.TokenFile != "" && c.Admin.Token != "" {
		return []error{errors.New("admin: both a token file (admin.token_file, --admin-token-file or GOPOTENCY_ADMIN_TOKEN_FILE) and GOPOTENCY_ADMIN_TOKEN are set; choose one")}
	}
	return nil
}
