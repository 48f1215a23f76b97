package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAdminAPIIsOffUnlessATokenIsConfigured(t *testing.T) {
	c, err := load(t, nil)
	require.NoError(t, err)
	require.False(t, c.Admin.Enabled())

	file := writeYAML(t, "admin:\n  token_file: /yaml/token\n")
	c, err = load(t, nil, "--config", file)
	require.NoError(t, err)
	require.Equal(t, AdminAPI{TokenFile: "/yaml/token"}, c.Admin)
	require.True(t, c.Admin.Enabled())

	c, err = load(t, map[string]string{"GOPOTENCY_ADMIN_TOKEN_FILE": "/env/token"}, "--config", file)
	require.NoError(t, err)
	require.Equal(t, "/env/token", c.Admin.TokenFile, "env beats YAML")
	c, err = load(t, map[string]string{"GOPOTENCY_ADMIN_TOKEN_FILE": "/env/token"}, "--admin-token-file", "/flag/token")
	require.NoError(t, err)
	require.Equal(t, "/flag/token", c.Admin.TokenFile, "flag beats env")

	c, err = load(t, map[string]string{"GOPOTENCY_ADMIN_TOKEN": "from-the-environment"})
	require.NoError(t, err)
	require.Equal(t, AdminAPI{Token: "from-the-environment"}, c.Admin)
	require.True(t, c.Admin.Enabled())
}

func TestAdminAPITokenFromTwoPlacesIsRefused(t *testing.T) {
	const secret = "from-the-environment"
	_, err := load(t, map[string]string{"GOPOTENCY_ADMIN_TOKEN": secret}, "--config", writeYAML(t, "admin: {token_file: /t}\n"), "--log-level", "loud")
	requireErrorMentions(t, err, "admin: both a token file", `log level: "loud"`)
	require.NotContains(t, err.Error(), secret, "the token is never printed")

	_, err = load(t, nil, "--config", writeYAML(t, "admin: {token: x}\n"))
	require.ErrorContains(t, err, "token", "the token is not a YAML setting: it would sit in a config map")
}
