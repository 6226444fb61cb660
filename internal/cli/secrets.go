package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
)

// newValuesCommand builds `berth secret` and `berth config`: the same verbs
// over encrypted and plain values.
func newValuesCommand(o *options, kind string) *cobra.Command {
	noun := strings.ToLower(kind)
	cmd := &cobra.Command{
		Use:   noun,
		Short: map[string]string{v1.KindSecret: "Set, list and delete secrets (encrypted at rest, never shown)", v1.KindConfig: "Set, list and delete config values"}[kind],
		Args:  noArgs,
		RunE:  showHelp,
	}
	cmd.AddCommand(newValuesSetCommand(o, kind), newValuesListCommand(o, kind), newValuesDeleteCommand(o, kind))
	return cmd
}

func newValuesSetCommand(o *options, kind string) *cobra.Command {
	noun := strings.ToLower(kind)
	var fromFiles, remove []string
	var replace bool
	set := &cobra.Command{
		Use:   "set NAME KEY=VALUE... [--from-file KEY=PATH]...",
		Short: "Set keys of a " + noun + " (created if missing; other keys are kept)",
		Example: fmt.Sprintf("  berth %s set db password=hunter2 user=app -e dev\n  berth %s set tls --from-file cert=./tls.crt -e prod",
			noun, noun),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usageErrorf(cmd, "missing the %s name", noun)
			}
			if len(args) == 1 && len(fromFiles) == 0 && len(remove) == 0 {
				return usageErrorf(cmd, "give at least one KEY=VALUE, --from-file KEY=PATH or --remove KEY")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			req := v1.SetValuesRequest{Remove: remove, Replace: replace}
			var err error
			if req.Data, err = valuesFrom(cmd, args[1:], fromFiles); err != nil {
				return err
			}
			return o.setValues(cmd, kind, args[0], req)
		},
	}
	set.Flags().StringArrayVar(&fromFiles, "from-file", nil, "KEY=PATH: the file's content is the value (repeatable)")
	set.Flags().StringArrayVar(&remove, "remove", nil, "remove KEY (repeatable)")
	set.Flags().BoolVar(&replace, "replace", false, "drop every key not given")
	return set
}

// valuesFrom reads KEY=VALUE arguments and --from-file KEY=PATH flags.
func valuesFrom(cmd *cobra.Command, kvs, fromFiles []string) (map[string]string, error) {
	data := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErrorf(cmd, "%q is not KEY=VALUE", kv)
		}
		data[k] = v
	}
	for _, kp := range fromFiles {
		k, p, ok := strings.Cut(kp, "=")
		if !ok || k == "" || p == "" {
			return nil, usageErrorf(cmd, "--from-file %q is not KEY=PATH", kp)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, v1.Invalid("--from-file %s: %v", k, err)
		}
		data[k] = string(b)
	}
	return data, nil
}

func (o *options) setValues(cmd *cobra.Command, kind, name string, req v1.SetValuesRequest) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	var result string
	var keys []v1.KeyInfo
	if kind == v1.KindSecret {
		r, s, err := c.SetSecret(cmd.Context(), o.env, name, req)
		if err != nil {
			return err
		}
		result, keys = r, s.Status.Keys
	} else {
		r, cfg, err := c.SetConfig(cmd.Context(), o.env, name, req)
		if err != nil {
			return err
		}
		result, keys = r, cfg.Status.Keys
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Name
	}
	fmt.Fprintf(o.out, "%s %q %s in environment %q (keys: %s)\n", strings.ToLower(kind), name, result, o.env, strings.Join(names, ", "))
	return nil
}

func newValuesListCommand(o *options, kind string) *cobra.Command {
	noun := strings.ToLower(kind)
	var all bool
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List " + noun + "s and their keys" + map[string]string{v1.KindSecret: " (never values)"}[kind],
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.listValues(cmd, kind, all)
		},
	}
	ls.Flags().BoolVarP(&all, "all-environments", "A", false, "list in every environment")
	return ls
}

func (o *options) listValues(cmd *cobra.Command, kind string, all bool) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	env := o.env
	if all {
		env = ""
	}
	var objs []v1.Object
	if kind == v1.KindSecret {
		l, err := c.Secrets(cmd.Context(), env)
		if err != nil {
			return err
		}
		for i := range l {
			objs = append(objs, &l[i])
		}
	} else {
		l, err := c.Configs(cmd.Context(), env)
		if err != nil {
			return err
		}
		for i := range l {
			objs = append(objs, &l[i])
		}
	}
	if o.output == "json" || o.output == "yaml" {
		items := make([]json.RawMessage, len(objs))
		for i, obj := range objs {
			if items[i], err = json.Marshal(obj); err != nil {
				return err
			}
		}
		b, err := listJSON(items)
		if err != nil {
			return err
		}
		return printRaw(o.out, o.output, b)
	}
	var rows [][]string
	for _, obj := range objs {
		var keys []v1.KeyInfo
		switch x := obj.(type) {
		case *v1.Secret:
			keys = x.Status.Keys
		case *v1.Config:
			keys = x.Status.Keys
		}
		var ks []string
		for _, k := range keys {
			ks = append(ks, fmt.Sprintf("%s (%s)", k.Name, humanSize(int64(k.Size))))
		}
		meta := obj.GetMetadata()
		r := []string{meta.Name, orNone(strings.Join(ks, ", ")), age(o.now(), meta.CreationTimestamp)}
		if all {
			r = append([]string{meta.Environment}, r...)
		}
		rows = append(rows, r)
	}
	header := []string{"NAME", "KEYS", "AGE"}
	if all {
		header = append([]string{"ENVIRONMENT"}, header...)
	}
	return printTable(o.out, header, rows)
}

func newValuesDeleteCommand(o *options, kind string) *cobra.Command {
	noun := strings.ToLower(kind)
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a " + noun,
		Args:  exactArgs(1, "the "+noun+" name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if kind == v1.KindSecret {
				err = c.DeleteSecret(cmd.Context(), o.env, args[0])
			} else {
				err = c.DeleteConfig(cmd.Context(), o.env, args[0])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(o.out, "%s %q deleted\n", noun, args[0])
			return nil
		},
	}
}
