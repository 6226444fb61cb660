package cli

import (
	"io"
	"time"

	"github.com/spf13/cobra"

	"berth.dev/berth/client"
)

func newLogsCommand(o *options) *cobra.Command {
	var opts client.LogOptions
	cmd := &cobra.Command{
		Use:   "logs SERVICE",
		Short: "Print a service's logs",
		Long: "Print the logs of a service's instances, each line prefixed with [INSTANCE]\n" +
			"unless --instance names one. Logs are kept after instances stop.",
		Example: "  berth logs web -f\n  berth logs web --since 5m --tail 100\n  berth logs web --instance web-3-x7k2p --timestamps",
		Args:    exactArgs(1, "the service name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Since != "" {
				if _, err := time.ParseDuration(opts.Since); err != nil {
					if _, err := time.Parse(time.RFC3339, opts.Since); err != nil {
						return usageErrorf(cmd, "--since %q is neither a duration (5m, 1h) nor an RFC 3339 time", opts.Since)
					}
				}
			}
			if opts.Tail < -1 {
				return usageErrorf(cmd, "--tail must be -1 (all) or more")
			}
			ctx := cmd.Context()
			c, err := o.client()
			if err != nil {
				return err
			}
			rc, err := c.Logs(ctx, o.env, args[0], opts)
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
	f.IntVar(&opts.Tail, "tail", -1, "only the last N lines (-1: all)")
	f.StringVar(&opts.Instance, "instance", "", "only this instance's lines")
	f.BoolVar(&opts.Timestamps, "timestamps", false, "prefix each line with its time")
	return cmd
}
