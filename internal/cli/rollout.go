package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
)

func newRolloutCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout status|history|undo|promote|abort [service/|function/]NAME",
		Short: "Watch, list and undo the rollouts of a service or function",
		Long: "Watch, list and undo rollouts. NAME alone is a service; name a function as\n" +
			"function/NAME (or fn/NAME), as kubectl names a deployment.",
		Args: noArgs,
		RunE: showHelp,
	}
	cmd.AddCommand(newRolloutStatusCommand(o), newRolloutHistoryCommand(o), newRolloutUndoCommand(o),
		newCanaryActionCommand(o, "promote", "Promote a canary in progress at once, skipping its remaining steps"),
		newCanaryActionCommand(o, "abort", "Roll a canary in progress back to its stable revision"))
	return cmd
}

// workloadArg reads a rollout's target: "NAME" (a service), or
// "KIND/NAME" with KIND a service or function in any of its spellings.
func workloadArg(cmd *cobra.Command, arg string) (kindInfo, string, error) {
	svc, _ := resolveKind(nil, v1.KindService)
	kindName, name, ok := strings.Cut(arg, "/")
	if !ok {
		return svc, arg, nil
	}
	k, err := resolveKind(cmd, kindName)
	if err != nil {
		return kindInfo{}, "", err
	}
	if k.Kind != v1.KindService && k.Kind != v1.KindFunction {
		return kindInfo{}, "", usageErrorf(cmd, "%s have no rollouts; only services and functions do", k.Plural)
	}
	if name == "" {
		return kindInfo{}, "", usageErrorf(cmd, "missing the name after %q", kindName+"/")
	}
	return k, name, nil
}

func newRolloutStatusCommand(o *options) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status [service/|function/]NAME",
		Short: "Wait until a service's latest rollout is done, or a function is ready",
		Long: "Wait until the service's controller has seen its latest spec and every desired replica\n" +
			"runs the current revision and is ready; for function/NAME, until its controller has seen\n" +
			"its latest spec and its minimum instances (scale.min) are ready. Exits 8 if --timeout\n" +
			"passes first.",
		Args: exactArgs(1, "the service name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := workloadArg(cmd, args[0])
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := o.newWaiter(c, timeout).waitFor(cmd.Context(), k.Kind, o.env, name); err != nil {
				return err
			}
			fmt.Fprintf(o.out, "%s %q successfully rolled out\n", k.lower(), name)
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait (0: forever)")
	return cmd
}

func newRolloutHistoryCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "history [service/|function/]NAME",
		Short: "List the revisions of a service or function, oldest first",
		Args:  exactArgs(1, "the service name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			k, name, err := workloadArg(cmd, args[0])
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			var current struct {
				Status struct {
					Revision int64 `json:"revision"`
				} `json:"status"`
			}
			if err := c.Get(ctx, k.Kind, o.env, name, &current); err != nil {
				return err
			}
			revs, err := c.RevisionsOf(ctx, k.Kind, o.env, name)
			if err != nil {
				return err
			}
			now := o.now()
			var rows [][]string
			for _, r := range revs {
				num := strconv.FormatInt(r.Spec.Number, 10)
				if r.Spec.Number == current.Status.Revision {
					num += " (current)"
				}
				digest := shortDigest(r.Spec.ImageDigest)
				if o.output == "wide" {
					digest = r.Spec.ImageDigest
				}
				rows = append(rows, []string{num, orNone(r.Spec.ChangeCause), r.Spec.Image, orNone(digest), age(now, r.Metadata.CreationTimestamp)})
			}
			fmt.Fprintf(o.out, "%s/%s\n", k.lower(), name)
			return printTable(o.out, []string{"REVISION", "CHANGE-CAUSE", "IMAGE", "DIGEST", "AGE"}, rows)
		},
	}
}

func newRolloutUndoCommand(o *options) *cobra.Command {
	var to int64
	cmd := &cobra.Command{
		Use:   "undo [service/|function/]NAME [--to-revision N]",
		Short: "Roll a service or function back to its previous revision, or to revision N",
		Args:  exactArgs(1, "the service name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to < 0 {
				return usageErrorf(cmd, "--to-revision must be a revision number")
			}
			k, name, err := workloadArg(cmd, args[0])
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.RollbackOf(cmd.Context(), k.Kind, o.env, name, to, nil); err != nil {
				return err
			}
			if to > 0 {
				fmt.Fprintf(o.out, "%s/%s rolled back to revision %d\n", k.lower(), name, to)
			} else {
				fmt.Fprintf(o.out, "%s/%s rolled back\n", k.lower(), name)
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&to, "to-revision", 0, "revision to roll back to (0: the previous one)")
	return cmd
}

func newCanaryActionCommand(o *options, action, short string) *cobra.Command {
	return &cobra.Command{
		Use:   action + " [service/|function/]NAME",
		Short: short,
		Args:  exactArgs(1, "the service name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := workloadArg(cmd, args[0])
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.Canary(cmd.Context(), k.Kind, o.env, name, action); err != nil {
				return err
			}
			done := "promoted"
			if action == "abort" {
				done = "aborted: all traffic back to the stable revision"
			}
			fmt.Fprintf(o.out, "%s/%s canary %s\n", k.lower(), name, done)
			return nil
		},
	}
}
