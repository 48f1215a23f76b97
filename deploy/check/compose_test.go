package check

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestCompose loads docker-compose.yml with the Compose specification's
// own loader (what `docker compose config` uses) and checks how the stack
// starts and what it exposes. `make compose-check` runs it alone.
func TestCompose(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{filepath.Join(repo, "docker-compose.yml")},
		cli.WithWorkingDirectory(repo), cli.WithEnv(nil), cli.WithConsistency(true), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	p, err := cli.ProjectFromOptions(t.Context(), opts)
	if err != nil {
		t.Fatalf("compose-go rejects docker-compose.yml: %v", err)
	}
	for _, name := range []string{"envoy", "gopotency", "redis", "app"} {
		if _, err := p.GetService(name); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range p.Services {
		for dep, d := range s.DependsOn {
			target, _ := p.GetService(dep)
			if target.HealthCheck != nil && d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s depends on %s, which has a health check, with condition %q: want service_healthy", s.Name, dep, d.Condition)
			}
		}
		for _, port := range s.Ports {
			public := s.Name == "envoy" && port.Target == 10000
			if !public && port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %d on %q: only Envoy's listener may leave loopback", s.Name, port.Target, port.HostIP)
			}
		}
	}
	for _, name := range []string{"envoy", "gopotency", "redis"} {
		s, _ := p.GetService(name)
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			t.Errorf("%s has no health check", name)
		}
	}
	gp, _ := p.GetService("gopotency")
	if gp.DependsOn["redis"].Condition != types.ServiceConditionHealthy {
		t.Error("gopotency must wait for a healthy Redis (it exits when the store is unreachable at start)")
	}
	if ev, _ := p.GetService("envoy"); ev.DependsOn["gopotency"].Condition != types.ServiceConditionHealthy {
		t.Error("Envoy must wait for a healthy gopotency (it fails closed until then)")
	}
	if gp.StopGracePeriod == nil || time.Duration(*gp.StopGracePeriod) <= 35*time.Second {
		t.Error("gopotency's stop_grace_period must exceed drain_delay + shutdown_grace (35s)")
	}
	if !gp.ReadOnly || len(gp.CapDrop) == 0 {
		t.Error("gopotency: read_only and cap_drop")
	}
	if gp.Environment["GOPOTENCY_STORE"] == nil || *gp.Environment["GOPOTENCY_STORE"] == "" {
		t.Error("gopotency: GOPOTENCY_STORE unset: it would run on memory://")
	}
}
