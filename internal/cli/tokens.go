package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
)

func newTokenCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens scoped to environments and roles",
		Args:  noArgs,
		RunE:  showHelp,
	}
	var envs []string
	var role, name string
	var withAWS bool
	create := &cobra.Command{
		Use:   "create --env ENV[,ENV] --role viewer|deployer|admin [--name NAME]",
		Short: "Create a token and print it (once: only its hash is kept)",
		Long: "Create a token. viewer reads its environments; deployer also applies, deletes, invokes,\n" +
			"publishes, starts workflows, reads logs, sets secrets and deploys stacks there; admin may\n" +
			"do everything in its environments. --env '*' with --role admin is a full admin token.",
		Example: "  berth token create --env dev --role deployer --name ci",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(envs) == 0 || role == "" {
				return usageErrorf(cmd, "--env and --role are required")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), v1.TokenRequest{Name: name, Environments: envs, Role: role})
			if err != nil {
				return err
			}
			var ak *v1.AccessKey
			if withAWS {
				// The key is the new token's: made with its own secret.
				cfg, err := client.LoadConfig()
				if err != nil {
					return &usageError{msg: err.Error()}
				}
				if o.addr != "" {
					cfg.Addr = o.addr
				}
				cfg.Token = t.Secret
				if ak, err = client.New(cfg).CreateAccessKey(cmd.Context()); err != nil {
					return fmt.Errorf("token %q created, but its AWS access key was not: %w", t.Metadata.Name, err)
				}
			}
			if o.output == "json" || o.output == "yaml" {
				var b []byte
				if ak != nil {
					b, _ = json.Marshal(struct {
						*v1.Token
						AccessKeyID     string `json:"accessKeyId"`
						SecretAccessKey string `json:"secretAccessKey"`
					}{t, ak.Metadata.Name, ak.Secret})
				} else {
					b, _ = json.Marshal(t)
				}
				return printRaw(o.out, o.output, b)
			}
			fmt.Fprintf(o.errOut, "token %q created (role %s, environments %s); it is shown only now:\n",
				t.Metadata.Name, t.Spec.Role, strings.Join(t.Spec.Environments, ","))
			fmt.Fprintln(o.out, t.Secret)
			if ak != nil {
				fmt.Fprintf(o.errOut, "its AWS access key pair (SigV4: S3, Lambda, Step Functions), also shown only now:\n")
				fmt.Fprintf(o.out, "AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n", ak.Metadata.Name, ak.Secret)
			}
			return nil
		},
	}
	create.Flags().StringSliceVar(&envs, "env", nil, "environments the token acts in ('*': all)")
	create.Flags().StringVar(&role, "role", "", "viewer, deployer or admin")
	create.Flags().StringVar(&name, "name", "", "token name (default: generated)")
	create.Flags().BoolVar(&withAWS, "aws", false, "also issue the token an AWS access key pair (SigV4) and print it")

	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List tokens (never their secrets)",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			toks, err := c.Tokens(cmd.Context())
			if err != nil {
				return err
			}
			var rows [][]string
			for _, t := range toks {
				rows = append(rows, []string{t.Metadata.Name, t.Spec.Role, strings.Join(t.Spec.Environments, ","), age(o.now(), t.Metadata.CreationTimestamp)})
			}
			return printTable(o.out, []string{"NAME", "ROLE", "ENVIRONMENTS", "AGE"}, rows)
		},
	}
	revoke := &cobra.Command{
		Use:     "revoke NAME",
		Aliases: []string{"delete"},
		Short:   "Revoke a token: it stops working at once",
		Args:    exactArgs(1, "the token name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(o.out, "token %q revoked\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, ls, revoke)
	return cmd
}
