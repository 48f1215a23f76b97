package envoyconfig

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/gopotency/gopotency/pkg/config"
)

//go:embed *.tmpl
var templateFiles embed.FS

// templates holds every target's template and the pieces they share.
var templates = func() *template.Template {
	t := template.New("")
	return template.Must(t.Funcs(template.FuncMap{
		"q":        quote,
		"scalar":   scalar,
		"secs":     seconds,
		"join":     strings.Join,
		"list":     quoteList,
		"decimals": decimalRange,
		"addr":     socketAddress,
		"lines":    commentLines,
		"indent":   indent,
		"filter":   filterData,
		"include": func(name string, data any) (string, error) {
			var b bytes.Buffer
			err := t.ExecuteTemplate(&b, name, data)
			return b.String(), err
		},
	}).ParseFS(templateFiles, "*.tmpl"))
}()

// filterView is what the shared "extproc" template renders: the plan's
// filter settings, the cluster the filter calls and, where a target
// cannot say it per route, the policy of every request.
type filterView struct {
	*Plan
	Cluster  string
	Metadata *metadataEntry
	// GRPC: the filter for gRPC calls (a full-duplex request body).
	GRPC bool
}

type metadataEntry struct{ Key, Value string }

func filterData(p *Plan, cluster string) filterView { return filterView{Plan: p, Cluster: cluster} }

// Generate renders cfg's Envoy bootstrap; command is the line written at
// its top that regenerates it.
func Generate(cfg *config.Config, command string) ([]byte, error) {
	return GenerateTarget(cfg, TargetEnvoy, Kube{}, command)
}

// Envoy renders the plan as a static Envoy bootstrap: listener, routes,
// ext_proc filter and clusters. command is the line that regenerates it,
// written at the top of the file.
func (p *Plan) Envoy(command string) ([]byte, error) {
	if p.Listen.Pipe != "" || p.Admin.Pipe != "" {
		return nil, fmt.Errorf("envoy: the listener and admin addresses must be host:port")
	}
	var errs []error
	for _, c := range p.Clusters {
		if c.Pipe != "" {
			errs = append(errs, fmt.Errorf("envoy.clusters.%s: upstreams are host:port", c.Name))
		}
	}
	if len(p.Clusters) == 0 {
		errs = append(errs, errors.New("envoy.clusters: at least one upstream cluster is required"))
	}
	if len(p.Routes) == 0 {
		errs = append(errs, errors.New("envoy.routes: at least one route is required"))
	}
	for i, r := range p.Routes {
		if r.Prefix == "" {
			errs = append(errs, fmt.Errorf("envoy.routes[%d] (%s): plain Envoy routes by path: set prefix", i, r.Name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, "envoy.yaml.tmpl", struct {
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

// scalar writes s as a plain YAML scalar when it is one, else quoted.
func scalar(s string) string {
	if plainScalar.MatchString(s) {
		return s
	}
	return quote(s)
}

var plainScalar = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_./-]*$`)

// indent prefixes every non-empty line of s with n spaces.
func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
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
