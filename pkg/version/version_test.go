package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	restore := func(v string, f func() (*debug.BuildInfo, bool)) func() {
		return func() { version, readBuildInfo = v, f }
	}
	t.Cleanup(restore(version, readBuildInfo))
	info := func(mainVersion string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{Main: debug.Module{Version: mainVersion}}
			for i := 0; i+1 < len(settings); i += 2 {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return bi, true
		}
	}
	for _, c := range []struct {
		name, linked string
		info         func() (*debug.BuildInfo, bool)
		want         string
	}{
		{"ldflags wins", "v1.2.3", info("v0.9.0"), "v1.2.3"},
		{"go install @version", "", info("v0.9.0"), "v0.9.0"},
		{"checkout", "", info("(devel)", "vcs.revision", "0123456789abcdef0123", "vcs.modified", "false"), "devel-0123456789ab"},
		{"dirty checkout", "", info("(devel)", "vcs.revision", "0123456789abcdef0123", "vcs.modified", "true"), "devel-0123456789ab-dirty"},
		{"nothing recorded", "", info("(devel)"), "devel"},
		{"no build info", "", func() (*debug.BuildInfo, bool) { return nil, false }, "devel"},
	} {
		t.Run(c.name, func(t *testing.T) {
			version, readBuildInfo = c.linked, c.info
			if got := Version(); got != c.want {
				t.Fatalf("Version() = %q, want %q", got, c.want)
			}
			if s := String(); !strings.HasPrefix(s, "gopotency "+c.want+" (go") {
				t.Fatalf("String() = %q", s)
			}
		})
	}
}
