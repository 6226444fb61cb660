package cli

import (
	"context"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
)

func newLogsCommand(o *options) *cobra.Command {
	var opts client.LogOptions
	var kind string
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a service's or function's logs",
		Long: "Print the logs of the instances of a Service or Function, merged in time order,\n" +
			"each line prefixed with [INSTANCE] unless --instance names one. Logs are kept\n" +
			"after instances stop (see docs/observability.md for retention).\n\n" +
			"NAME is looked up as a Service, then as a Function; --kind says which.",
		Example: "  berth logs web -f\n  berth logs web --since 5m --tail 100\n" +
			"  berth logs resize --grep 'error|panic' --since 2026-11-28T08:00:00Z --until 1h\n" +
			"  berth logs web --revision 3\n  berth logs web --instance web-x7k2p --timestamps",
		Args: exactArgs(1, "the service or function name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range []struct{ flag, value string }{{"since", opts.Since}, {"until", opts.Until}} {
				if err := checkLogTime(f.flag, f.value); err != nil {
					return err
				}
			}
			if opts.Until != "" && opts.Follow {
				return v1.FieldError("until", "--until cannot be combined with -f: a followed log has no end")
			}
			if opts.Grep != "" {
				if _, err := regexp.Compile(opts.Grep); err != nil {
					return v1.FieldError("grep", "--grep %q is not a regular expression: %v", opts.Grep, err)
				}
			}
			if opts.Revision < 0 {
				return v1.FieldError("revision", "--revision %d is not a revision number", opts.Revision)
			}
			if opts.Tail < -1 {
				return usageErrorf(cmd, "--tail must be -1 (all) or more")
			}
			kinds, err := logKinds(kind)
			if err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			ctx := cmd.Context()
			c, err := o.client()
			if err != nil {
				return err
			}
			rc, err := workloadLogs(ctx, c, o.env, args[0], kinds, opts)
			if err != nil {
				return err
			}
			defer rc.Close()
			if _, err := io.Copy(o.out, rc); err != nil && !interrupted(ctx, err) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&opts.Follow, "follow", "f", false, "keep streaming new lines")
	f.StringVar(&opts.Since, "since", "", "only lines newer than a duration (5m) or an RFC 3339 time")
	f.StringVar(&opts.Until, "until", "", "only lines older than a duration (1h: an hour ago) or an RFC 3339 time")
	f.IntVar(&opts.Tail, "tail", -1, "only the last N lines (-1: all)")
	f.StringVar(&opts.Instance, "instance", "", "only this instance's lines")
	f.Int64Var(&opts.Revision, "revision", 0, "only the lines of instances of this revision, gone ones included")
	f.StringVar(&opts.Grep, "grep", "", "only lines matching this regular expression (Go syntax), filtered by the server")
	f.BoolVar(&opts.Timestamps, "timestamps", false, "prefix each line with its time")
	f.StringVar(&kind, "kind", "", "service or function (default: a service by that name, else a function)")
	return cmd
}

// checkLogTime accepts what the server accepts: a duration or RFC 3339.
// A bad value is Invalid (exit 3) naming the flag.
func checkLogTime(flag, value string) error {
	if value == "" {
		return nil
	}
	if d, err := time.ParseDuration(value); err == nil && d >= 0 {
		return nil
	}
	if _, err := time.Parse(time.RFC3339Nano, value); err == nil {
		return nil
	}
	return v1.FieldError(flag, "--%s %q is neither a duration (5m, 1h) nor an RFC 3339 time", flag, value)
}

func logKinds(kind string) ([]string, error) {
	switch strings.ToLower(kind) {
	case "":
		return []string{v1.KindService, v1.KindFunction}, nil
	case "service", "services", "svc":
		return []string{v1.KindService}, nil
	case "function", "functions", "fn":
		return []string{v1.KindFunction}, nil
	}
	return nil, v1.FieldError("kind", "--kind %q: use service or function", kind)
}

// workloadLogs asks for the logs of name as each kind in turn; only a
// NotFound moves on to the next. Logs are stored by name, so the first
// kind that answers reads them.
func workloadLogs(ctx context.Context, c *client.Client, env, name string, kinds []string, opts client.LogOptions) (io.ReadCloser, error) {
	var err error
	for _, k := range kinds {
		var rc io.ReadCloser
		rc, err = c.WorkloadLogs(ctx, env, k, name, opts)
		if err == nil || !v1.IsNotFound(err) {
			return rc, err
		}
	}
	if len(kinds) > 1 {
		return nil, v1.NotFound("no service or function %q in environment %q, and no logs by that name", name, env)
	}
	return nil, err
}
