package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
)

func newGetCommand(o *options) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List objects of a kind, or show one",
		Long: "List objects of a kind in the environment, or show one by name.\n\nKinds: " + knownKinds() +
			".\n\n-o json|yaml prints the objects as stored, status included.",
		Example: "  berth get services\n  berth get svc web -o yaml\n  berth get instances -A\n  berth get functions -o wide\n" +
			"  berth get invocation ID",
		Args: rangeArgs(1, 2, "the kind", "the name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Invocations are not stored objects with a kind, but
			// `get invocation ID` is where a kubectl user looks.
			if first, id, _ := strings.Cut(args[0], "/"); first == "invocation" || first == "invocations" {
				if id == "" && len(args) == 2 {
					id = args[1]
				}
				if id == "" {
					return usageErrorf(cmd, "missing the invocation id")
				}
				return o.showInvocation(cmd, id)
			}
			k, name, err := kindAndName(cmd, args)
			if err != nil {
				return err
			}
			if all && name != "" {
				return usageErrorf(cmd, "a %s cannot be got by name across all environments", k.lower())
			}
			return o.get(cmd, k, name, all)
		},
	}
	cmd.Flags().BoolVarP(&all, "all-environments", "A", false, "list across all environments")
	return cmd
}

func (o *options) get(cmd *cobra.Command, k kindInfo, name string, all bool) error {
	ctx := cmd.Context()
	c, err := o.client()
	if err != nil {
		return err
	}
	var items []json.RawMessage
	if name != "" {
		var raw json.RawMessage
		if err := c.Get(ctx, k.Kind, o.env, name, &raw); err != nil {
			return err
		}
		if o.output == "json" || o.output == "yaml" {
			return printRaw(o.out, o.output, raw)
		}
		items = []json.RawMessage{raw}
	} else {
		env := o.env
		if all {
			env = ""
		}
		if items, err = c.List(ctx, k.Kind, env); err != nil {
			return err
		}
		if o.output == "json" || o.output == "yaml" {
			b, err := listJSON(items)
			if err != nil {
				return err
			}
			return printRaw(o.out, o.output, b)
		}
		if len(items) == 0 {
			switch {
			case all || !k.Scoped:
				fmt.Fprintln(o.errOut, "No resources found")
			default:
				fmt.Fprintf(o.errOut, "No resources found in %s environment.\n", o.env)
			}
			return nil
		}
	}
	return o.printObjects(k, items, all && k.Scoped)
}

// printObjects prints items of kind k as -o table, wide or name asks.
func (o *options) printObjects(k kindInfo, items []json.RawMessage, withEnv bool) error {
	if o.output == "name" {
		for _, raw := range items {
			var meta struct {
				Metadata v1.ObjectMeta `json:"metadata"`
			}
			if err := json.Unmarshal(raw, &meta); err != nil {
				return v1.Errorf(v1.ErrInternal, "decode %s: %v", k.lower(), err)
			}
			fmt.Fprintf(o.out, "%s/%s\n", k.lower(), meta.Metadata.Name)
		}
		return nil
	}
	t, err := o.tableFor(k, items)
	if err != nil {
		return err
	}
	tw := newTable(o.out)
	header := t.header
	if o.output == "wide" {
		header = append(header, t.wideHeader...)
	}
	if withEnv {
		header = append([]string{"ENVIRONMENT"}, header...)
	}
	row(tw, header...)
	for _, r := range t.rows {
		cells := r.cells
		if o.output == "wide" {
			cells = append(cells, r.wide...)
		}
		if withEnv {
			cells = append([]string{r.env}, cells...)
		}
		row(tw, cells...)
	}
	return tw.Flush()
}

type table struct {
	header, wideHeader []string
	rows               []tableRow
}

type tableRow struct {
	env         string
	cells, wide []string
}

func decodeAll[T any](items []json.RawMessage) ([]T, error) {
	out := make([]T, 0, len(items))
	for _, raw := range items {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, v1.Errorf(v1.ErrInternal, "decode object: %v", err)
		}
		out = append(out, v)
	}
	return out, nil
}

// tableFor lays out items of kind k as a table, with the printer of the
// kind.
func (o *options) tableFor(k kindInfo, items []json.RawMessage) (table, error) {
	p, ok := tablePrinters[k.Kind]
	if !ok {
		return table{}, fmt.Errorf("no table for kind %s", k.Kind)
	}
	return p(items, o.now(), o.output == "wide")
}

// tablePrinter lays out decoded objects of one kind: now is what ages are
// counted from; wide is -o wide, for the printers whose cells change with
// it rather than only gain columns.
type tablePrinter func(items []json.RawMessage, now time.Time, wide bool) (table, error)

