package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
)

func newConvertCommand(o *options) *cobra.Command {
	var to, idle string
	var concurrency, min, max, replicas int32
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "convert NAME --to function|service",
		Short: "Switch a workload between a Service and a Function without failing a request",
		Long: "Switch a Service to a Function, or back. The new one is created beside the old one with\n" +
			"the same name, environment, labels, image, command, env (secret references included),\n" +
			"files, port, resources, probes and route; the gateway keeps routing to the old one until\n" +
			"the new one has a ready instance; the old one is deleted only once the new one is ready\n" +
			"and routed, and its instances drain their requests before they stop. A Function is kept\n" +
			"at the Service's ready replicas until the switch, then set to its own min. If the new\n" +
			"one is not ready within --timeout it is removed and the old one keeps serving.\n" +
			"A Service with volumes cannot become a Function, nor a Function with triggers a Service.",
		Example: "  berth convert thumbs --to function\n  berth convert thumbs --to function --concurrency 4 --max 20 --idle-timeout 5m\n" +
			"  berth convert api -e prod --to service --replicas 3",
		Args: exactArgs(1, "the workload name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var req v1.ConvertRequest
			var from string
			switch strings.ToLower(to) {
			case "function", "fn":
				req.To, from = v1.KindFunction, v1.KindService
			case "service", "svc":
				req.To, from = v1.KindService, v1.KindFunction
			default:
				return usageErrorf(cmd, "--to must be function or service")
			}
			flags := cmd.Flags()
			if req.To == v1.KindFunction && flags.Changed("replicas") {
				return usageErrorf(cmd, "--replicas is for --to service; a Function scales by --min and --max")
			}
			if req.To == v1.KindService && (flags.Changed("concurrency") || flags.Changed("min") || flags.Changed("max") || flags.Changed("idle-timeout")) {
				return usageErrorf(cmd, "--concurrency, --min, --max and --idle-timeout are for --to function")
			}
			for name, p := range map[string]**int32{"concurrency": &req.Concurrency, "min": &req.Min, "max": &req.Max, "replicas": &req.Replicas} {
				if flags.Changed(name) {
					v, _ := flags.GetInt32(name)
					*p = &v
				}
			}
			req.IdleTimeout = idle
			req.Timeout = timeout.String()
			c, err := o.client()
			if err != nil {
				return err
			}
			res, err := c.Convert(cmd.Context(), from, o.env, args[0], req)
			if err != nil {
				return err
			}
			if o.output == "json" || o.output == "yaml" {
				return printRaw(o.out, o.output, res.Object)
			}
			if o.output == "name" {
				fmt.Fprintf(o.out, "%s/%s\n", strings.ToLower(res.To), args[0])
				return nil
			}
			for _, s := range res.Steps {
				fmt.Fprintln(o.out, s)
			}
			var md struct {
				Metadata v1.ObjectMeta `json:"metadata"`
			}
			_ = json.Unmarshal(res.Object, &md)
			fmt.Fprintf(o.out, "%s/%s converted to %s/%s (generation %d)\n", strings.ToLower(res.From), args[0], strings.ToLower(res.To), args[0], md.Metadata.Generation)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "function or service")
	f.Int32Var(&concurrency, "concurrency", 1, "the Function's per-instance concurrency")
	f.Int32Var(&min, "min", 0, "the Function's instances kept warm")
	f.Int32Var(&max, "max", 10, "the Function's most instances")
	f.StringVar(&idle, "idle-timeout", "", "the Function's idle timeout (default 60s)")
	f.Int32Var(&replicas, "replicas", 1, "the Service's replicas (default: the function's ready instances, at least its min and 1)")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "how long the new one may take to be ready and routed")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}
