package cli

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
)

// waterfallWidth is the width of the bar column of `berth trace`.
const waterfallWidth = 40

func newTracesCommand(o *options) *cobra.Command {
	var (
		minDuration string
		errorsOnly  bool
		all         bool
		limit       int
	)
	cmd := &cobra.Command{
		Use:   "traces [NAME] [-e ENV | -A] [--min-duration 100ms] [--errors] [--limit N]",
		Short: "List recent request traces, newest first",
		Long: "List the traces the server keeps in its built-in store (the most recent ones; export\n" +
			"to an OpenTelemetry collector keeps the rest). NAME keeps traces that passed through\n" +
			"that Service or Function, also when it was called by another workload.\n" +
			"`berth trace ID` draws one of them.",
		Example: "  berth traces\n  berth traces orders --min-duration 250ms\n  berth traces -A --errors --limit 20",
		Args:    rangeArgs(0, 1, "the workload name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := client.TraceQuery{ErrorsOnly: errorsOnly, Limit: limit}
			if len(args) == 1 {
				q.Workload = args[0]
			}
			if !all {
				q.Environment = o.env
			}
			if minDuration != "" {
				d, err := time.ParseDuration(minDuration)
				if err != nil || d < 0 {
					return v1.FieldError("--min-duration", "%q is not a duration like 100ms or 2s", minDuration)
				}
				q.MinDuration = d
			}
			if limit < 0 {
				return v1.FieldError("--limit", "must not be negative, got %d", limit)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			sums, err := c.Traces(cmd.Context(), q)
			if err != nil {
				return err
			}
			switch o.output {
			case "json", "yaml":
				return printValue(o.out, o.output, sums)
			}
			if len(sums) == 0 {
				fmt.Fprintln(o.errOut, "No traces found.")
				return nil
			}
			printTraceTable(o.out, sums, o.now().Location())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&minDuration, "min-duration", "", "only traces that took at least this long (100ms, 2s)")
	f.BoolVar(&errorsOnly, "errors", false, "only traces with a failed span")
	f.BoolVarP(&all, "all-environments", "A", false, "traces of every environment")
	f.IntVar(&limit, "limit", 0, "at most this many traces (server default 100)")
	return cmd
}

func newTraceCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "trace ID",
		Short: "Draw one trace as a waterfall",
		Long: "Draw the spans of one trace: one line per span, indented under its parent, with a\n" +
			"bar placed and scaled on the trace's whole duration, the span's own duration, and\n" +
			"failed spans marked with their error. -o json prints the spans with their attributes.",
		Example: "  berth traces orders\n  berth trace 4bf92f3577b34da6a3ce929d0e0e4736",
		Args:    exactArgs(1, "the trace id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := strings.ToLower(args[0])
			if !validTraceID(id) {
				return v1.FieldError("id", "%q is not a trace id: 32 hex digits, as `berth traces` lists them", args[0])
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			t, err := c.Trace(cmd.Context(), id)
			if err != nil {
				return err
			}
			switch o.output {
			case "json", "yaml":
				return printValue(o.out, o.output, t)
			}
			printWaterfall(o.out, t)
			return nil
		},
	}
}

func validTraceID(id string) bool {
	b, err := hex.DecodeString(id)
	return err == nil && len(b) == 16 && id != strings.Repeat("0", 32)
}

func printValue(w io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return v1.Errorf(v1.ErrInternal, "render JSON: %v", err)
	}
	if format == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return v1.Errorf(v1.ErrInternal, "render YAML: %v", err)
		}
		_, err = w.Write(b)
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func printTraceTable(w io.Writer, sums []v1.TraceSummary, loc *time.Location) {
	tw := newTable(w)
	row(tw, "TRACE-ID", "WORKLOAD", "START", "DURATION", "SPANS", "STATUS")
	for _, s := range sums {
		status := "ok"
		if s.Error {
			status = "error"
		}
		workload := orNone(s.Workload)
		if s.Workload != "" && s.Environment != "" {
			workload = s.Workload + "." + s.Environment
		}
		row(tw, s.TraceID, workload, s.Start.In(loc).Format("2006-01-02 15:04:05.000"),
			spanDuration(s.Duration), strconv.Itoa(s.Spans), status)
	}
	tw.Flush()
}

