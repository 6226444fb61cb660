package web

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

// chart is a line chart of one or more series over the same times, drawn
// on the server as SVG: no charting script, nothing to load, the same
// picture with scripts off, and a text summary for screen readers.
type chart struct {
	Title  string
	Unit   string // "req/s", "s", "" (a count)
	Times  []time.Time
	Series []chartSeries
}

type chartSeries struct {
	Name   string
	Values []float64 // NaN: no value (a gap)
}

// Chart geometry, in the SVG's own units; it scales to its box.
const (
	chartW, chartH       = 440.0, 170.0
	plotL, plotR         = 56.0, 432.0
	plotT, plotB         = 30.0, 144.0
	chartSeriesClasses   = 4
	chartMinPointsToDraw = 2
)

// niceMax rounds v up to 1, 2 or 5 times a power of ten, so the axis reads
// in round numbers.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p*1.0000001 {
			return m * p
		}
	}
	return 10 * p
}

// formatValue writes v in unit, short: 0.0123 s is "12.3ms".
func formatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "–"
	}
	switch unit {
	case "s":
		switch {
		case v == 0:
			return "0"
		case v < 0.001:
			return trimFloat(v*1e6) + "µs"
		case v < 1:
			return trimFloat(v*1000) + "ms"
		}
		return trimFloat(v) + "s"
	case "":
		return trimFloat(v)
	}
	return trimFloat(v) + " " + unit
}

