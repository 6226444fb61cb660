package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
)

func newTrafficCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "traffic [service/|function/]NAME [REVISION=PERCENT[:TAG]...]",
		Short: "Show or change how a service's or function's requests are split between revisions",
		Long: "Without assignments, show the split. With them, replace spec.traffic: REVISION is a\n" +
			"revision number or \"latest\", PERCENT its share (the shares sum to 100), and TAG, when\n" +
			"given, serves that revision at TAG-NAME.ENV.berth.localhost whatever its share:\n\n" +
			"  berth traffic web 2=90 3=10\n" +
			"  berth traffic web 2=100 latest=0:next\n" +
			"  berth traffic web latest=100\n\n" +
			"No new revision is made. NAME alone is a service, or else a function.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf(cmd, "missing the name")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			traffic, err := parseTraffic(cmd, args[1:])
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			// A write races other writers: it is sent with the
			// resourceVersion it read, and read again on a conflict.
			for attempt := 0; ; attempt++ {
				obj, err := loadWorkload(ctx, c, cmd, args[0], o.env)
				if err != nil {
					return err
				}
				if traffic == nil {
					return o.printTraffic(obj)
				}
				switch w := obj.(type) {
				case *v1.Service:
					w.Spec.Traffic = traffic
				case *v1.Function:
					w.Spec.Traffic = traffic
				}
				_, _, err = c.Apply(ctx, obj, false)
				if v1.IsConflict(err) && attempt < 3 {
					continue
				}
				if err != nil {
					return err
				}
				parts := make([]string, len(traffic))
				for i, t := range traffic {
					parts[i] = t.String()
				}
				fmt.Fprintf(o.out, "%s/%s traffic: %s\n", strings.ToLower(obj.GetTypeMeta().Kind), obj.GetMetadata().Name, strings.Join(parts, " "))
				return nil
			}
		},
	}
}

// parseTraffic reads REVISION=PERCENT[:TAG] assignments; nil when none.
func parseTraffic(cmd *cobra.Command, args []string) ([]v1.TrafficTarget, error) {
	var out []v1.TrafficTarget
	for _, a := range args {
		rev, rest, ok := strings.Cut(a, "=")
		pct, tag, _ := strings.Cut(rest, ":")
		p, err := strconv.ParseInt(pct, 10, 32)
		if !ok || err != nil {
			return nil, usageErrorf(cmd, "%q: want REVISION=PERCENT[:TAG], for example 2=90 or latest=10:canary", a)
		}
		t := v1.TrafficTarget{Percent: int32(p), Tag: tag}
		if rev == "latest" {
			t.LatestRevision = true
		} else if t.Revision, err = strconv.ParseInt(rev, 10, 64); err != nil || t.Revision < 1 {
			return nil, usageErrorf(cmd, "%q: the revision is a number (1 or more) or \"latest\"", a)
		}
		out = append(out, t)
	}
	return out, nil
}

// loadWorkload reads [KIND/]NAME: a service or function; NAME alone is
// a service if there is one, else a function.
func loadWorkload(ctx context.Context, c *client.Client, cmd *cobra.Command, arg, env string) (v1.Object, error) {
	kinds := []string{v1.KindService, v1.KindFunction}
	name := arg
	if strings.Contains(arg, "/") {
		k, n, err := workloadArg(cmd, arg)
		if err != nil {
			return nil, err
		}
		kinds, name = []string{k.Kind}, n
	}
	var err error
	for _, kind := range kinds {
		var obj v1.Object = &v1.Service{}
		if kind == v1.KindFunction {
			obj = &v1.Function{}
		}
		if err = c.Get(ctx, kind, env, name, obj); err == nil {
			return obj, nil
		}
		if !v1.IsNotFound(err) {
			return nil, err
		}
	}
	if len(kinds) > 1 {
		return nil, v1.NotFound("no service or function %q in environment %q", name, env)
	}
	return nil, err
}

func (o *options) printTraffic(obj v1.Object) error {
	var spec, status []v1.TrafficTarget
	var latest int64
	switch w := obj.(type) {
	case *v1.Service:
		spec, status, latest = w.Spec.Traffic, w.Status.Traffic, w.Status.Revision
	case *v1.Function:
		spec, status, latest = w.Spec.Traffic, w.Status.Traffic, w.Status.Revision
	}
	if len(status) == 0 {
		status = v1.ResolveTraffic(spec, latest)
	}
	return printTable(o.out, []string{"REVISION", "PERCENT", "TAG"}, trafficRows(status, latest, obj.GetMetadata()))
}

func trafficRows(traffic []v1.TrafficTarget, latest int64, meta *v1.ObjectMeta) [][]string {
	var rows [][]string
	for _, t := range traffic {
		rev := strconv.FormatInt(t.Revision, 10)
		if t.Revision == latest {
			rev += " (latest)"
		}
		tag := "<none>"
		if t.Tag != "" {
			tag = t.Tag + " (" + v1.TagHost(t.Tag, meta.Name) + "." + meta.Environment + ")"
		}
		rows = append(rows, []string{rev, strconv.Itoa(int(t.Percent)) + "%", tag})
	}
	return rows
}
