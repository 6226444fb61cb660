package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
)

func newApplyCommand(o *options) *cobra.Command {
	var (
		files   []string
		dryRun  bool
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|- [-f ...]",
		Short: "Create or update objects from manifests",
		Long: "Create or update the objects in manifest files, directories (their *.yaml, *.yml and *.json\n" +
			"files, in name order) or stdin (-). Every document is decoded, defaulted and validated\n" +
			"before anything is sent: one bad document and nothing is applied.\n" +
			"Environments are applied first. -e sets the environment of manifests that name none.",
		Example: "  berth apply -f web.yaml\n  berth apply -f examples/shop/ --wait\n  cat web.yaml | berth apply -f -",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(files) == 0 {
				return usageErrorf(cmd, "missing -f FILE|DIR|-")
			}
			ms, err := readManifests(files, cmd.InOrStdin(), o.env, cmd.Flags().Changed("environment"))
			if err != nil {
				return err
			}
			return o.apply(cmd.Context(), ms, dryRun, wait, timeout)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&files, "filename", "f", nil, "manifest file, directory, or - for stdin (repeatable)")
	f.BoolVar(&dryRun, "dry-run", false, "have the server validate without storing anything")
	f.BoolVar(&wait, "wait", false, "wait until every applied service has rolled out and every function is ready")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "how long --wait waits (0: forever)")
	return cmd
}

// applyRank orders kinds for apply: environments before what lives in
// them, topics before the functions that name them.
func applyRank(kind string) int {
	switch kind {
	case v1.KindEnvironment:
		return 0
	case v1.KindTopic:
		return 1
	}
	return 2
}

// apply sends environments first, so that the services that live in them
// find them, then topics, so that functions find theirs, then everything
// else in input order. Like kubectl it carries
// on past an object the server refuses and reports every failure at the end.
func (o *options) apply(ctx context.Context, ms []manifest, dryRun, wait bool, timeout time.Duration) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ordered := slices.Clone(ms)
	slices.SortStableFunc(ordered, func(a, b manifest) int {
		return cmp.Compare(applyRank(a.obj.GetTypeMeta().Kind), applyRank(b.obj.GetTypeMeta().Kind))
	})

	var errs manifestErrors
	var workloads []manifest
	var stored []json.RawMessage
	for _, m := range ordered {
		result, obj, err := c.Apply(ctx, m.obj, dryRun)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			errs = append(errs, fmt.Errorf("%s: %w", m.ref(), err))
			continue
		}
		suffix := ""
		if dryRun {
			suffix = " (dry run)"
		}
		switch o.output {
		case "json", "yaml":
			stored = append(stored, obj)
		case "name":
			fmt.Fprintln(o.out, m.ref())
		default:
			fmt.Fprintf(o.out, "%s %s%s\n", m.ref(), result, suffix)
		}
		if k := m.obj.GetTypeMeta().Kind; k == v1.KindService || k == v1.KindFunction {
			workloads = append(workloads, m)
		}
	}
	if err := o.printApplied(stored); err != nil {
		return err
	}
	if len(errs) > 0 {
		return errs
	}
	if !wait || dryRun {
		return nil
	}
	w := o.newWaiter(c, timeout)
	for _, m := range workloads {
		if err := w.waitFor(ctx, m.obj.GetTypeMeta().Kind, m.obj.GetMetadata().Environment, m.obj.GetMetadata().Name); err != nil {
			return err
		}
	}
	return nil
}

// printApplied prints, for -o json|yaml, what the server stored: the
// object itself when there is one, a List when there are several.
func (o *options) printApplied(stored []json.RawMessage) error {
	switch {
	case o.output != "json" && o.output != "yaml", len(stored) == 0:
		return nil
	case len(stored) == 1:
		return printRaw(o.out, o.output, stored[0])
	}
	b, err := listJSON(stored)
	if err != nil {
		return err
	}
	return printRaw(o.out, o.output, b)
}

// waiter polls services until they have rolled out, within one deadline
// shared by every service it waits for.
type waiter struct {
	o        *options
	c        *client.Client
	timeout  time.Duration
	deadline time.Time
}

func (o *options) newWaiter(c *client.Client, timeout time.Duration) *waiter {
	w := &waiter{o: o, c: c, timeout: timeout}
	if timeout > 0 {
		w.deadline = time.Now().Add(timeout)
	}
	return w
}

// wait waits for a service; see waitFor.
func (w *waiter) wait(ctx context.Context, env, name string) error {
	return w.waitFor(ctx, v1.KindService, env, name)
}

// waitFor returns nil once the workload has rolled out: for a service,
// once its controller has seen its latest spec and every desired replica
// runs the current revision and is ready; for a function, once its
// controller has seen its latest spec and its minimum instances (if any)
// are ready. It prints progress on stderr when progress changes, and fails
// with a timeoutError that says what is missing when time runs out.
func (w *waiter) waitFor(ctx context.Context, kind, env, name string) error {
	what := strings.ToLower(kind) + "/" + name
	pctx := ctx
	if !w.deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, w.deadline)
		defer cancel()
	}
	ticker := time.NewTicker(w.o.pollInterval)
	defer ticker.Stop()
	last := "the " + strings.ToLower(kind) + "'s status"
	printed := ""
	for {
		done, msg, trouble, err := w.progress(ctx, kind, env, name)
		switch {
		case err == nil:
			if done {
				return nil
			}
			last = msg + trouble
			if msg != printed {
				fmt.Fprintf(w.o.errOut, "Waiting for %s: %s…\n", what, msg)
				printed = msg
			}
		case pctx.Err() == nil && ctx.Err() != nil:
			// Our own deadline cut the request short.
		default:
			return err
		}
		select {
		case <-ctx.Done():
			if pctx.Err() != nil {
				return pctx.Err()
			}
			return &timeoutError{what: what, after: w.timeout, missing: last}
		case <-ticker.C:
		}
	}
}

