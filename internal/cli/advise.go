package cli

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
)

// chartWidth is how many columns a chart's sparklines take.
const chartWidth = 60

// adviseFlags are the settings the other way is replayed with.
type adviseFlags struct {
	since               string
	prices              string
	chart               bool
	concurrency, min    int32
	max, replicas       int32
	idleTimeout, maxP99 time.Duration
}

func newAdviseCommand(o *options) *cobra.Command {
	var f adviseFlags
	cmd := &cobra.Command{
		Use:   "advise [NAME]",
		Short: "Say whether each workload is best run as a Service or a Function, from its measured traffic",
		Long: "Replay each Service's and Function's recorded minute-by-minute traffic through a model of\n" +
			"the other way of running it (Berth's own autoscaler for a Function: stable and panic\n" +
			"windows, idle timeout, concurrency, min/max, the cold start measured for its image; fixed\n" +
			"replicas for a Service), and compare: instance-hours, memory-GB-seconds, cold starts and\n" +
			"the latency they add, requests that would wait or be refused, and the money both ways at\n" +
			"a price sheet (default: AWS Lambda and Fargate list prices; --prices FILE for your own).\n" +
			"Each answer ends with a recommendation, its reason and what would change it.\n" +
			"Advice changes nothing: `berth convert` switches a workload.",
		Example: "  berth advise\n  berth advise orders -e prod --since 30d\n  berth advise orders --chart\n" +
			"  berth advise orders --concurrency 8 --prices prices.yaml -o json",
		Args: rangeArgs(0, 1, "the workload name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := f.query(cmd)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if len(args) == 0 {
				if f.chart {
					return usageErrorf(cmd, "--chart draws one workload: name it")
				}
				l, err := c.AdviceList(ctx, o.env, q)
				if err != nil {
					return err
				}
				if o.output == "json" || o.output == "yaml" {
					return printValue(o.out, o.output, l)
				}
				printAdviceList(o.out, l)
				return nil
			}
			if f.chart {
				q.Points = chartWidth
			}
			a, err := c.Advice(ctx, o.env, args[0], q)
			if err != nil {
				return err
			}
			if o.output == "json" || o.output == "yaml" {
				return printValue(o.out, o.output, a)
			}
			printAdvice(o.out, a)
			if f.chart && a.Series != nil {
				fmt.Fprintln(o.out)
				printChart(o.out, a)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.since, "since", "7d", "how far back to replay: 7d, 36h, 90m (at most the history kept, 30d by default)")
	fl.StringVar(&f.prices, "prices", "", "YAML price sheet to use instead of the server's")
	fl.BoolVar(&f.chart, "chart", false, "draw traffic and instances over time, both ways")
	fl.Int32Var(&f.concurrency, "concurrency", 0, "replay the Function way at this per-instance concurrency")
	fl.Int32Var(&f.min, "min", -1, "replay the Function way with this many instances kept warm")
	fl.Int32Var(&f.max, "max", 0, "replay the Function way with at most this many instances")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 0, "replay the Function way with this idle timeout")
	fl.Int32Var(&f.replicas, "replicas", 0, "replay the Service way with this many replicas (default: sized for the peak)")
	fl.DurationVar(&f.maxP99, "max-added-p99", 0, "latency a Function may add at p99 before it is ruled out (default 1s)")
	return cmd
}

func (f adviseFlags) query(cmd *cobra.Command) (v1.AdviceQuery, error) {
	var q v1.AdviceQuery
	var err error
	if q.Since, err = v1.ParseSince(f.since); err != nil {
		return q, usageErrorf(cmd, "--since: %v", err)
	}
	if f.prices != "" {
		b, err := os.ReadFile(f.prices)
		if err != nil {
			return q, usageErrorf(cmd, "--prices: %v", err)
		}
		s, err := v1.ParsePriceSheet(b)
		if err != nil {
			return q, fmt.Errorf("%s: %w", f.prices, err)
		}
		q.Prices = &s
	}
	set := func(name string, v int32, lowest int32, dst **int32) error {
		if !cmd.Flags().Changed(name) {
			return nil
		}
		if v < lowest {
			return usageErrorf(cmd, "--%s must be %d or more", name, lowest)
		}
		*dst = &v
		return nil
	}
	for _, e := range []error{
		set("concurrency", f.concurrency, 1, &q.Concurrency),
		set("min", f.min, 0, &q.Min),
		set("max", f.max, 1, &q.Max),
		set("replicas", f.replicas, 1, &q.Replicas),
	} {
		if e != nil {
			return q, e
		}
	}
	if cmd.Flags().Changed("idle-timeout") && f.idleTimeout <= 0 {
		return q, usageErrorf(cmd, "--idle-timeout must be positive")
	}
	q.IdleTimeout, q.MaxAddedP99 = f.idleTimeout, f.maxP99
	return q, nil
}

