package app

import (
	"io"
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/gopotency/gopotency/pkg/config"
)

func TestTuneRuntime(t *testing.T) {
	gc, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(gc); debug.SetMemoryLimit(limit) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	cfg := &config.Config{Store: "memory://?max_bytes=64MiB", ExtProc: config.ExtProc{MaxBufferedBytes: 32 << 20}}
	TuneRuntime(cfg, env(nil), log)
	assert.Equal(t, DefaultGCPercent, debug.SetGCPercent(100))
	assert.Equal(t, int64(32<<20+runtimeHeadroom+64<<20), debug.SetMemoryLimit(-1), "buffers, the memory store's budget, headroom")

	cfg = &config.Config{Store: "redis://r:6379", ExtProc: config.ExtProc{MaxBufferedBytes: 32 << 20}, ReplayCache: config.ReplayCache{ReplayCacheTTL: 1, ReplayCacheBytes: 16 << 20}}
	TuneRuntime(cfg, env(nil), log)
	assert.Equal(t, int64(32<<20+runtimeHeadroom+16<<20), debug.SetMemoryLimit(-1))

	debug.SetGCPercent(150)
	debug.SetMemoryLimit(1 << 30)
	TuneRuntime(cfg, env(map[string]string{"GOGC": "150", "GOMEMLIMIT": "1GiB"}), log)
	assert.Equal(t, 150, debug.SetGCPercent(100), "the operator's GOGC stays")
	assert.Equal(t, int64(1<<30), debug.SetMemoryLimit(-1), "and GOMEMLIMIT")
}
