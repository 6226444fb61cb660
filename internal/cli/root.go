package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
)

// Exit codes beyond the per-kind ones of docs/api.md.
const (
	ExitUsage   = 2
	ExitTimeout = 8
)

// options is what every command shares: the global flags, the streams, and
// the seams tests turn (the clock and the poll interval).
type options struct {
	out, errOut io.Writer

	addr, token string
	env         string
	output      string

	now          func() time.Time
	pollInterval time.Duration
}

// NewRootCommand builds the berth command tree. Callers add commands that
// need server-side packages (server, log-shim) themselves.
func NewRootCommand(out, errOut io.Writer) *cobra.Command {
	return newRootCommand(&options{out: out, errOut: errOut, now: time.Now, pollInterval: time.Second})
}

func newRootCommand(o *options) *cobra.Command {
	root := &cobra.Command{
		Use:           "berth",
		Short:         "Run microservices as orchestrated containers",
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          noArgs,
		RunE:          showHelp,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return o.checkOutput()
		},
	}
	root.SetOut(o.out)
	root.SetErr(o.errOut)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageErrorf(cmd, "%v", err)
	})

	pf := root.PersistentFlags()
	pf.StringVar(&o.addr, "addr", "", "API address (default from BERTH_ADDR or the client config)")
	pf.StringVar(&o.token, "token", "", "API token (default from BERTH_TOKEN or the client config)")
	pf.StringVarP(&o.env, "environment", "e", v1.DefaultEnvironment, "environment to work in")
	pf.StringVarP(&o.output, "output", "o", "table", "output format: table|json|yaml|name|wide")

	root.AddCommand(
		newApplyCommand(o),
		newGetCommand(o),
		newDescribeCommand(o),
		newDeleteCommand(o),
		newLogsCommand(o),
		newTopCommand(o),
		newRolloutCommand(o),
		newTrafficCommand(o),
		newInvokeCommand(o),
		newInvocationCommand(o),
		newPublishCommand(o),
		newWorkflowCommand(o),
		newImageCommand(o),
		newBuildCommand(o), newInitCommand(o), newDeployCommand(o),
		newTracesCommand(o), newTraceCommand(o),
		newAdviseCommand(o), newConvertCommand(o),
		newEnvCommand(o), newValuesCommand(o, v1.KindSecret), newValuesCommand(o, v1.KindConfig), newTokenCommand(o), newStackCommand(o),
		newDashboardCommand(o),
		newBucketCommand(o), newObjectCommand(o), newKVCommand(o), newAccessKeyCommand(o),
		newVersionCommand(o),
	)
	return root
}

func (o *options) checkOutput() error {
	switch o.output {
	case "", "table", "json", "yaml", "name", "wide":
		return nil
	}
	return &usageError{msg: fmt.Sprintf("unknown output format %q: use table, json, yaml, name or wide", o.output)}
}

// client resolves the address and token (flags first, then what
// client.LoadConfig finds) and returns a client for them.
func (o *options) client() (*client.Client, error) {
	cfg, err := client.LoadConfig()
	if err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	if o.addr != "" {
		cfg.Addr = o.addr
	}
	if o.token != "" {
		cfg.Token = o.token
	}
	return client.New(cfg), nil
}

// ExitCode maps an error from the command tree to the process exit code
// docs/api.md documents: 0 success, 1 internal, 2 usage, 3 invalid or too
// large, 4 unauthorized or forbidden, 5 not found, 6 conflict, 7
// unavailable, 8 a wait that timed out.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	var te *timeoutError
	if errors.As(err, &te) {
		return ExitTimeout
	}
	switch v1.KindOf(err) {
	case v1.ErrInvalid, v1.ErrTooLarge:
		return 3
	case v1.ErrUnauthorized, v1.ErrForbidden:
		return 4
	case v1.ErrNotFound:
		return 5
	case v1.ErrConflict:
		return 6
	case v1.ErrUnavailable:
		return 7
	}
	return 1
}

// UsageError marks err as the user's misuse of the command line (exit 2),
// for commands built outside this package.
func UsageError(err error) error {
	if err == nil {
		return nil
	}
	return &usageError{msg: err.Error()}
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if cmd != nil {
		msg += fmt.Sprintf("\nSee '%s --help' for usage.", cmd.CommandPath())
	}
	return &usageError{msg: msg}
}

// timeoutError is a wait that ran out of time; Missing says what it was
// still waiting for.
type timeoutError struct {
	what    string
	after   time.Duration
	missing string
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("timed out after %s waiting for %s: %s", e.after, e.what, e.missing)
}

// Argument validators that fail as usage errors, unlike cobra's own.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		if cmd.HasSubCommands() {
			return usageErrorf(cmd, "unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return usageErrorf(cmd, "%s takes no arguments", cmd.CommandPath())
	}
	return nil
}

func exactArgs(n int, names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usageErrorf(cmd, "missing %s", strings.Join(names[len(args):], " and "))
		}
		if len(args) > n {
			return usageErrorf(cmd, "unexpected argument %q", args[n])
		}
		return nil
	}
}

func rangeArgs(min, max int, names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min {
			return usageErrorf(cmd, "missing %s", strings.Join(names[len(args):min], " and "))
		}
		if len(args) > max {
			return usageErrorf(cmd, "unexpected argument %q", args[max])
		}
		return nil
	}
}

func showHelp(cmd *cobra.Command, args []string) error {
	return cmd.Help()
}

// interrupted reports whether err is only the user stopping a command
// (Ctrl-C on logs -f), which is not a failure.
func interrupted(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, ctx.Err()))
}
