// Package version reports which build of gopotency is running.
//
// Release builds set the version at link time:
//
//	go build -ldflags "-X github.com/gopotency/gopotency/pkg/version.version=v1.2.3" ./cmd/gopotency
//
// Other builds fall back to what the Go toolchain recorded: the module
// version (go install …@v1.2.3) or the VCS revision of a checkout.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set with -ldflags -X; empty means "ask the build info".
var version string

// readBuildInfo is swapped by tests.
var readBuildInfo = debug.ReadBuildInfo

// Version is the release version, or the best description of the build
// the toolchain recorded ("devel" when it recorded nothing).
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := readBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		}
	}
	if rev == "" {
		return "devel"
	}
	return "devel-" + rev[:min(12, len(rev))] + modified
}

// String is the line `gopotency --version` prints.
func String() string {
	return fmt.Sprintf("gopotency %s (%s, %s/%s)", Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
