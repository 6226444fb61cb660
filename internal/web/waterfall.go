package web

import (
	"fmt"
	"html/template"
	"slices"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// waterfallRow is one span of a trace's waterfall: indented under its
// parent, its bar placed on the trace's time line (0–1000).
type waterfallRow struct {
	Name      string
	Kind      string
	Depth     int
	Offset    time.Duration
	Duration  time.Duration
	X, W      float64
	Error     bool
	ErrorText string
	Attrs     []attr
}

type attr struct{ Key, Value string }

// maxDepth bounds indentation: deeper spans line up at the last level
// (the stylesheet has a class per level).
const maxDepth = 8

// waterfall lays a trace out: each span after its parent, siblings by
// start; a span whose parent the store does not hold (the caller's, sent
// with traceparent) is a root.
func waterfall(spans []v1.Span) ([]waterfallRow, time.Duration) {
	if len(spans) == 0 {
		return nil, 0
	}
	start, end := spans[0].Start, spans[0].End
	byID := map[string]bool{}
	for _, s := range spans {
		if s.Start.Before(start) {
			start = s.Start
		}
		if s.End.After(end) {
			end = s.End
		}
		byID[s.SpanID] = true
	}
	total := end.Sub(start)
	children := map[string][]v1.Span{}
	var roots []v1.Span
	for _, s := range spans {
		if s.ParentID == "" || !byID[s.ParentID] || s.ParentID == s.SpanID {
			roots = append(roots, s)
			continue
		}
		children[s.ParentID] = append(children[s.ParentID], s)
	}
	byStart := func(a, b v1.Span) int { return a.Start.Compare(b.Start) }
	slices.SortStableFunc(roots, byStart)
	var rows []waterfallRow
	seen := map[string]bool{}
	var walk func(s v1.Span, depth int)
	walk = func(s v1.Span, depth int) {
		if seen[s.SpanID] {
			return // a cycle in bad data must not loop forever
		}
		seen[s.SpanID] = true
		r := waterfallRow{
			Name: s.Name, Kind: s.Kind, Depth: min(depth, maxDepth),
			Offset: s.Start.Sub(start), Duration: s.Duration(),
			Error: s.Status == "error" || s.Error != "", ErrorText: s.Error,
		}
		if total > 0 {
			r.X = 1000 * float64(r.Offset) / float64(total)
			r.W = max(1000*float64(r.Duration)/float64(total), 2)
			if r.X+r.W > 1000 {
				r.X = 1000 - r.W
			}
		} else {
			r.W = 1000
		}
		keys := make([]string, 0, len(s.Attributes))
		for k := range s.Attributes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			r.Attrs = append(r.Attrs, attr{k, s.Attributes[k]})
		}
		rows = append(rows, r)
		kids := children[s.SpanID]
		slices.SortStableFunc(kids, byStart)
		for _, c := range kids {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	return rows, total
}

// Bar is the row's bar as a small SVG stretched to its cell.
func (r waterfallRow) Bar() template.HTML {
	class := "ok"
	if r.Error {
		class = "err"
	}
	return template.HTML(fmt.Sprintf(`<svg class="bar" viewBox="0 0 1000 14" preserveAspectRatio="none" aria-hidden="true"><rect class="%s" x="%.1f" y="1" width="%.1f" height="12"/></svg>`, class, r.X, r.W))
}

// humanDuration writes d short, at a precision that suits it.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return d.String()
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)), "0"), ".") + "ms"
	case d < time.Minute:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", d.Seconds()), "0"), ".") + "s"
	}
	return d.Round(time.Second).String()
}