// progress reads the workload and says whether it is done, and if not,
// what it waits for and what is going wrong.
func (w *waiter) progress(ctx context.Context, kind, env, name string) (done bool, msg, trouble string, err error) {
	if kind == v1.KindFunction {
		var fn v1.Function
		if err := w.c.Get(ctx, v1.KindFunction, env, name, &fn); err != nil {
			return false, "", "", err
		}
		if err := canaryFailed(v1.KindFunction, name, fn.Status.Revision, fn.Status.Canary); err != nil {
			return false, "", "", err
		}
		done, msg = functionProgress(&fn)
		if c := fn.Status.Canary; done && c.Active() && c.Revision == fn.Status.Revision {
			done, msg = false, "canary of revision "+strconv.FormatInt(c.Revision, 10)+": "+c.Message
		}
		return done, msg, instanceTrouble(fn.Status.Conditions, fn.Status.Instances), nil
	}
	var svc v1.Service
	if err := w.c.Get(ctx, v1.KindService, env, name, &svc); err != nil {
		return false, "", "", err
	}
	if err := canaryFailed(v1.KindService, name, svc.Status.Revision, svc.Status.Canary); err != nil {
		return false, "", "", err
	}
	done, msg = rolloutProgress(&svc)
	return done, msg, instanceTrouble(svc.Status.Conditions, svc.Status.Instances), nil
}

// canaryFailed is the error a wait ends with when the revision it waits
// for was rolled back as a canary: it will not roll out.
func canaryFailed(kind, name string, rev int64, c *v1.CanaryStatus) error {
	if c == nil || c.Revision != rev || (c.Phase != v1.CanaryRolledBack && c.Phase != v1.CanaryAborted) {
		return nil
	}
	return v1.Conflict("%s/%s: canary of revision %d %s", strings.ToLower(kind), name, c.Revision, c.Message)
}

// functionProgress says whether fn is ready: its controller has seen its
// latest spec and, when it keeps instances warm, they are ready. A
// function at zero is ready: the first request wakes it.
func functionProgress(fn *v1.Function) (bool, string) {
	st := fn.Status
	var min int32
	if fn.Spec.Scale.Min != nil {
		min = *fn.Spec.Scale.Min
	}
	switch {
	case st.ObservedGeneration < fn.Metadata.Generation:
		return false, fmt.Sprintf("waiting for the controller to see generation %d (it has seen %d)", fn.Metadata.Generation, st.ObservedGeneration)
	case fn.IsWasm():
		// Instances are made per request: ready once the module is
		// compiled, which the controller says before it records the
		// generation.
		return true, ""
	case st.ReadyInstances < min:
		return false, fmt.Sprintf("%d of %d minimum instances ready", st.ReadyInstances, min)
	}
	return true, ""
}

// rolloutProgress says whether svc has rolled out, and if not, the first
// thing it is waiting for, in the order a rollout gets there.
func rolloutProgress(svc *v1.Service) (bool, string) {
	st := svc.Status
	want := desiredReplicas(svc)
	switch {
	case st.ObservedGeneration < svc.Metadata.Generation:
		return false, fmt.Sprintf("waiting for the controller to see generation %d (it has seen %d)", svc.Metadata.Generation, st.ObservedGeneration)
	case len(st.Traffic) > 0:
		// A traffic split keeps instances of several revisions, each its
		// share: the controller, which knows the shares, says when each
		// has them (docs/delivery.md).
		for _, c := range st.Conditions {
			if c.Type == v1.ConditionProgressing {
				return c.Reason == "RolloutComplete", c.Message
			}
		}
		return false, "waiting for the controller's progress"
	case st.UpdatedReplicas < want:
		msg := fmt.Sprintf("%d of %d replicas updated", st.UpdatedReplicas, want)
		if st.Revision > 0 {
			msg += fmt.Sprintf(" to revision %d", st.Revision)
		}
		return false, msg
	case st.Replicas > st.UpdatedReplicas:
		return false, fmt.Sprintf("%d old replicas pending termination", st.Replicas-st.UpdatedReplicas)
	case st.ReadyReplicas < want:
		return false, fmt.Sprintf("%d of %d updated replicas ready", st.ReadyReplicas, want)
	case st.UpdatedReplicas != want || st.ReadyReplicas != want:
		return false, fmt.Sprintf("%d updated and %d ready replicas, want %d", st.UpdatedReplicas, st.ReadyReplicas, want)
	}
	return true, ""
}

// instanceTrouble names a stalled rollout's reason and the instances that
// are failing, so a timeout says why and not only what.
func instanceTrouble(conditions []v1.Condition, instances []v1.InstanceStatus) string {
	s := ""
	for _, c := range conditions {
		if c.Type == v1.ConditionProgressing && !c.Status && c.Message != "" {
			s += "; " + c.Reason + ": " + c.Message
		}
	}
	for _, in := range instances {
		if in.Ready {
			continue
		}
		switch in.Phase {
		case v1.PhaseBackoff, v1.PhaseFailed:
		default:
			if in.LastExit == nil && in.Message == "" {
				continue
			}
		}
		s += fmt.Sprintf("; instance %s is %s", in.Name, orNone(in.Phase))
		if in.LastExit != nil {
			s += fmt.Sprintf(", last exit %s (%d)", in.LastExit.Reason, in.LastExit.Code)
		}
		if in.Message != "" {
			s += ": " + in.Message
		}
	}
	return s
}
