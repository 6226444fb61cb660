package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
)

// executionError is an execution that finished other than SUCCEEDED, for
// `workflow start --wait`: not a platform error kind, so it exits 1.
type executionError struct {
	exec v1.Execution
}

func (e *executionError) Error() string {
	msg := fmt.Sprintf("execution %s %s", e.exec.ID, e.exec.Status)
	if e.exec.Error != "" {
		msg += ": " + e.exec.Error
	}
	if e.exec.Cause != "" {
		msg += ": " + e.exec.Cause
	}
	return msg
}

func newWorkflowCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "workflow",
		Aliases: []string{"workflows", "wf"},
		Short:   "Start, list, inspect and stop workflow executions",
		Long: "Workflows are applied like any manifest (kind: Workflow); these commands run them.\n" +
			"An execution is named by the id `workflow start` prints.",
		Args: noArgs,
		RunE: showHelp,
	}
	cmd.AddCommand(
		newWorkflowStartCommand(o),
		&cobra.Command{
			Use:     "list [WORKFLOW]",
			Aliases: []string{"ls"},
			Short:   "List executions, newest first",
			Args:    rangeArgs(0, 1, "the workflow"),
			RunE: func(cmd *cobra.Command, args []string) error {
				wf := ""
				if len(args) == 1 {
					wf = args[0]
				}
				return o.listExecutions(cmd, wf)
			},
		},
		&cobra.Command{
			Use:   "describe EXECUTION",
			Short: "Show an execution: status, input, output, error",
			Args:  exactArgs(1, "the execution id"),
			RunE: func(cmd *cobra.Command, args []string) error {
				return o.describeExecution(cmd, args[0])
			},
		},
		&cobra.Command{
			Use:   "history EXECUTION",
			Short: "Show an execution's history events",
			Args:  exactArgs(1, "the execution id"),
			RunE: func(cmd *cobra.Command, args []string) error {
				return o.executionHistory(cmd, args[0])
			},
		},
		newWorkflowStopCommand(o),
	)
	return cmd
}

