package cli

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
	"berth.dev/berth/internal/stack"
)

// Stacks are rendered here, on the client, as helm renders charts: the
// server gets rendered manifests, the template sources and the values,
// and keeps them as the stack's history.

type stackFlags struct {
	name   string
	values []string
	sets   []string
}

func (f *stackFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVarP(&f.values, "values", "f", nil, "values file, merged over the stack's values.yaml (repeatable)")
	cmd.Flags().StringArrayVar(&f.sets, "set", nil, "key.path=value, merged last (repeatable)")
}

// render renders sources for env with the flags' values files and sets.
func (f *stackFlags) render(sources map[string]string, name, env string) (v1.StackDeployRequest, error) {
	files := map[string][]byte{}
	for _, p := range f.values {
		b, err := os.ReadFile(p)
		if err != nil {
			return v1.StackDeployRequest{}, v1.Invalid("values file: %v", err)
		}
		files[p] = b
	}
	vals, err := stack.Values(sources, files, f.values, f.sets)
	if err != nil {
		return v1.StackDeployRequest{}, err
	}
	ms, err := stack.Render(sources, vals, stack.Meta{Name: name, Environment: env})
	if err != nil {
		return v1.StackDeployRequest{}, err
	}
	raw, err := json.Marshal(vals)
	if err != nil {
		return v1.StackDeployRequest{}, v1.Invalid("values: %v", err)
	}
	return v1.StackDeployRequest{Templates: sources, Values: raw, Manifests: ms}, nil
}

func newStackCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stack",
		Short: "Deploy a folder of manifest templates as one unit, with history, promote and rollback",
		Args:  noArgs,
		RunE:  showHelp,
	}
	cmd.AddCommand(newStackDeployCommand(o, false), newStackDeployCommand(o, true), newStackPromoteCommand(o),
		newStackRollbackCommand(o), newStackHistoryCommand(o))
	return cmd
}

func newStackDeployCommand(o *options, diff bool) *cobra.Command {
	var f stackFlags
	use, short := "deploy DIR [-f VALUES]... [--set k=v]...", "Render a stack folder and apply it to an environment as one unit"
	if diff {
		use, short = "diff DIR [-f VALUES]... [--set k=v]...", "Show what deploying a stack folder would change"
	}
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: "  berth stack " + strings.Fields(use)[0] + " ./shop -e staging -f shop/values-staging.yaml --set image.tag=v2",
		Args:    exactArgs(1, "the stack folder"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if f.name == "" {
				abs, _ := filepath.Abs(dir)
				f.name = filepath.Base(abs)
			}
			sources, err := stack.Load(dir)
			if err != nil {
				return err
			}
			req, err := f.render(sources, f.name, o.env)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			if diff {
				return o.stackDiff(cmd, c, f.name, req)
			}
			resp, err := c.DeployStack(cmd.Context(), o.env, f.name, req)
			if err != nil {
				return err
			}
			o.printStackResult(f.name, resp)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&f.name, "name", "", "stack name (default: the folder's name)")
	return cmd
}

func (o *options) printStackResult(name string, resp *v1.StackDeployResponse) {
	for _, ref := range slices.Sorted(maps.Keys(resp.Results)) {
		fmt.Fprintf(o.out, "%s %s\n", ref, resp.Results[ref])
	}
	if resp.Revision > 0 {
		fmt.Fprintf(o.out, "stack %q deployed to environment %q: revision %d\n", name, o.env, resp.Revision)
	}
}

// stackDiff prints what the server says each object's apply would do,
// then a unified diff of the rendered manifests against the deployed
// revision's.
func (o *options) stackDiff(cmd *cobra.Command, c *client.Client, name string, req v1.StackDeployRequest) error {
	req.DryRun = true
	resp, err := c.DeployStack(cmd.Context(), o.env, name, req)
	if err != nil {
		return err
	}
	o.printStackResult(name, resp)
	old := map[string]string{}
	st, err := c.Stack(cmd.Context(), o.env, name)
	switch {
	case v1.IsNotFound(err):
	case err != nil:
		return err
	default:
		for _, h := range st.Status.History {
			if h.Number == st.Status.Revision {
				for _, m := range h.Manifests {
					old[m.File] = m.Content
				}
			}
		}
	}
	cur := map[string]string{}
	for _, m := range req.Manifests {
		cur[m.File] = m.Content
	}
	files := slices.Sorted(maps.Keys(maps.Collect(func(yield func(string, bool) bool) {
		for k := range old {
			yield(k, true)
		}
		for k := range cur {
			yield(k, true)
		}
	})))
	for _, file := range files {
		if d := unifiedDiff(file, old[file], cur[file]); d != "" {
			fmt.Fprint(o.out, d)
		}
	}
	return nil
}

