package app

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/envoyconfig"
)

// EnvoyConfigCommand is the subcommand name: `gopotency envoy-config`.
const EnvoyConfigCommand = "envoy-config"

// EnvoyConfig runs `gopotency envoy-config`: it generates the Envoy side
// of the deployment from a GoPotency configuration file and writes it to
// stdout or to -o. args exclude the subcommand name.
func EnvoyConfig(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gopotency "+EnvoyConfigCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "GoPotency YAML file with policies and an envoy section (required)")
	extProc := fs.String("ext-proc-address", "", "where Envoy reaches GoPotency, host:port or unix:///path (overrides envoy.ext_proc_address)")
	target := fs.String("target", "envoy", "what to generate: envoy (a static Envoy 1.40 bootstrap)")
	out := fs.String("o", "", "write to this file instead of stdout")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: gopotency %s --config FILE [flags]\n\nGenerates Envoy's configuration from GoPotency's, so routes, matchers and attributes cannot drift.\n\n", EnvoyConfigCommand)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%s: unexpected arguments %q", EnvoyConfigCommand, fs.Args())
	case *cfgPath == "":
		return fmt.Errorf("%s: --config is required", EnvoyConfigCommand)
	case *target != "envoy":
		return fmt.Errorf("%s: --target %q: only envoy is supported (Istio and Envoy Gateway are not generated yet)", EnvoyConfigCommand, *target)
	}
	// The environment is not read: the output depends on the file and
	// the flags alone, so it can be checked in and compared.
	cfg, err := config.Load([]string{"--config", *cfgPath}, func(string) string { return "" }, stderr)
	if err != nil {
		return err
	}
	if *extProc != "" {
		e, err := cfg.RequireEnvoy()
		if err != nil {
			return err
		}
		e.ExtProcAddress = *extProc
	}
	b, err := envoyconfig.Generate(cfg, "gopotency "+EnvoyConfigCommand+" "+shellJoin(args))
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(*out, b, 0o644)
}

// shellJoin quotes args that a shell would split or expand.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$`\\*?[]#~;&|<>(){}") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
