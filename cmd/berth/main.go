// Command berth is Berth's one binary: the CLI, `berth server`, and the
// log-shim containerd runs for every container. main only builds the command
// tree and maps errors to exit codes; the parts live in internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"berth.dev/berth/internal/cli"
	"berth.dev/berth/internal/config"
	"berth.dev/berth/internal/runtime/logshim"
	"berth.dev/berth/internal/server"
)

func main() {
	// containerd's shim starts the log-shim once per container, with fds 3-5
	// set up; skip building the command tree for it.
	if len(os.Args) > 1 && os.Args[1] == "log-shim" {
		os.Exit(logshim.Main(os.Args[2:]))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, out, errOut io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root := cli.NewRootCommand(out, errOut)
	root.AddCommand(newServerCommand(errOut), newInstallCommand(out), newLogShimCommand())
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(errOut, "error: %v\n", err)
	}
	return cli.ExitCode(err)
}

func newServerCommand(errOut io.Writer) *cobra.Command {
	cfg := config.Default()
	var logLevel string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a Berth server: API, controllers, runtime and gateway in one process",
		Long: "Run every part of Berth in this process until SIGINT or SIGTERM. On first start it\n" +
			"writes an admin token to DATA/token and a client config the CLI finds by itself.\n" +
			"Without --containerd-socket it starts and supervises its own containerd under DATA.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cli.UsageError(fmt.Errorf("unexpected argument %q", args[0]))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cfg.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
				return cli.UsageError(fmt.Errorf("--log-level: %q is not debug, info, warn or error", logLevel))
			}
			if err := cfg.Validate(); err != nil {
				return cli.UsageError(err)
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find this binary for the log-shim: %w", err)
			}
			cfg.LogShim = []string{exe, "log-shim"}
			logger := newLogger(errOut, cfg.LogLevel, cfg.LogFormat)
			err = server.Run(cmd.Context(), cfg, logger, nil)
			if errors.Is(err, context.Canceled) {
				// Stopped by a signal: a clean shutdown.
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for state, token, logs, volumes and (own) containerd")
	f.StringVar(&cfg.APIAddr, "api", cfg.APIAddr, "address the HTTP API listens on")
	f.StringVar(&cfg.GatewayAddr, "gateway", cfg.GatewayAddr, "address the gateway listens on")
	f.StringVar(&cfg.ContainerdSocket, "containerd-socket", cfg.ContainerdSocket, "use this containerd instead of starting one")
	f.StringVar(&cfg.SubnetPool, "subnet-pool", cfg.SubnetPool, "pool carved into one /24 per environment")
	f.StringVar(&cfg.BridgePrefix, "bridge-prefix", cfg.BridgePrefix, "prefix of the environments' bridge names")
	f.StringVar(&cfg.ContainerdNamespace, "containerd-namespace", cfg.ContainerdNamespace, "containerd namespace of Berth's containers and images")
	f.StringVar(&cfg.Domain, "domain", cfg.Domain, "gateway host suffix: NAME.ENV.DOMAIN")
	f.BoolVar(&cfg.MetricsPublic, "metrics-public", cfg.MetricsPublic, "serve /metrics without the API token")
	f.DurationVar(&cfg.LogMaxAge, "log-max-age", cfg.LogMaxAge, "keep the logs of gone instances this long")
	f.Int64Var(&cfg.LogMaxBytes, "log-max-bytes", cfg.LogMaxBytes, "keep at most this many bytes of logs per workload")
	f.StringVar(&cfg.OTLPEndpoint, "otlp-endpoint", cfg.OTLPEndpoint, "export traces by OTLP/HTTP to this collector (host:port or URL)")
	f.Float64Var(&cfg.TraceSampleRatio, "trace-sample-ratio", cfg.TraceSampleRatio, "share of new traces sampled, 0 to 1")
	f.IntVar(&cfg.TraceStoreSize, "trace-store-size", cfg.TraceStoreSize, "traces kept in memory for berth traces")
	f.IntVar(&cfg.MaxStandbys, "max-standbys", cfg.MaxStandbys, "prepared standby instances kept on this machine, all functions together (0: no cap)")
	f.StringVar(&cfg.StandbyMemory, "standby-memory", cfg.StandbyMemory, "memory the started, initialised and frozen standbys on this machine may hold together (0: standbys are created, not started)")
	f.StringVar(&cfg.Backend, "backend", cfg.Backend, "where instances run: local (this machine) or kubernetes (a cluster)")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", cfg.Kubeconfig, "the cluster's kubeconfig (kubernetes backend; empty: in-cluster config)")
	f.StringVar(&cfg.NamespacePrefix, "namespace-prefix", cfg.NamespacePrefix, "an environment's namespace is PREFIX+ENV (kubernetes backend)")
	f.StringVar(&cfg.ClusterGatewayAddr, "cluster-gateway", cfg.ClusterGatewayAddr, "where the gateway listens for calls from pods (kubernetes backend)")
	f.StringVar(&cfg.ClusterGatewayAdvertise, "cluster-gateway-advertise", cfg.ClusterGatewayAdvertise, "IP:PORT pods reach the gateway at (default: --cluster-gateway)")
	f.StringVar(&cfg.GatewayNamespace, "gateway-namespace", cfg.GatewayNamespace, "namespace Berth's pod runs in, when it runs in the cluster")
	f.StringVar(&cfg.RegistryAdvertise, "registry-advertise", cfg.RegistryAdvertise, "HOST:PORT the cluster's nodes pull Berth's registry from (default: --api)")
	f.DurationVar(&cfg.HistoryRetention, "history-retention", cfg.HistoryRetention, "keep the per-minute traffic history berth advise replays this long")
	f.DurationVar(&cfg.AdviceMinHistory, "advice-min-history", cfg.AdviceMinHistory, "recorded history berth advise needs before it answers")
	f.StringVar(&cfg.PriceSheet, "price-sheet", cfg.PriceSheet, "YAML price sheet for berth advise (default: AWS Lambda and Fargate list prices)")
	f.StringVar(&logLevel, "log-level", cfg.LogLevel.String(), "debug, info, warn or error")
	f.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "text or json")
	return cmd
}

func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// newLogShimCommand documents the log-shim in the tree; main runs it before
// the tree is built, so this RunE only runs for an unusual spelling such as
// `berth --addr x log-shim`.
func newLogShimCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "log-shim --path FILE",
		Short:              "Write a container's output to a log file (run by containerd's shim)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := logshim.Main(args); code != 0 {
				return fmt.Errorf("log-shim exited with code %d", code)
			}
			return nil
		},
	}
}