// spanDuration renders a duration with three significant digits, the
// precision a waterfall needs ("850µs", "12.3ms", "1.25s").
func spanDuration(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d >= time.Minute:
		return d.Round(time.Second).String()
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Microsecond, "µs"}, {time.Millisecond, "ms"}} {
		// 999.7µs rounds to "1000µs": that is 1.00ms.
		if s := sig3(float64(d) / float64(u.unit)); s != "1000" && d < 1000*u.unit {
			return s + u.name
		}
	}
	return sig3(d.Seconds()) + "s"
}

func sig3(f float64) string {
	switch {
	case f >= 100:
		return strconv.FormatFloat(math.Round(f), 'f', 0, 64)
	case f >= 10:
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'f', 2, 64)
}

// printWaterfall draws t: spans depth first under their parents (a span
// whose parent is not in the trace is a root), each with a bar on the
// trace's time axis.
func printWaterfall(w io.Writer, t *v1.Trace) {
	if len(t.Spans) == 0 {
		fmt.Fprintf(w, "trace %s has no spans\n", t.TraceID)
		return
	}
	start, end := t.Spans[0].Start, t.Spans[0].End
	ids := map[string]bool{}
	errs := 0
	for _, s := range t.Spans {
		ids[s.SpanID] = true
		if s.Start.Before(start) {
			start = s.Start
		}
		if s.End.After(end) {
			end = s.End
		}
		if s.Status == "error" {
			errs++
		}
	}
	total := end.Sub(start)
	children := map[string][]v1.Span{}
	var roots []v1.Span
	for _, s := range t.Spans {
		if s.ParentID != "" && ids[s.ParentID] {
			children[s.ParentID] = append(children[s.ParentID], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(a, b v1.Span) int { return a.Start.Compare(b.Start) }
	type line struct {
		depth int
		span  v1.Span
	}
	var lines []line
	var walk func(s v1.Span, depth int)
	walk = func(s v1.Span, depth int) {
		lines = append(lines, line{depth, s})
		kids := children[s.SpanID]
		slices.SortStableFunc(kids, byStart)
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	slices.SortStableFunc(roots, byStart)
	for _, r := range roots {
		walk(r, 0)
	}

	head := fmt.Sprintf("trace %s · %s · %d spans", t.TraceID, spanDuration(total), len(t.Spans))
	if errs > 0 {
		head += fmt.Sprintf(" · %d failed", errs)
	}
	fmt.Fprintln(w, head)
	labels := make([]string, len(lines))
	width := 0
	for i, l := range lines {
		labels[i] = strings.Repeat("  ", l.depth) + spanLabel(l.span)
		width = max(width, len([]rune(labels[i])))
	}
	for i, l := range lines {
		s := l.span
		from, to := barRange(s.Start.Sub(start), s.End.Sub(start), total)
		bar := strings.Repeat(" ", from) + strings.Repeat("█", to-from) + strings.Repeat(" ", waterfallWidth-to)
		mark := ""
		if s.Status == "error" {
			mark = "  ✗ " + orNone(s.Error)
		}
		pad := strings.Repeat(" ", width-len([]rune(labels[i])))
		fmt.Fprintf(w, "%s%s  |%s| %8s%s\n", labels[i], pad, bar, spanDuration(s.End.Sub(s.Start)), mark)
	}
}

// spanLabel names a span with what tells its instances apart.
func spanLabel(s v1.Span) string {
	if ep := s.Attributes["berth.endpoint.id"]; ep != "" {
		return s.Name + " → " + ep
	}
	if o := s.Attributes["berth.cold_start.outcome"]; o != "" && o != "ready" {
		return s.Name + " (" + o + ")"
	}
	return s.Name
}

// barRange places a span on the bar axis: at least one cell, so that a
// very short span is still seen.
func barRange(from, to, total time.Duration) (int, int) {
	if total <= 0 {
		return 0, waterfallWidth
	}
	cell := func(d time.Duration) int {
		return int(math.Round(float64(d) / float64(total) * waterfallWidth))
	}
	a, b := min(max(cell(from), 0), waterfallWidth-1), min(cell(to), waterfallWidth)
	if b <= a {
		b = a + 1
	}
	return a, b
}
