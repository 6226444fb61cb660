package cli

import (
	"fmt"
	"os/exec"
	"time"

	"github.com/spf13/cobra"
)

func newDashboardCommand(o *options) *cobra.Command {
	var open bool
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Print a login link to the web dashboard",
		Long: "Print a link that logs a browser into the web dashboard (served at /ui/ on the\n" +
			"API address) as this CLI's token. The link works once, for two minutes; the\n" +
			"token is not in it. With --open, the link is also handed to xdg-open.",
		Example: "  berth dashboard\n  berth dashboard --open\n  BERTH_TOKEN=$VIEWER_TOKEN berth dashboard",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			url, link, err := c.DashboardLink(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(o.out, url)
			fmt.Fprintf(o.errOut, "one use, until %s; the dashboard itself is at %s/ui/\n",
				link.Expires.Local().Format(time.TimeOnly), c.Addr())
			if open {
				if path, err := exec.LookPath("xdg-open"); err == nil {
					return exec.CommandContext(cmd.Context(), path, url).Start()
				}
				fmt.Fprintln(o.errOut, "no xdg-open here: open the link above in a browser")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&open, "open", false, "also open the link with xdg-open")
	return cmd
}
