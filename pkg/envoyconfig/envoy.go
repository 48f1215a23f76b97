package envoyconfig

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/gopotency/gopotency/pkg/config"
)

//go:embed envoy.yaml.tmpl
var envoyTemplate string

var envoyTmpl = template.Must(template.New("envoy").Funcs(template.FuncMap{
	"q":        quote,
	"secs":     seconds,
	"join":     strings.Join,
	"list":     quoteList,
	"decimals": decimalRange,
	"addr":     socketAddress,
	"lines":    commentLines,
}).Parse(envoyTemplate))

// Generate renders cfg's Envoy bootstrap; command is the line written at
// its top that regenerates it.
func Generate(cfg *config.Config, command string) ([]byte, error) {
	plan, err := NewPlan(cfg)
	if err != nil {
		return nil, errors.Join(errors.New("cannot generate the Envoy configuration:"), err)
	}
	return plan.Envoy(command)
}

// Envoy renders the plan as a static Envoy bootstrap: listener, routes,
// ext_proc filter and clusters. command is the line that regenerates it,
// written at the top of the file.
func (p *Plan) Envoy(command string) ([]byte, error) {
	if p.Listen.Pipe != "" || p.Admin.Pipe != "" {
		return nil, fmt.Errorf("envoy: the listener and admin addresses must be host:port")
	}
	for _, c := range p.Clusters {
		if c.Pipe != "" {
			return nil, fmt.Errorf("envoy: cluster %s: upstreams are host:port", c.Name)
		}
	}
	var b bytes.Buffer
	if err := envoyTmpl.Execute(&b, struct {
		*Plan
		Command         string
		GoPotency       string
		Filter, PerType string
	}{p, command, config.GoPotencyCluster, "envoy.filters.http.ext_proc",
		"type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute"}); err != nil {
		return nil, fmt.Errorf("envoy: %w", err)
	}
	return b.Bytes(), nil
}

// quote writes s as a YAML double-quoted scalar (a JSON string is one).
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// seconds writes a duration as protobuf JSON does ("30s", "0.3s"); Go's
// "1m0s" is not valid there.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

func socketAddress(e Endpoint) string {
	if e.Pipe != "" {
		return fmt.Sprintf("{pipe: {path: %s}}", quote(e.Pipe))
	}
	host := e.Host
	if strings.Contains(host, ":") {
		host = quote(host) // IPv6
	}
	return fmt.Sprintf("{socket_address: {address: %s, port_value: %d}}", host, e.Port)
}

// commentLines writes s as YAML comment lines at indent, wrapped so they
// stay within 78 columns.
func commentLines(indent, s string) string {
	var lines []string
	line := indent + "#"
	for _, w := range strings.Fields(s) {
		if len(line)+1+len(w) > 78 && line != indent+"#" {
			lines = append(lines, line)
			line = indent + "#"
		}
		line += " " + w
	}
	return strings.Join(append(lines, line), "\n")
}
