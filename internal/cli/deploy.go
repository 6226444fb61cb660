package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/build"
)

// newDeployCommand builds the source in PATH and applies PATH/berth.yaml
// with the image pinned to the digest just built: one step from code to a
// running function. The same source gives the same digest, so deploying
// unchanged code makes no new revision.
func newDeployCommand(o *options) *cobra.Command {
	var f buildFlags
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "deploy PATH",
		Short: "Build PATH and apply its berth.yaml with the new image",
		Long: "Build the source in PATH (as berth build does) and apply PATH/berth.yaml with the image of its\n" +
			"Function or Service set to the built image, pinned by digest. The tag is --tag, else the\n" +
			"manifest's image.",
		Example: "  berth init --runtime node hello && berth deploy hello --wait",
		Args:    exactArgs(1, "the source directory holding berth.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			file := filepath.Join(dir, "berth.yaml")
			if _, err := os.Stat(file); err != nil {
				if _, yerr := os.Stat(filepath.Join(dir, "berth.yml")); yerr == nil {
					file = filepath.Join(dir, "berth.yml")
				} else {
					return &v1.Error{Kind: v1.ErrInvalid, File: file, Message: pathMessage(err) + " (berth init writes one)"}
				}
			}
			ms, err := readManifests([]string{file}, nil, o.env, cmd.Flags().Changed("environment"))
			if err != nil {
				return err
			}
			var target *v1.Template
			for _, m := range ms {
				switch obj := m.obj.(type) {
				case *v1.Function:
					target = &obj.Spec.Template
					if obj.IsWasm() && f.runtime == "" {
						f.runtime = string(build.RuntimeGoWasm)
					}
				case *v1.Service:
					target = &obj.Spec.Template
				}
				if target != nil {
					break
				}
			}
			if target == nil {
				return &v1.Error{Kind: v1.ErrInvalid, File: file, Message: "no Function or Service to deploy the image to"}
			}
			if f.tag == "" {
				f.tag = target.Image
			}
			if f.tag == "" {
				return UsageError(fmt.Errorf("no image name: set spec.image in %s or pass --tag NAME:TAG", file))
			}
			img, err := o.buildAndPush(cmd.Context(), dir, f)
			if err != nil {
				return err
			}
			target.Image = withDigest(f.tag, img.Digest)
			fmt.Fprintf(o.errOut, "Deploying %s…\n", target.Image)
			return o.apply(cmd.Context(), ms, false, wait, timeout)
		},
	}
	f.register(cmd, "image name and tag (default: the manifest's image)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the deployed function or service is ready")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long --wait waits (0: forever)")
	return cmd
}

// withDigest pins name:tag to digest, keeping the tag for people reading
// the manifest: "hello:v1" → "hello:v1@sha256:…".
func withDigest(ref, digest string) string {
	repo, tag := splitTag(ref)
	if tag == "<none>" {
		return repo + "@" + digest
	}
	return repo + ":" + tag + "@" + digest
}
