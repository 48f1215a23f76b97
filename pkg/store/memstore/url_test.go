package memstore

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseURL(t *testing.T) {
	o, err := ParseURL("memory://")
	require.NoError(t, err)
	assert.Zero(t, o.MaxBytes, "defaults apply")
	o, err = ParseURL("memory://?max_bytes=64MiB&max_entries=5000")
	require.NoError(t, err)
	assert.Equal(t, int64(64<<20), o.MaxBytes)
	assert.Equal(t, 5000, o.MaxEntries)
	o, err = ParseURL("mem://?max_bytes=1048576")
	require.NoError(t, err)
	assert.Equal(t, int64(1<<20), o.MaxBytes)
	for _, bad := range []string{"memory://?max_byte=1", "memory://?max_bytes=-1", "memory://?max_bytes=lots", "memory://?max_entries=0", "memory://host", "memory://?%zz", "redis://", "postgres://?max_bytes=1"} {
		_, err := ParseURL(bad)
		assert.Error(t, err, bad)
	}
}
