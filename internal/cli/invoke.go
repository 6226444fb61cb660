package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
)

// functionError is a function's own non-2xx answer to `berth invoke`: not a
// platform error kind, so it exits 1, like curl --fail's callers expect of
// a failed request.
type functionError struct {
	name   string
	status int
}

func (e *functionError) Error() string {
	return fmt.Sprintf("function %q answered %d %s", e.name, e.status, http.StatusText(e.status))
}

// payload is -d as curl reads it: DATA, @FILE, or @- for stdin.
type payload struct {
	data string
	set  bool
}

func addPayloadFlag(cmd *cobra.Command, p *payload) {
	cmd.Flags().StringVarP(&p.data, "data", "d", "", "request body: DATA, @FILE, or @- for stdin")
}

func (p *payload) read(cmd *cobra.Command) ([]byte, error) {
	if !cmd.Flags().Changed("data") {
		return nil, nil
	}
	name, ok := strings.CutPrefix(p.data, "@")
	switch {
	case !ok:
		return []byte(p.data), nil
	case name == "-":
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return nil, v1.Invalid("read the body from stdin: %v", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, usageErrorf(cmd, "-d @%s: %s", name, pathMessage(err))
	}
	return b, nil
}

func parseHeaders(cmd *cobra.Command, hs []string) (http.Header, error) {
	h := http.Header{}
	for _, kv := range hs {
		k, v, ok := strings.Cut(kv, ":")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, usageErrorf(cmd, "-H %q: write a header as 'Name: value'", kv)
		}
		h.Add(k, strings.TrimSpace(v))
	}
	return h, nil
}

func newInvokeCommand(o *options) *cobra.Command {
	var (
		body     payload
		async    bool
		callback string
		headers  []string
	)
	cmd := &cobra.Command{
		Use:   "invoke FUNCTION [-d DATA|@FILE|@-] [-H 'Name: value'] [--async [--callback-url URL]]",
		Short: "Call a function and print its answer",
		Long: "Call a function through the platform, waking it from zero if need be, and print the\n" +
			"body it answers on stdout. If the function answers a status other than 2xx, its body\n" +
			"goes to stderr instead and berth exits 1. Platform errors exit as usual (5: no such\n" +
			"function, 3: payload too large, 7: no instance in time).\n\n" +
			"With --async the call is queued and berth prints its invocation id at once;\n" +
			"`berth invocation ID` shows how it went, and --callback-url receives the result.\n\n" +
			"Without -H 'Content-Type: ...' the body is sent as JSON when it is JSON, else as text.",
		Example: "  berth invoke resize -d '{\"w\": 100}'\n  berth invoke resize -d @image.json -H 'X-Request-Id: 42'\n" +
			"  berth invoke report --async --callback-url https://hooks.example.com/done",
		Args: exactArgs(1, "the function name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if callback != "" && !async {
				return usageErrorf(cmd, "--callback-url needs --async")
			}
			h, err := parseHeaders(cmd, headers)
			if err != nil {
				return err
			}
			data, err := body.read(cmd)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx, name := cmd.Context(), args[0]
			if async {
				id, err := c.InvokeAsyncWithHeader(ctx, o.env, name, data, h, callback)
				if err != nil {
					return err
				}
				fmt.Fprintln(o.out, id)
				return nil
			}
			status, _, resp, err := c.InvokeWithHeader(ctx, o.env, name, data, h)
			if err != nil {
				return err
			}
			if status < 200 || status > 299 {
				o.errOut.Write(withNewline(resp))
				return &functionError{name: name, status: status}
			}
			_, err = o.out.Write(resp)
			return err
		},
	}
	addPayloadFlag(cmd, &body)
	f := cmd.Flags()
	f.BoolVar(&async, "async", false, "queue the call and print its invocation id")
	f.StringVar(&callback, "callback-url", "", "with --async, a URL that receives the result")
	f.StringArrayVarP(&headers, "header", "H", nil, "request header 'Name: value' (repeatable)")
	return cmd
}

// withNewline ends a function's error body with a newline so that the
// "error:" line after it starts on its own.
func withNewline(b []byte) []byte {
	if len(b) == 0 || b[len(b)-1] == '\n' {
		return b
	}
	return append(b, '\n')
}

func newInvocationCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:     "invocation ID",
		Aliases: []string{"invocations"},
		Short:   "Show the state of an asynchronous invocation",
		Long: "Show an asynchronous invocation: its state (Pending, Running, Succeeded, Failed), attempts\n" +
			"and result. -o json|yaml prints it whole, the function's answer body included.",
		Example: "  berth invocation 01J9Z6X2Q8\n  berth get invocation 01J9Z6X2Q8 -o json",
		Args:    exactArgs(1, "the invocation id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.showInvocation(cmd, args[0])
		},
	}
}

func (o *options) showInvocation(cmd *cobra.Command, id string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	inv, err := c.Invocation(cmd.Context(), o.env, id)
	if err != nil {
		return err
	}
	return o.printInvocation(&inv)
}

func (o *options) printInvocation(inv *v1.Invocation) error {
	switch o.output {
	case "json", "yaml":
		b, err := json.Marshal(inv)
		if err != nil {
			return v1.Errorf(v1.ErrInternal, "render invocation: %v", err)
		}
		return printRaw(o.out, o.output, b)
	case "name":
		fmt.Fprintf(o.out, "invocation/%s\n", inv.ID)
		return nil
	}
	now := o.now()
	result := "<none>"
	switch {
	case inv.Error != "":
		result = inv.Error
	case inv.StatusCode != 0:
		result = strconv.Itoa(inv.StatusCode) + " " + http.StatusText(inv.StatusCode)
	}
	header := []string{"ID", "FUNCTION", "SOURCE", "STATUS", "ATTEMPTS", "RESULT", "AGE"}
	cells := []string{inv.ID, inv.Function, orNone(inv.Source), orNone(inv.Status), strconv.Itoa(int(inv.Attempts)), result, age(now, inv.Created)}
	if o.output == "wide" {
		took := "<none>"
		if !inv.Finished.IsZero() && !inv.Created.IsZero() {
			took = inv.Finished.Sub(inv.Created).Round(time.Millisecond).String()
		}
		header = append(header, "DURATION", "CALLBACK")
		cells = append(cells, took, orNone(inv.CallbackURL))
	}
	return printTable(o.out, header, [][]string{cells})
}

func newPublishCommand(o *options) *cobra.Command {
	var body payload
	cmd := &cobra.Command{
		Use:     "publish TOPIC [-d DATA|@FILE|@-]",
		Short:   "Publish a message to a topic and print its id",
		Long:    "Publish a message to a topic of the environment. Every function with a trigger on the\ntopic is invoked with the message as its body.",
		Example: "  berth publish orders -d '{\"id\": 42}'\n  berth publish orders -d @order.json -e staging",
		Args:    exactArgs(1, "the topic name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := body.read(cmd)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			id, err := c.Publish(cmd.Context(), o.env, args[0], data)
			if err != nil {
				return err
			}
			fmt.Fprintln(o.out, id)
			return nil
		},
	}
	addPayloadFlag(cmd, &body)
	return cmd
}
