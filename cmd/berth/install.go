package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"berth.dev/berth/internal/cli"
	"berth.dev/berth/internal/install"
)

func newInstallCommand(out io.Writer) *cobra.Command {
	var (
		o          install.Options
		kubeconfig string
		print      bool
	)
	cmd := &cobra.Command{
		Use:   "install --image IMAGE [--kubeconfig PATH] [--print]",
		Short: "Run Berth in a Kubernetes cluster (its server, API and gateway), or print the manifests",
		Long: "Apply, server-side, what runs Berth in the cluster: a namespace, a service account with\n" +
			"RBAC limited to what Berth calls, a volume for its state, the server's Deployment\n" +
			"(berth server --backend kubernetes) and the Services of its API and gateway.\n" +
			"--print writes the same manifests to stdout instead, for GitOps.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cli.UsageError(fmt.Errorf("unexpected argument %q", args[0]))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if print {
				return install.Print(out, o)
			}
			return install.Apply(cmd.Context(), kubeconfig, o, out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "the cluster's kubeconfig (default: as kubectl finds it)")
	f.BoolVar(&print, "print", false, "print the manifests instead of applying them")
	f.StringVar(&o.Image, "image", "", "the Berth server's image")
	f.StringVar(&o.Namespace, "namespace", "berth-system", "namespace Berth runs in")
	f.StringVar(&o.State, "state", "pvc", "where Berth keeps its state: pvc or hostpath:/DIR")
	f.StringVar(&o.StateSize, "state-size", "10Gi", "size of the state volume (pvc)")
	f.StringVar(&o.NamespacePrefix, "namespace-prefix", "berth-", "environments' namespaces are PREFIX+ENV")
	f.StringVar(&o.RegistryAdvertise, "registry-advertise", "", "HOST:PORT the nodes pull Berth's registry from")
	f.StringArrayVar(&o.ExtraArgs, "server-arg", nil, "extra argument for berth server (repeatable)")
	return cmd
}
