package main

import (
	"encoding/json"
	"fmt"
	"html"
	"math"
	"os"
	"strings"
)

// chartFromFile draws the chart of a JSON report (-json-out) into svgPath.
func chartFromFile(jsonPath, svgPath string) error {
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		return err
	}
	var rep jsonReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("%s: %w", jsonPath, err)
	}
	if len(rep.Rows) == 0 {
		return fmt.Errorf("%s: no rows", jsonPath)
	}
	return os.WriteFile(svgPath, chart(rep), 0o644)
}

// Colours of the CPU components, in the order of components.
var componentColours = map[string]string{
	"envoy": "#4e79a7", "server": "#e15759", "store": "#f28e2b", "upstream": "#76b7b2", "client": "#bab0ac",
}

// chart draws, per scenario and target, the throughput against Envoy
// alone (left) and the CPU time per request split by process (right):
// the second explains the first on a CPU-bound machine.
func chart(rep jsonReport) []byte {
	const (
		labelW = 300 // scenario and target names
		barW   = 300 // each panel's bar area
		gap    = 60
		rowH   = 18
		groupG = 14
		top    = 70
	)
	// Scales: ratios up to at least 1.1×, CPU up to the largest stack.
	maxRatio, maxCPU := 1.1, 1.0
	for _, r := range rep.Rows {
		if r.VsEnvoy != nil {
			maxRatio = math.Max(maxRatio, r.VsEnvoy.RPS)
		}
		var sum float64
		for _, c := range components {
			sum += r.ProcCPUUs[c]
		}
		maxCPU = math.Max(maxCPU, sum)
	}
	maxCPU = niceCeil(maxCPU)
	var body strings.Builder
	y := top
	scenario := ""
	x1 := labelW
	x2 := labelW + barW + gap
	for _, r := range rep.Rows {
		if r.Scenario != scenario {
			if scenario != "" {
				y += groupG
			}
			scenario = r.Scenario
			fmt.Fprintf(&body, `<text x="4" y="%d" font-weight="bold">%s</text>`+"\n", y+rowH-5, esc(scenarioTitle(r.Scenario)))
			y += rowH
		}
		fmt.Fprintf(&body, `<text x="16" y="%d">%s</text>`+"\n", y+rowH-5, esc(r.Target))
		if r.VsEnvoy != nil {
			w := r.VsEnvoy.RPS / maxRatio * barW
			fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="#59a14f"/>`+"\n", x1, y+2, w, rowH-4)
			fmt.Fprintf(&body, `<text x="%.1f" y="%d">%.2f×</text>`+"\n", float64(x1)+w+4, y+rowH-5, r.VsEnvoy.RPS)
		} else {
			fmt.Fprintf(&body, `<text x="%d" y="%d" fill="#666">baseline (%.0f req/s)</text>`+"\n", x1+4, y+rowH-5, r.RPS)
		}
		x := float64(x2)
		var total float64
		for _, c := range components {
			v := r.ProcCPUUs[c]
			if v <= 0 {
				continue
			}
			w := v / maxCPU * barW
			fmt.Fprintf(&body, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s %.0f µs</title></rect>`+"\n",
				x, y+2, w, rowH-4, componentColours[c], c, v)
			x += w
			total += v
		}
		if total > 0 {
			fmt.Fprintf(&body, `<text x="%.1f" y="%d">%.0f µs</text>`+"\n", x+4, y+rowH-5, total)
		}
		y += rowH
	}
	height := y + 56
	width := x2 + barW + 90
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="4" y="18" font-size="14" font-weight="bold">%s</text>`+"\n",
		esc(fmt.Sprintf("gopotency-bench, %s layout, %d clients, %s per target (%s, %d CPUs, load %s)",
			rep.Facts.Layout, rep.Facts.Workers, rep.Facts.Duration, rep.Facts.Date, rep.Facts.CPUs, rep.Facts.LoadAvg)))
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">req/s vs Envoy alone (higher is better)</text>`+"\n", x1, top-22)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">CPU µs per request, by process</text>`+"\n", x2, top-22)
	// The 1× line, and the CPU axis end.
	one := float64(x1) + barW/maxRatio
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333" stroke-dasharray="3,3"/>`+"\n", one, top-14, one, y)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">1×</text>`+"\n", one, top-4)
	fmt.Fprintf(&b, `<text x="%d" y="%d">0</text><text x="%d" y="%d" text-anchor="end">%.0f µs</text>`+"\n", x2, top-4, x2+barW, top-4, maxCPU)
	b.WriteString(body.String())
	lx := x2
	for _, c := range components {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", lx, y+16, componentColours[c], lx+14, y+25, c)
		lx += 14 + 7*len(c) + 20
	}
	fmt.Fprintf(&b, `<text x="4" y="%d" fill="#666">%s</text>`+"\n", y+46, esc("Rerun: "+rep.Facts.Command))
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func scenarioTitle(name string) string {
	for _, s := range scenarios {
		if s.Name == name {
			return s.Title
		}
	}
	return name
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func esc(s string) string { return html.EscapeString(s) }
