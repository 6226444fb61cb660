package cli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
)

func newRolloutCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout status|history|undo SERVICE",
		Short: "Watch, list and undo a service's rollouts",
		Args:  noArgs,
		RunE:  showHelp,
	}
	cmd.AddCommand(newRolloutStatusCommand(o), newRolloutHistoryCommand(o), newRolloutUndoCommand(o))
	return cmd
}

func newRolloutStatusCommand(o *options) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status SERVICE",
		Short: "Wait until a service's latest rollout is done",
		Long: "Wait until the service's controller has seen its latest spec and every desired replica\n" +
			"runs the current revision and is ready. Exits 8 if --timeout passes first.",
		Args: exactArgs(1, "the service name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := o.newWaiter(c, timeout).wait(cmd.Context(), o.env, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(o.out, "service %q successfully rolled out\n", args[0])
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait (0: forever)")
	return cmd
}

func newRolloutHistoryCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "history SERVICE",
		Short: "List a service's revisions, oldest first",
		Args:  exactArgs(1, "the service name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := o.client()
			if err != nil {
				return err
			}
			var svc v1.Service
			if err := c.Get(ctx, v1.KindService, o.env, args[0], &svc); err != nil {
				return err
			}
			revs, err := c.Revisions(ctx, o.env, args[0])
			if err != nil {
				return err
			}
			now := o.now()
			var rows [][]string
			for _, r := range revs {
				num := strconv.FormatInt(r.Spec.Number, 10)
				if r.Spec.Number == svc.Status.Revision {
					num += " (current)"
				}
				digest := shortDigest(r.Spec.ImageDigest)
				if o.output == "wide" {
					digest = r.Spec.ImageDigest
				}
				rows = append(rows, []string{num, orNone(r.Spec.ChangeCause), r.Spec.Image, orNone(digest), age(now, r.Metadata.CreationTimestamp)})
			}
			fmt.Fprintf(o.out, "service/%s\n", args[0])
			return printTable(o.out, []string{"REVISION", "CHANGE-CAUSE", "IMAGE", "DIGEST", "AGE"}, rows)
		},
	}
}

func newRolloutUndoCommand(o *options) *cobra.Command {
	var to int64
	cmd := &cobra.Command{
		Use:   "undo SERVICE [--to-revision N]",
		Short: "Roll a service back to its previous revision, or to revision N",
		Args:  exactArgs(1, "the service name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to < 0 {
				return usageErrorf(cmd, "--to-revision must be a revision number")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			if _, err := c.Rollback(cmd.Context(), o.env, args[0], to); err != nil {
				return err
			}
			if to > 0 {
				fmt.Fprintf(o.out, "service/%s rolled back to revision %d\n", args[0], to)
			} else {
				fmt.Fprintf(o.out, "service/%s rolled back\n", args[0])
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&to, "to-revision", 0, "revision to roll back to (0: the previous one)")
	return cmd
}