// tablePrinters holds the printer of each kind `get` shows as a table.
var tablePrinters = map[string]tablePrinter{
	v1.KindEnvironment: printerOf(environmentTable),
	v1.KindService:     printerOf(serviceTable),
	v1.KindFunction:    printerOf(functionTable),
	v1.KindWorkflow:    printerOf(workflowTable),
	v1.KindTopic:       printerOf(topicTable),
	v1.KindInstance:    printerOf(instanceTable),
	v1.KindRevision:    printerOf(revisionTable),
	v1.KindEvent:       printerOf(eventTable),
}

// printerOf makes a tablePrinter of a printer of typed objects.
func printerOf[T any](layout func(objs []T, now time.Time, wide bool) table) tablePrinter {
	return func(items []json.RawMessage, now time.Time, wide bool) (table, error) {
		objs, err := decodeAll[T](items)
		if err != nil {
			return table{}, err
		}
		return layout(objs, now, wide), nil
	}
}

func environmentTable(envs []v1.Environment, now time.Time, _ bool) table {
	t := table{header: []string{"NAME", "SUBNET", "AGE"}, wideHeader: []string{"BRIDGE", "ALLOW-FROM"}}
	for _, e := range envs {
		t.rows = append(t.rows, tableRow{
			cells: []string{e.Metadata.Name, orNone(e.Status.Subnet), age(now, e.Metadata.CreationTimestamp)},
			wide:  []string{orNone(e.Status.Bridge), orNone(strings.Join(e.Spec.AllowFrom, ","))},
		})
	}
	return t
}

func serviceTable(svcs []v1.Service, now time.Time, _ bool) table {
	t := table{
		header:     []string{"NAME", "READY", "UP-TO-DATE", "REVISION", "IMAGE", "AGE"},
		wideHeader: []string{"PORT", "ROUTE", "DIGEST"},
	}
	for _, s := range svcs {
		route := ""
		if s.Spec.Route != nil {
			route = s.Spec.Route.Path
		}
		t.rows = append(t.rows, tableRow{
			env: s.Metadata.Environment,
			cells: []string{
				s.Metadata.Name,
				fmt.Sprintf("%d/%d", s.Status.ReadyReplicas, desiredReplicas(&s)),
				strconv.Itoa(int(s.Status.UpdatedReplicas)),
				revisionString(s.Status.Revision),
				s.Spec.Image,
				age(now, s.Metadata.CreationTimestamp),
			},
			wide: []string{portString(s.Spec.Port), orNone(route), orNone(s.Status.ImageDigest)},
		})
	}
	return t
}

func functionTable(fns []v1.Function, now time.Time, _ bool) table {
	t := table{
		header:     []string{"NAME", "READY", "DESIRED", "IN-FLIGHT", "COLD-STARTS", "REVISION", "IMAGE", "AGE"},
		wideHeader: []string{"MIN", "MAX", "CONCURRENCY"},
	}
	for _, f := range fns {
		t.rows = append(t.rows, tableRow{
			env: f.Metadata.Environment,
			cells: []string{
				f.Metadata.Name,
				strconv.Itoa(int(f.Status.ReadyInstances)),
				strconv.Itoa(int(f.Status.Desired)),
				strconv.Itoa(int(f.Status.InFlight)),
				strconv.FormatInt(f.Status.ColdStarts, 10),
				revisionString(f.Status.Revision),
				f.Spec.Image,
				age(now, f.Metadata.CreationTimestamp),
			},
			wide: []string{
				int32OrDefault(f.Spec.Scale.Min, strconv.Itoa(v1.DefaultScaleMin)),
				int32OrDefault(f.Spec.Scale.Max, strconv.Itoa(v1.DefaultScaleMax)),
				strconv.Itoa(int(concurrency(&f))),
			},
		})
	}
	return t
}

func workflowTable(wfs []v1.Workflow, now time.Time, _ bool) table {
	t := table{header: []string{"NAME", "START-AT", "STATES", "GENERATION", "AGE"}}
	for _, wf := range wfs {
		sum := summarize(wf.Spec.Definition)
		t.rows = append(t.rows, tableRow{
			env: wf.Metadata.Environment,
			cells: []string{wf.Metadata.Name, orNone(sum.StartAt), strconv.Itoa(len(sum.States)),
				strconv.FormatInt(wf.Metadata.Generation, 10), age(now, wf.Metadata.CreationTimestamp)},
		})
	}
	return t
}

func topicTable(tps []v1.Topic, now time.Time, _ bool) table {
	t := table{header: []string{"NAME", "RETENTION", "AGE"}}
	for _, tp := range tps {
		retention := tp.Spec.Retention
		if retention == "" {
			retention = v1.DefaultTopicRetention
		}
		t.rows = append(t.rows, tableRow{
			env:   tp.Metadata.Environment,
			cells: []string{tp.Metadata.Name, retention, age(now, tp.Metadata.CreationTimestamp)},
		})
	}
	return t
}