func trimFloat(v float64) string {
	var s string
	switch a := math.Abs(v); {
	case a >= 100 || a == math.Trunc(a):
		s = fmt.Sprintf("%.0f", v)
	case a >= 10:
		s = fmt.Sprintf("%.1f", v)
	default:
		s = fmt.Sprintf("%.2f", v)
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// SVG draws the chart. Fewer than two times draw an empty frame that says
// it is waiting for data.
func (c chart) SVG() template.HTML {
	var b strings.Builder
	maxV := 0.0
	for _, s := range c.Series {
		for _, v := range s.Values {
			if !math.IsNaN(v) && v > maxV {
				maxV = v
			}
		}
	}
	top := niceMax(maxV)
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %g %g" role="img" aria-label="%s">`, chartW, chartH, template.HTMLEscapeString(c.summary()))
	fmt.Fprintf(&b, `<text class="ct" x="4" y="18">%s</text>`, template.HTMLEscapeString(c.Title))
	// Legend, right-aligned at the top.
	x := plotR
	for i := len(c.Series) - 1; i >= 0; i-- {
		s := c.Series[i]
		last := lastValue(s.Values)
		label := s.Name + " " + formatValue(last, c.Unit)
		fmt.Fprintf(&b, `<text class="cl s%d" x="%g" y="18" text-anchor="end">%s</text>`, i%chartSeriesClasses, x, template.HTMLEscapeString(label))
		x -= float64(len([]rune(label)))*7.5 + 14
	}
	for _, f := range []float64{0, 0.5, 1} {
		y := plotB - f*(plotB-plotT)
		fmt.Fprintf(&b, `<line class="cg" x1="%g" y1="%g" x2="%g" y2="%g"/>`, plotL, y, plotR, y)
		// The unit is in the legend; the axis has the numbers.
		axisUnit := ""
		if c.Unit == "s" {
			axisUnit = "s"
		}
		fmt.Fprintf(&b, `<text class="ca" x="%g" y="%g" text-anchor="end">%s</text>`, plotL-6, y+5, template.HTMLEscapeString(formatValue(f*top, axisUnit)))
	}
	if len(c.Times) < chartMinPointsToDraw {
		fmt.Fprintf(&b, `<text class="ca" x="%g" y="%g" text-anchor="middle">collecting data…</text>`, (plotL+plotR)/2, (plotT+plotB)/2+5)
		b.WriteString(`</svg>`)
		return template.HTML(b.String())
	}
	t0, t1 := c.Times[0], c.Times[len(c.Times)-1]
	span := t1.Sub(t0).Seconds()
	if span <= 0 {
		span = 1
	}
	xOf := func(t time.Time) float64 { return plotL + (plotR-plotL)*t.Sub(t0).Seconds()/span }
	yOf := func(v float64) float64 { return plotB - (plotB-plotT)*v/top }
	fmt.Fprintf(&b, `<text class="ca" x="%g" y="%g">%s</text>`, plotL, chartH-6, template.HTMLEscapeString(agoLabel(t1.Sub(t0))))
	fmt.Fprintf(&b, `<text class="ca" x="%g" y="%g" text-anchor="end">now</text>`, plotR, chartH-6)
	for i, s := range c.Series {
		var pts []string
		flush := func() {
			switch len(pts) {
			case 0:
			case 1:
				// A lone value between gaps is a dot, or it would not show.
				var px, py float64
				fmt.Sscanf(pts[0], "%g,%g", &px, &py)
				fmt.Fprintf(&b, `<circle class="cp s%d" cx="%g" cy="%g" r="2.5"/>`, i%chartSeriesClasses, px, py)
			default:
				fmt.Fprintf(&b, `<polyline class="cs s%d" points="%s"/>`, i%chartSeriesClasses, strings.Join(pts, " "))
			}
			pts = pts[:0]
		}
		for j, v := range s.Values {
			if j >= len(c.Times) {
				break
			}
			if math.IsNaN(v) {
				flush()
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(c.Times[j]), yOf(v)))
		}
		flush()
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func lastValue(vs []float64) float64 {
	for i := len(vs) - 1; i >= 0; i-- {
		if !math.IsNaN(vs[i]) {
			return vs[i]
		}
	}
	return math.NaN()
}

// summary is the chart in words, for those who do not see it.
func (c chart) summary() string {
	if len(c.Times) < chartMinPointsToDraw {
		return c.Title + ": no data yet"
	}
	parts := make([]string, 0, len(c.Series))
	for _, s := range c.Series {
		hi := math.NaN()
		for _, v := range s.Values {
			if !math.IsNaN(v) && (math.IsNaN(hi) || v > hi) {
				hi = v
			}
		}
		parts = append(parts, fmt.Sprintf("%s now %s, highest %s", s.Name, formatValue(lastValue(s.Values), c.Unit), formatValue(hi, c.Unit)))
	}
	return fmt.Sprintf("%s over the last %s: %s", c.Title, c.Times[len(c.Times)-1].Sub(c.Times[0]).Round(time.Second), strings.Join(parts, "; "))
}

func agoLabel(d time.Duration) string {
	d = d.Round(time.Second)
	if d >= time.Minute {
		return fmt.Sprintf("−%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("−%ds", int(d.Seconds()))
}

// workloadCharts are the charts of a workload's page, from its points.
func workloadCharts(pts []point, function bool) []chart {
	times := make([]time.Time, len(pts))
	col := func(f func(point) float64) []float64 {
		out := make([]float64, len(pts))
		for i, p := range pts {
			out[i] = f(p)
		}
		return out
	}
	for i, p := range pts {
		times[i] = p.At
	}
	charts := []chart{
		{Title: "Requests", Unit: "req/s", Times: times, Series: []chartSeries{{"now", col(func(p point) float64 { return p.RPS })}}},
		{Title: "Latency", Unit: "s", Times: times, Series: []chartSeries{
			{"p50", col(func(p point) float64 { return p.P50 })},
			{"p99", col(func(p point) float64 { return p.P99 })},
		}},
		{Title: "Errors (5xx)", Unit: "err/s", Times: times, Series: []chartSeries{{"now", col(func(p point) float64 { return p.ErrPS })}}},
		{Title: "Instances", Unit: "", Times: times, Series: []chartSeries{
			{"ready", col(func(p point) float64 { return p.Ready })},
			{"desired", col(func(p point) float64 { return p.Desired })},
		}},
	}
	if function {
		charts = append(charts, chart{Title: "Cold starts", Unit: "", Times: times, Series: []chartSeries{
			{"last interval", col(func(p point) float64 { return p.ColdStarts })},
		}}, chart{Title: "Cold start wait", Unit: "s", Times: times, Series: []chartSeries{
			{"mean", col(func(p point) float64 { return p.ColdWait })},
		}})
	}
	return charts
}