func printAdviceList(w io.Writer, l *v1.AdviceList) {
	if len(l.Items) == 0 && len(l.Skipped) == 0 {
		fmt.Fprintln(w, "No Services or Functions in this environment.")
		return
	}
	if len(l.Items) > 0 {
		t := newTable(w)
		row(t, "NAME", "RUNS AS", "REQUESTS/DAY", "IDLE", "NOW/DAY", "OTHER WAY/DAY", "ADVICE")
		for _, a := range l.Items {
			advice := "keep it a " + a.RunsAs
			if a.Switch {
				advice = "→ " + a.Recommend
			}
			row(t, a.Name, a.RunsAs, count(a.Traffic.RequestsPerDay), percent(a.Traffic.IdleShare),
				money(a.Current.CostPerDay, l.Prices.Currency), money(a.Other.CostPerDay, l.Prices.Currency), advice)
		}
		t.Flush()
		fmt.Fprintln(w)
		for _, a := range l.Items {
			fmt.Fprintf(w, "%s: %s.\n", a.Name, a.Reason)
		}
	}
	if len(l.Skipped) > 0 {
		if len(l.Items) > 0 {
			fmt.Fprintln(w)
		}
		for _, s := range l.Skipped {
			fmt.Fprintf(w, "%s: no advice yet: %s.\n", s.Name, s.Reason)
		}
	}
	fmt.Fprintf(w, "\nOver the last %s at %s (%s).\n", v1.FormatSince(l.Since), l.Prices.Name, l.Prices.Date)
}

func printAdvice(w io.Writer, a *v1.Advice) {
	cur := a.Prices.Currency
	fmt.Fprintf(w, "%s/%s in environment %s: %s of history, %s → %s UTC\n\n", strings.ToLower(a.RunsAs), a.Name, a.Environment,
		recorded(a.Minutes), a.From.Format("2006-01-02 15:04"), a.To.Format("2006-01-02 15:04"))
	tr := a.Traffic
	fmt.Fprintf(w, "Traffic: %s requests a day, idle %s of the time, %.2f in flight on average (peak %d),\n",
		count(tr.RequestsPerDay), percent(tr.IdleShare), tr.MeanInFlight, tr.PeakInFlight)
	fmt.Fprintf(w, "         %s at p50, %s at p99 (mean %s), %d errors; an instance used %.0fm CPU and %.0f MiB on average.\n\n",
		msWords(tr.DurationP50MS), msWords(tr.DurationP99MS), msWords(tr.MeanDurationMS), tr.Errors, tr.CPUMillicores, tr.MemoryMiB)

	ways := []v1.AdviceWay{a.Current, a.Other}
	head := []string{"", "NOW: " + strings.ToUpper(a.Current.Kind) + " (measured)", "AS A " + strings.ToUpper(a.Other.Kind) + " (replayed)"}
	if a.Model != nil {
		ways = append(ways, *a.Model)
		head = append(head, "MODEL OF NOW")
	}
	t := newTable(w)
	row(t, head...)
	line := func(label string, f func(v1.AdviceWay) string) {
		cells := []string{label}
		for _, x := range ways {
			cells = append(cells, f(x))
		}
		row(t, cells...)
	}
	line("settings", func(x v1.AdviceWay) string { return x.Settings })
	line("instance size", func(x v1.AdviceWay) string { return x.CPU + " CPU, " + x.Memory })
	line("instance-hours a day", func(x v1.AdviceWay) string {
		return fmt.Sprintf("%.1f (mean %.2f, max %d)", x.InstanceHoursPerDay, x.MeanInstances, x.MaxInstances)
	})
	line("memory GB-seconds", func(x v1.AdviceWay) string { return count(x.MemoryGBSeconds) })
	line("cold starts a day", func(x v1.AdviceWay) string { return count(x.ColdStartsPerDay) })
	line("added latency p50 / p99", func(x v1.AdviceWay) string {
		return msWords(x.AddedLatencyP50MS) + " / " + msWords(x.AddedLatencyP99MS)
	})
	line("waited / refused", func(x v1.AdviceWay) string {
		if x.Measured {
			return "not measured"
		}
		return count(x.Waited) + " / " + count(x.Shed)
	})
	line("cost a day", func(x v1.AdviceWay) string { return money(x.CostPerDay, cur) })
	t.Flush()
	fmt.Fprintf(w, "\nCold start: %s (%s).\n", msWords(a.ColdStart.MS), a.ColdStart.Source)
	fmt.Fprintf(w, "Prices: %s (%s).\n", a.Prices.Name, a.Prices.Date)
	if len(a.Alternatives) > 0 {
		fmt.Fprintln(w, "\nThe Function way with one setting changed:")
		t := newTable(w)
		row(t, "  SETTING", "INSTANCE-HOURS/DAY", "COLD STARTS/DAY", "WAITED / REFUSED", "COST/DAY", "ADVICE")
		for _, alt := range a.Alternatives {
			row(t, "  "+alt.Setting, fmt.Sprintf("%.1f", alt.Way.InstanceHoursPerDay), count(alt.Way.ColdStartsPerDay),
				count(alt.Way.Waited)+" / "+count(alt.Way.Shed), money(alt.Way.CostPerDay, cur), alt.Recommend)
		}
		t.Flush()
	}
	fmt.Fprintf(w, "\nAdvice: %s.\n", a.Reason)
	if a.WouldChange != "" {
		fmt.Fprintf(w, "What would change it: %s\n", a.WouldChange)
	}
	if a.Switch {
		fmt.Fprintf(w, "To switch: %s\n", a.Convert)
	}
}