func instanceTable(insts []v1.Instance, now time.Time, _ bool) table {
	t := table{
		header:     []string{"NAME", "SERVICE", "REVISION", "PHASE", "READY", "IP", "RESTARTS", "LAST-EXIT", "AGE"},
		wideHeader: []string{"MESSAGE"},
	}
	for _, in := range insts {
		phase := orNone(in.Status.Phase)
		if in.Spec.Draining && in.Status.Phase != v1.PhaseTerminating {
			phase += ",Draining"
		}
		t.rows = append(t.rows, tableRow{
			env: in.Metadata.Environment,
			cells: []string{
				in.Metadata.Name,
				in.Spec.Owner,
				revisionString(in.Spec.Revision),
				phase,
				readyString(in.Status.Ready),
				orNone(in.Status.IP),
				strconv.Itoa(int(in.Status.Restarts)),
				lastExit(now, in.Status.LastExit),
				age(now, in.Metadata.CreationTimestamp),
			},
			wide: []string{orNone(in.Status.Message)},
		})
	}
	return t
}

// revisionTable sorts revisions by environment, owner and number; -o wide
// shows whole digests.
func revisionTable(revs []v1.Revision, now time.Time, wide bool) table {
	sort.SliceStable(revs, func(i, j int) bool {
		a, b := revs[i], revs[j]
		if a.Metadata.Environment != b.Metadata.Environment {
			return a.Metadata.Environment < b.Metadata.Environment
		}
		if a.Spec.Owner != b.Spec.Owner {
			return a.Spec.Owner < b.Spec.Owner
		}
		return a.Spec.Number < b.Spec.Number
	})
	t := table{header: []string{"SERVICE", "REVISION", "IMAGE", "DIGEST", "CHANGE-CAUSE", "AGE"}}
	for _, r := range revs {
		digest := shortDigest(r.Spec.ImageDigest)
		if wide {
			digest = r.Spec.ImageDigest
		}
		t.rows = append(t.rows, tableRow{
			env: r.Metadata.Environment,
			cells: []string{
				r.Spec.Owner,
				strconv.FormatInt(r.Spec.Number, 10),
				r.Spec.Image,
				orNone(digest),
				orNone(r.Spec.ChangeCause),
				age(now, r.Metadata.CreationTimestamp),
			},
		})
	}
	return t
}

func eventTable(evs []v1.Event, now time.Time, _ bool) table {
	t := table{header: []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"}}
	for _, e := range evs {
		t.rows = append(t.rows, tableRow{
			env:   e.Metadata.Environment,
			cells: []string{age(now, eventTime(&e)), e.Type, e.Reason, objectRef(e.Object), e.Message},
		})
	}
	return t
}

// desiredReplicas is spec.replicas, which the server defaults; a Service
// stored without it asks for one.
func desiredReplicas(s *v1.Service) int32 {
	if s.Spec.Replicas != nil {
		return *s.Spec.Replicas
	}
	return 1
}

// concurrency is spec.concurrency, which the server defaults.
func concurrency(f *v1.Function) int32 {
	if f.Spec.Concurrency > 0 {
		return f.Spec.Concurrency
	}
	return v1.DefaultConcurrency
}

func revisionString(n int64) string {
	if n == 0 {
		return "<none>"
	}
	return strconv.FormatInt(n, 10)
}

func portString(p int32) string {
	if p == 0 {
		return "<none>"
	}
	return strconv.Itoa(int(p))
}

// readyString shows an instance's readiness as kubectl shows a one-container
// pod's.
func readyString(ready bool) string {
	if ready {
		return "1/1"
	}
	return "0/1"
}

func lastExit(now time.Time, e *v1.ExitInfo) string {
	if e == nil {
		return "<none>"
	}
	s := fmt.Sprintf("%s (%d)", orNone(e.Reason), e.Code)
	if !e.At.IsZero() {
		s += " " + age(now, e.At) + " ago"
	}
	return s
}

// objectRef turns an event's "Service/web" into "service/web", the way the
// rest of the CLI names objects.
func objectRef(object string) string {
	kind, name, ok := strings.Cut(object, "/")
	if !ok {
		return object
	}
	return strings.ToLower(kind) + "/" + name
}

func eventTime(e *v1.Event) time.Time {
	if !e.Time.IsZero() {
		return e.Time
	}
	return e.Metadata.CreationTimestamp
}

// printTable prints a header and rows through one aligned writer.
func printTable(w io.Writer, header []string, rows [][]string) error {
	tw := newTable(w)
	row(tw, header...)
	for _, r := range rows {
		row(tw, r...)
	}
	return tw.Flush()
}