func newWorkflowStartCommand(o *options) *cobra.Command {
	var (
		input   string
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "start WORKFLOW",
		Short: "Start an execution and print its id (with --wait, its output)",
		Long: "Start an execution of a workflow with --input as its input (JSON, @FILE, or @- for\n" +
			"stdin; default {}). It prints the execution id; with --wait it waits for the end and\n" +
			"prints the output, exiting 0 when the execution SUCCEEDED and 1 otherwise, with the\n" +
			"error and cause on stderr.",
		Example: "  berth workflow start checkout --input '{\"order\": 42}'\n" +
			"  berth workflow start checkout --input @order.json --wait",
		Args: exactArgs(1, "the workflow"),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := readInput(cmd, input)
			if err != nil {
				return err
			}
			return o.startExecution(cmd, args[0], body, wait, timeout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&input, "input", "", "execution input: JSON, @FILE, or @- for stdin (default {})")
	f.BoolVar(&wait, "wait", false, "wait for the execution to finish and print its output")
	f.DurationVar(&timeout, "timeout", 0, "how long --wait waits (0: forever)")
	return cmd
}

func readInput(cmd *cobra.Command, input string) ([]byte, error) {
	name, ok := strings.CutPrefix(input, "@")
	var b []byte
	switch {
	case !ok:
		b = []byte(input)
	case name == "-":
		var err error
		if b, err = io.ReadAll(cmd.InOrStdin()); err != nil {
			return nil, v1.Invalid("read the input from stdin: %v", err)
		}
	default:
		var err error
		if b, err = os.ReadFile(name); err != nil {
			return nil, usageErrorf(cmd, "--input @%s: %s", name, pathMessage(err))
		}
	}
	if len(strings.TrimSpace(string(b))) > 0 && !json.Valid(b) {
		return nil, usageErrorf(cmd, "--input is not JSON")
	}
	return b, nil
}

func (o *options) startExecution(cmd *cobra.Command, workflow string, input []byte, wait bool, timeout time.Duration) error {
	ctx := cmd.Context()
	c, err := o.client()
	if err != nil {
		return err
	}
	exec, err := c.StartExecution(ctx, o.env, workflow, input)
	if err != nil {
		return err
	}
	if !wait {
		return o.printExecutionRef(&exec)
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	exec, err = waitExecution(ctx, c, o.env, exec.ID)
	if err != nil {
		if ctx.Err() != nil && cmd.Context().Err() == nil {
			return &timeoutError{what: "execution " + exec.ID, after: timeout, missing: "it is still RUNNING"}
		}
		return err
	}
	switch o.output {
	case "json", "yaml":
		if err := o.printExecutionRaw(&exec); err != nil {
			return err
		}
	default:
		if exec.Status == v1.ExecutionSucceeded {
			fmt.Fprintf(o.out, "%s\n", exec.Output)
		}
	}
	if exec.Status != v1.ExecutionSucceeded {
		return &executionError{exec: exec}
	}
	return nil
}

// waitExecution long-polls until the execution has finished.
func waitExecution(ctx context.Context, c *client.Client, env, id string) (v1.Execution, error) {
	for {
		exec, err := c.WaitExecution(ctx, env, id, 30*time.Second)
		if err != nil || exec.Status != v1.ExecutionRunning {
			if err != nil {
				exec.ID = id
			}
			return exec, err
		}
	}
}

func (o *options) printExecutionRef(exec *v1.Execution) error {
	switch o.output {
	case "json", "yaml":
		return o.printExecutionRaw(exec)
	case "name":
		fmt.Fprintf(o.out, "execution/%s\n", exec.ID)
		return nil
	}
	fmt.Fprintln(o.out, exec.ID)
	return nil
}

func (o *options) printExecutionRaw(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return v1.Errorf(v1.ErrInternal, "render execution: %v", err)
	}
	return printRaw(o.out, o.output, b)
}

func (o *options) listExecutions(cmd *cobra.Command, workflow string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	execs, err := c.Executions(cmd.Context(), o.env, workflow)
	if err != nil {
		return err
	}
	switch o.output {
	case "json", "yaml":
		return o.printExecutionRaw(map[string]any{"items": execs})
	case "name":
		for _, e := range execs {
			fmt.Fprintf(o.out, "execution/%s\n", e.ID)
		}
		return nil
	}
	if len(execs) == 0 {
		fmt.Fprintf(o.errOut, "No executions found in environment %q.\n", o.env)
		return nil
	}
	now := o.now()
	rows := make([][]string, 0, len(execs))
	for _, e := range execs {
		rows = append(rows, []string{e.ID, e.Workflow, e.Status, age(now, e.StartDate), executionDuration(now, &e)})
	}
	return printTable(o.out, []string{"ID", "WORKFLOW", "STATUS", "STARTED", "DURATION"}, rows)
}

// executionDuration is how long it ran, or has been running.
func executionDuration(now time.Time, e *v1.Execution) string {
	if e.StartDate.IsZero() {
		return "<unknown>"
	}
	end := e.StopDate
	if end.IsZero() {
		end = now
	}
	d := end.Sub(e.StartDate)
	if d < 2*time.Minute {
		return d.Round(time.Millisecond).String()
	}
	return humanDuration(d)
}

func (o *options) describeExecution(cmd *cobra.Command, id string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	exec, err := c.Execution(cmd.Context(), o.env, id)
	if err != nil {
		return err
	}
	switch o.output {
	case "json", "yaml":
		return o.printExecutionRaw(&exec)
	case "name":
		fmt.Fprintf(o.out, "execution/%s\n", exec.ID)
		return nil
	}
	now := o.now()
	var d describer
	d.kv("ID", exec.ID)
	d.kv("Workflow", fmt.Sprintf("%s (generation %d)", exec.Workflow, exec.Generation))
	d.kv("Environment", exec.Environment)
	d.kv("Status", exec.Status)
	d.kv("Started", timestamp(exec.StartDate))
	if !exec.StopDate.IsZero() {
		d.kv("Stopped", timestamp(exec.StopDate))
	}
	d.kv("Duration", executionDuration(now, &exec))
	if exec.Error != "" || exec.Cause != "" {
		d.kv("Error", orNone(exec.Error))
		d.kv("Cause", orNone(exec.Cause))
	}
	d.kv("Input", jsonLines(exec.Input)...)
	if exec.Status == v1.ExecutionSucceeded {
		d.kv("Output", jsonLines(exec.Output)...)
	}
	return d.flush(o.out)
}

// jsonLines is a JSON value indented, one line per element.
func jsonLines(b json.RawMessage) []string {
	if len(b) == 0 {
		return []string{"<none>"}
	}
	out, err := indentJSON(b)
	if err != nil {
		return []string{string(b)}
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n")
}

func (o *options) executionHistory(cmd *cobra.Command, id string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	events, err := c.ExecutionHistory(cmd.Context(), o.env, id)
	if err != nil {
		return err
	}
	switch o.output {
	case "json", "yaml":
		return o.printExecutionRaw(map[string]any{"items": events})
	}
	rows := make([][]string, 0, len(events))
	for _, ev := range events {
		details := string(ev.Details)
		if o.output != "wide" {
			details = truncate(details, 60)
		}
		rows = append(rows, []string{strconv.FormatInt(ev.ID, 10), ev.Type, orDash(ev.StateName),
			ev.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z"), orDash(details)})
	}
	return printTable(o.out, []string{"ID", "TYPE", "STATE", "TIMESTAMP", "DETAILS"}, rows)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// truncate cuts s to n runes, marking the cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func newWorkflowStopCommand(o *options) *cobra.Command {
	var errName, cause string
	cmd := &cobra.Command{
		Use:     "stop EXECUTION",
		Short:   "Abort a running execution",
		Example: "  berth workflow stop checkout-4f1c2a9b0e7d --error Cancelled --cause 'customer asked'",
		Args:    exactArgs(1, "the execution id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			exec, err := c.StopExecution(cmd.Context(), o.env, args[0], errName, cause)
			if err != nil {
				return err
			}
			switch o.output {
			case "json", "yaml":
				return o.printExecutionRaw(&exec)
			}
			fmt.Fprintf(o.out, "execution/%s %s\n", exec.ID, strings.ToLower(exec.Status))
			return nil
		},
	}
	cmd.Flags().StringVar(&errName, "error", "", "error name the execution ends with")
	cmd.Flags().StringVar(&cause, "cause", "", "cause the execution ends with")
	return cmd
}

// definitionSummary reads what a table or description shows of a
// definition; the server validated it.
type definitionSummary struct {
	StartAt string                     `json:"StartAt"`
	Comment string                     `json:"Comment"`
	States  map[string]json.RawMessage `json:"States"`
}

type stateSummary struct {
	Type     string `json:"Type"`
	Resource string `json:"Resource"`
	Next     string `json:"Next"`
	End      bool   `json:"End"`
}

func summarize(def json.RawMessage) definitionSummary {
	var s definitionSummary
	_ = json.Unmarshal(def, &s)
	return s
}

func (o *options) describeWorkflow(cmd *cobra.Command, name string) error {
	ctx := cmd.Context()
	c, err := o.client()
	if err != nil {
		return err
	}
	var wf v1.Workflow
	if err := c.Get(ctx, v1.KindWorkflow, o.env, name, &wf); err != nil {
		return err
	}
	execs, err := c.Executions(ctx, o.env, name)
	if err != nil {
		return err
	}
	now := o.now()
	sum := summarize(wf.Spec.Definition)
	var d describer
	d.kv("Name", wf.Metadata.Name)
	d.kv("Environment", wf.Metadata.Environment)
	d.kv("Labels", labels(wf.Metadata.Labels)...)
	d.kv("Created", timestamp(wf.Metadata.CreationTimestamp))
	d.kv("Generation", strconv.FormatInt(wf.Metadata.Generation, 10))
	if sum.Comment != "" {
		d.kv("Comment", sum.Comment)
	}
	d.kv("Start At", orNone(sum.StartAt))
	names := make([]string, 0, len(sum.States))
	for n := range sum.States {
		names = append(names, n)
	}
	sort.Strings(names)
	var states []string
	for _, n := range names {
		var st stateSummary
		_ = json.Unmarshal(sum.States[n], &st)
		line := n + " (" + st.Type
		if st.Resource != "" {
			line += " " + st.Resource
		}
		line += ")"
		switch {
		case st.Next != "":
			line += " → " + st.Next
		case st.End:
			line += " → end"
		}
		states = append(states, line)
	}
	d.kv("States", orNoneList(states)...)
	running := 0
	for _, e := range execs {
		if e.Status == v1.ExecutionRunning {
			running++
		}
	}
	d.kv("Executions", fmt.Sprintf("%d running, %d in all", running, len(execs)))
	if err := d.flush(o.out); err != nil {
		return err
	}
	if len(execs) == 0 {
		return nil
	}
	fmt.Fprintln(o.out, "Recent Executions:")
	var rows [][]string
	for i, e := range execs {
		if i == 10 {
			break
		}
		rows = append(rows, []string{"  " + e.ID, e.Status, age(now, e.StartDate), executionDuration(now, &e)})
	}
	return printTable(o.out, []string{"  ID", "STATUS", "STARTED", "DURATION"}, rows)
}
