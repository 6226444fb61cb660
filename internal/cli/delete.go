package cli

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/spf13/cobra"
)

func newDeleteCommand(o *options) *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "delete KIND NAME | delete -f FILE|DIR|-",
		Short: "Delete objects by kind and name, or those a manifest names",
		Long: "Delete an object, or every object in manifests. Deleting a service drains and stops\n" +
			"its instances and removes its revisions. Environments named in manifests are deleted last.",
		Example: "  berth delete service web\n  berth delete -f examples/shop/",
		Args:    rangeArgs(0, 2, "the kind", "the name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(files) > 0 {
				if len(args) > 0 {
					return usageErrorf(cmd, "give either -f or KIND NAME, not both")
				}
				ms, err := readManifests(files, cmd.InOrStdin(), o.env, cmd.Flags().Changed("environment"))
				if err != nil {
					return err
				}
				return o.deleteManifests(cmd, ms)
			}
			k, name, err := kindAndName(cmd, args)
			if err != nil {
				return err
			}
			if name == "" {
				return usageErrorf(cmd, "missing the name")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.Delete(cmd.Context(), k.Kind, o.env, name); err != nil {
				return err
			}
			fmt.Fprintf(o.out, "%s %q deleted\n", k.lower(), name)
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file, directory, or - for stdin (repeatable)")
	return cmd
}

// deleteManifests deletes in the reverse of apply's order: workloads
// before the topics they name, and those before the environments they
// live in.
func (o *options) deleteManifests(cmd *cobra.Command, ms []manifest) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ordered := slices.Clone(ms)
	slices.SortStableFunc(ordered, func(a, b manifest) int {
		return cmp.Compare(applyRank(b.obj.GetTypeMeta().Kind), applyRank(a.obj.GetTypeMeta().Kind))
	})
	var errs manifestErrors
	for _, m := range ordered {
		meta := m.obj.GetMetadata()
		if err := c.Delete(cmd.Context(), m.obj.GetTypeMeta().Kind, meta.Environment, meta.Name); err != nil {
			if cmd.Context().Err() != nil {
				return err
			}
			errs = append(errs, fmt.Errorf("%s: %w", m.ref(), err))
			continue
		}
		fmt.Fprintf(o.out, "%s deleted\n", m.ref())
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}
