package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// finders are every helper that finds or starts a service.
var finders = map[string]func(t *testing.T){
	"Redis":              func(t *testing.T) { Redis(t) },
	"RedisCluster":       func(t *testing.T) { RedisCluster(t) },
	"StartRedis":         func(t *testing.T) { StartRedis(t) },
	"StartRedisSentinel": func(t *testing.T) { StartRedisSentinel(t) },
	"StartRedisFailover": func(t *testing.T) { StartRedisFailover(t) },
	"Postgres":           func(t *testing.T) { Postgres(t) },
}

// Under -short every finder skips, even with GOPOTENCY_REQUIRE_SERVICES=1
// and a service named by its variable. Outside -short the test runs itself
// again with -short, so the rule is checked in every run (CI included).
func TestShortModeSkipsEveryFinder(t *testing.T) {
	if !testing.Short() {
		cmd := exec.Command(os.Args[0], "-test.run=^TestShortModeSkipsEveryFinder$", "-test.short", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(),
			"GOPOTENCY_REQUIRE_SERVICES=1",
			"GOPOTENCY_TEST_REDIS_URL=redis://127.0.0.1:1",
			"GOPOTENCY_TEST_REDIS_CLUSTER_ADDRS=127.0.0.1:1",
			"GOPOTENCY_TEST_POSTGRES_URL=postgres://127.0.0.1:1/x",
		)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the -short run failed: %v\n%s", err, out)
		}
		for name := range finders {
			if !strings.Contains(string(out), "--- SKIP: TestShortModeSkipsEveryFinder/"+name+" ") {
				t.Errorf("%s did not skip under -short:\n%s", name, out)
			}
		}
		return
	}
	for name, find := range finders {
		t.Run(name, func(t *testing.T) {
			find(t)
			t.Fatalf("%s returned under -short instead of skipping", name)
		})
	}
}