// sparks are the eight heights of a sparkline.
var sparks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws vs scaled to top (values above it are drawn full); a
// bucket the history does not cover is a space.
func sparkline(vs, recorded []float64, top float64) string {
	var b strings.Builder
	for i, v := range vs {
		switch {
		case recorded[i] == 0:
			b.WriteRune(' ')
		case top <= 0 || v <= 0:
			b.WriteRune(sparks[0])
		default:
			k := int(math.Ceil(v/top*float64(len(sparks)))) - 1
			b.WriteRune(sparks[min(max(k, 0), len(sparks)-1)])
		}
	}
	return b.String()
}

func printChart(w io.Writer, a *v1.Advice) {
	s := a.Series
	top := func(vs ...[]float64) float64 {
		m := 0.0
		for _, v := range vs {
			for _, x := range v {
				m = max(m, x)
			}
		}
		return m
	}
	req := top(s.Requests)
	inst := top(s.Current, s.Other)
	fmt.Fprintf(w, "%-18s %s  max %s\n", "requests / "+humanDuration(s.Step), sparkline(s.Requests, s.Recorded, req), count(req))
	fmt.Fprintf(w, "%-18s %s  max %.1f instances\n", strings.ToLower(a.Current.Kind)+" (now)", sparkline(s.Current, s.Recorded, inst), top(s.Current))
	fmt.Fprintf(w, "%-18s %s  max %.1f instances\n", "as a "+strings.ToLower(a.Other.Kind), sparkline(s.Other, s.Recorded, inst), top(s.Other))
	end := s.Start.Add(time.Duration(len(s.Requests)) * s.Step)
	from, to := s.Start.Format("01-02 15:04"), end.Format("01-02 15:04")
	pad := max(1, len(s.Requests)-len(from)-len(to))
	fmt.Fprintf(w, "%-18s %s%s%s UTC\n", "", from, strings.Repeat(" ", pad), to)
	fmt.Fprintln(w, "(the instance lines share one scale; a blank column is time without history)")
}

func recorded(minutes int) string {
	d := time.Duration(minutes) * time.Minute
	if d >= 48*time.Hour {
		return fmt.Sprintf("%.1f days", d.Hours()/24)
	}
	return humanDuration(d)
}

func percent(x float64) string {
	switch {
	case x > 0 && x < 0.01:
		return "<1 %"
	case x < 1 && x > 0.99:
		return ">99 %"
	}
	return fmt.Sprintf("%.0f %%", x*100)
}

func count(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.1f M", x/1e6)
	case x >= 1e4:
		return fmt.Sprintf("%.0f k", x/1e3)
	case x >= 1e3:
		return fmt.Sprintf("%.1f k", x/1e3)
	case x >= 10 || x == 0:
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.1f", x)
}

func msWords(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.1f s", v/1000)
	case v >= 10 || v == 0:
		return fmt.Sprintf("%.0f ms", v)
	}
	return fmt.Sprintf("%.1f ms", v)
}

func money(x float64, currency string) string {
	sym := currency + " "
	if currency == "USD" || currency == "" {
		sym = "$"
	}
	switch {
	case x >= 100:
		return fmt.Sprintf("%s%.0f", sym, x)
	case x >= 0.01:
		return fmt.Sprintf("%s%.2f", sym, x)
	case x == 0:
		return sym + "0"
	}
	// Two significant digits of a small amount: $0.000029, not $0.0000.
	return fmt.Sprintf("%s%.*f", sym, int(math.Ceil(-math.Log10(x)))+1, x)
}
