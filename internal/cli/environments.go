package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
)

func newEnvCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "env",
		Aliases: []string{"environment"},
		Short:   "Create, list and delete environments",
		Args:    noArgs,
		RunE:    showHelp,
	}
	cmd.AddCommand(newEnvCreateCommand(o), newEnvListCommand(o), newEnvDeleteCommand(o))
	return cmd
}

func newEnvCreateCommand(o *options) *cobra.Command {
	var allowFrom []string
	var cpu, memory string
	create := &cobra.Command{
		Use:     "create NAME [--allow-from ENV,...] [--cpu N --memory Q]",
		Short:   "Create an environment; it fails if one of that name exists",
		Example: "  berth env create staging --allow-from dev\n  berth env create prod --cpu 8 --memory 16Gi",
		Args:    exactArgs(1, "the environment name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			env := &v1.Environment{Metadata: v1.ObjectMeta{Name: args[0]}, Spec: v1.EnvironmentSpec{AllowFrom: allowFrom}}
			if cpu != "" || memory != "" {
				env.Spec.Quota = &v1.Quota{CPU: cpu, Memory: memory}
			}
			return o.createEnvironment(cmd, env)
		},
	}
	create.Flags().StringSliceVar(&allowFrom, "allow-from", nil, "environments whose workloads may call into this one")
	create.Flags().StringVar(&cpu, "cpu", "", "quota: total CPU of the environment's workloads at max scale")
	create.Flags().StringVar(&memory, "memory", "", "quota: total memory of the environment's workloads at max scale")
	return create
}

// createEnvironment creates env, refusing to change one that exists: that
// is what apply is for.
func (o *options) createEnvironment(cmd *cobra.Command, env *v1.Environment) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	name := env.Metadata.Name
	var cur v1.Environment
	err = c.Get(cmd.Context(), v1.KindEnvironment, "", name, &cur)
	if err == nil {
		return v1.Conflict("environment %q already exists; change it with `berth apply -f` of an Environment manifest", name)
	}
	if !v1.IsNotFound(err) {
		return err
	}
	v1.SetDefaults(env)
	env.Metadata.Environment = ""
	if err := v1.Validate(env); err != nil {
		return err
	}
	if _, _, err := c.Apply(cmd.Context(), env, false); err != nil {
		return err
	}
	fmt.Fprintf(o.out, "environment %q created\n", name)
	return nil
}

func newEnvListCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List environments",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.listEnvironments(cmd)
		},
	}
}

func (o *options) listEnvironments(cmd *cobra.Command) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	items, err := c.List(cmd.Context(), v1.KindEnvironment, "")
	if err != nil {
		return err
	}
	if o.output == "json" || o.output == "yaml" {
		b, err := listJSON(items)
		if err != nil {
			return err
		}
		return printRaw(o.out, o.output, b)
	}
	var rows [][]string
	for _, raw := range items {
		var e v1.Environment
		if err := json.Unmarshal(raw, &e); err != nil {
			return err
		}
		quota := "<none>"
		if q := e.Spec.Quota; q != nil {
			quota = fmt.Sprintf("cpu=%s memory=%s", orNone(q.CPU), orNone(q.Memory))
		}
		rows = append(rows, []string{e.Metadata.Name, orNone(e.Status.Subnet), orNone(strings.Join(e.Spec.AllowFrom, ",")), quota,
			age(o.now(), e.Metadata.CreationTimestamp)})
	}
	return printTable(o.out, []string{"NAME", "SUBNET", "ALLOW FROM", "QUOTA", "AGE"}, rows)
}

func newEnvDeleteCommand(o *options) *cobra.Command {
	var cascade bool
	del := &cobra.Command{
		Use:   "delete NAME [--cascade]",
		Short: "Delete an environment",
		Long: "Delete an environment. It is refused while the environment holds services, functions,\n" +
			"workflows, topics, secrets, configs or stacks, unless --cascade, which deletes them first.",
		Args: exactArgs(1, "the environment name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.DeleteEnvironment(cmd.Context(), args[0], cascade); err != nil {
				return err
			}
			fmt.Fprintf(o.out, "environment %q deleted\n", args[0])
			return nil
		},
	}
	del.Flags().BoolVar(&cascade, "cascade", false, "delete everything in the environment first")
	return del
}