func newStackPromoteCommand(o *options) *cobra.Command {
	var f stackFlags
	var from, to string
	cmd := &cobra.Command{
		Use:   "promote NAME --from ENV --to ENV [-f VALUES]...",
		Short: "Deploy to one environment exactly the image digests a stack runs in another",
		Long: "Render the stack's templates as deployed in --from with --to's values (the -f files, or\n" +
			"else the values --to deployed last, or else the stack's defaults), and pin every service's\n" +
			"and function's image to the digest it runs in --from.",
		Example: "  berth stack promote shop --from staging --to prod -f shop/values-prod.yaml",
		Args:    exactArgs(1, "the stack name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if from == "" || to == "" {
				return usageErrorf(cmd, "--from and --to are required")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			src, err := c.Stack(ctx, from, name)
			if err != nil {
				return err
			}
			var rev *v1.StackRevision
			for i := range src.Status.History {
				if src.Status.History[i].Number == src.Status.Revision {
					rev = &src.Status.History[i]
				}
			}
			if rev == nil || len(rev.Templates) == 0 {
				return v1.Conflict("stack %q in environment %q has no deployed templates to promote", name, from)
			}
			var req v1.StackDeployRequest
			if len(f.values) == 0 && len(f.sets) == 0 {
				// No values given: the target's own last values, if any.
				if dst, err := c.Stack(ctx, to, name); err == nil {
					for _, h := range dst.Status.History {
						if h.Number == dst.Status.Revision && len(h.Values) > 0 {
							var vals map[string]any
							if err := json.Unmarshal(h.Values, &vals); err == nil {
								ms, err := stack.Render(rev.Templates, vals, stack.Meta{Name: name, Environment: to})
								if err != nil {
									return err
								}
								req = v1.StackDeployRequest{Templates: rev.Templates, Values: h.Values, Manifests: ms}
							}
						}
					}
				} else if !v1.IsNotFound(err) {
					return err
				}
			}
			if req.Manifests == nil {
				if req, err = f.render(rev.Templates, name, to); err != nil {
					return err
				}
			}
			req.Cause = fmt.Sprintf("promote from %s revision %d", from, rev.Number)
			if req.Pins, err = runningDigests(cmd, c, from, rev.Objects); err != nil {
				return err
			}
			envBefore := o.env
			o.env = to
			defer func() { o.env = envBefore }()
			resp, err := c.DeployStack(ctx, to, name, req)
			if err != nil {
				return err
			}
			o.printStackResult(name, resp)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&from, "from", "", "environment to promote from")
	cmd.Flags().StringVar(&to, "to", "", "environment to deploy to")
	return cmd
}

// runningDigests maps each service and function of refs to the image it
// runs in env, name@digest from its status.
func runningDigests(cmd *cobra.Command, c *client.Client, env string, refs []string) (map[string]string, error) {
	pins := map[string]string{}
	for _, ref := range refs {
		kind, name, _ := strings.Cut(ref, "/")
		var image, digest string
		switch kind {
		case v1.KindService:
			var s v1.Service
			if err := c.Get(cmd.Context(), kind, env, name, &s); err != nil {
				return nil, err
			}
			image, digest = s.Spec.Image, s.Status.ImageDigest
		case v1.KindFunction:
			var fn v1.Function
			if err := c.Get(cmd.Context(), kind, env, name, &fn); err != nil {
				return nil, err
			}
			image, digest = fn.Spec.Image, fn.Status.ImageDigest
		default:
			continue
		}
		if digest == "" {
			return nil, v1.Conflict("%s in environment %q has no resolved image digest yet; wait for it to roll out", ref, env)
		}
		pins[ref] = pinImage(image, digest)
	}
	return pins, nil
}

// pinImage pins ref to digest: "repo:tag" → "repo@sha256:…".
func pinImage(ref, digest string) string {
	if i := strings.LastIndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref + "@" + digest
}

func newStackRollbackCommand(o *options) *cobra.Command {
	var to int64
	cmd := &cobra.Command{
		Use:     "rollback NAME [--to-revision N]",
		Short:   "Deploy an earlier revision of a stack again, with the images it ran",
		Example: "  berth stack rollback shop -e prod\n  berth stack rollback shop -e prod --to-revision 2",
		Args:    exactArgs(1, "the stack name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			resp, err := c.RollbackStack(cmd.Context(), o.env, args[0], to)
			if err != nil {
				return err
			}
			o.printStackResult(args[0], resp)
			return nil
		},
	}
	cmd.Flags().Int64Var(&to, "to-revision", 0, "revision to go back to (default: the one before the current)")
	return cmd
}

func newStackHistoryCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "history NAME",
		Short: "List a stack's revisions in an environment",
		Args:  exactArgs(1, "the stack name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			st, err := c.Stack(cmd.Context(), o.env, args[0])
			if err != nil {
				return err
			}
			if o.output == "json" || o.output == "yaml" {
				b, _ := json.Marshal(st)
				return printRaw(o.out, o.output, b)
			}
			var rows [][]string
			for _, h := range st.Status.History {
				cur := ""
				if h.Number == st.Status.Revision {
					cur = "*"
				}
				var imgs []string
				for _, ref := range slices.Sorted(maps.Keys(h.Images)) {
					img := h.Images[ref]
					if i := strings.LastIndexByte(img, '@'); i >= 0 {
						img = img[:i] + "@" + shortDigest(img[i+1:])
					}
					imgs = append(imgs, ref+"="+img)
				}
				rows = append(rows, []string{fmt.Sprint(h.Number) + cur, age(o.now(), h.Deployed), h.Cause, orNone(strings.Join(imgs, " "))})
			}
			return printTable(o.out, []string{"REVISION", "AGE", "CAUSE", "IMAGES"}, rows)
		},
	}
}
