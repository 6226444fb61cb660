package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/build"
)

// buildFlags are shared by build and deploy.
type buildFlags struct {
	tag, runtime, cacheDir string
	env                    []string
}

func (f *buildFlags) register(cmd *cobra.Command, tagHelp string) {
	cmd.Flags().StringVarP(&f.tag, "tag", "t", "", tagHelp)
	cmd.Flags().StringVar(&f.runtime, "runtime", "", "go, python, node, or go-wasm (a WebAssembly module for runtime: wasm) (default: detected from the source)")
	cmd.Flags().StringVar(&f.cacheDir, "cache-dir", "", "where Python and Node base images are kept (default $BERTH_CACHE_DIR, /var/cache/berth for root, else ~/.cache/berth)")
	cmd.Flags().StringArrayVar(&f.env, "env", nil, "KEY=VALUE baked into the image (repeatable)")
}

// newBuildCommand builds an image from source on this machine, without
// Docker, and stores it in the server's registry and on the node. Images
// are reproducible: the same source gives the same digest.
func newBuildCommand(o *options) *cobra.Command {
	var f buildFlags
	var output string
	cmd := &cobra.Command{
		Use:   "build PATH -t NAME:TAG",
		Short: "Build an image from Go, Python or Node source without Docker, and push it",
		Long: "Build an image from source without Docker: Go becomes a static binary in a minimal image; " +
			"Python and Node run on a base made from Debian's packages (built once per machine, cached) " +
			"with the code and its dependencies (requirements.txt, package.json) as a layer on top. " +
			"The image lands in the built-in registry and on the node.",
		Example: "  berth build ./hello -t hello:v1\n  berth build . -t api:dev --runtime python\n  berth build . -t api:dev --output api.tar   # write the image tar only",
		Args:    exactArgs(1, "the source directory"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.tag == "" {
				return UsageError(fmt.Errorf("-t/--tag NAME:TAG is required"))
			}
			if output != "" {
				res, err := o.buildImage(cmd.Context(), args[0], f, output)
				if err != nil {
					return err
				}
				fmt.Fprintf(o.out, "wrote %s (%s)\n", output, res.Digest)
				return nil
			}
			img, err := o.buildAndPush(cmd.Context(), args[0], f)
			if err != nil {
				return err
			}
			if o.output == "json" || o.output == "yaml" {
				return o.printImages([]v1.Image{img})
			}
			fmt.Fprintf(o.out, "built %s %s\n", img.Name, img.Digest)
			return nil
		},
	}
	f.register(cmd, "image name and tag, e.g. hello:v1")
	cmd.Flags().StringVar(&output, "output", "", "write the image tar (docker-save format) here instead of pushing it")
	return cmd
}

// buildImage builds dir into a docker-save tar at path.
func (o *options) buildImage(ctx context.Context, dir string, f buildFlags, path string) (build.Result, error) {
	opts := build.Options{
		Dir: dir, Ref: f.tag, Env: f.env, Runtime: build.Runtime(f.runtime), Progress: o.errOut,
		Bases: &build.DebianBases{CacheDir: f.cacheDir, Progress: o.errOut},
	}
	if opts.Runtime == "" {
		rt, err := build.Detect(dir)
		if err != nil {
			return build.Result{}, err
		}
		opts.Runtime = rt
	}
	fmt.Fprintf(o.errOut, "Building %s from %s (%s)…\n", f.tag, dir, opts.Runtime)
	return build.BuildToFile(ctx, opts, path)
}

// buildAndPush builds dir and imports the image: into the registry and
// onto the node.
func (o *options) buildAndPush(ctx context.Context, dir string, f buildFlags) (v1.Image, error) {
	c, err := o.client()
	if err != nil {
		return v1.Image{}, err
	}
	tmp, err := os.MkdirTemp("", "berth-build-")
	if err != nil {
		return v1.Image{}, err
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, "image.tar")
	res, err := o.buildImage(ctx, dir, f, path)
	if err != nil {
		return v1.Image{}, err
	}
	file, err := os.Open(path)
	if err != nil {
		return v1.Image{}, err
	}
	defer file.Close()
	fmt.Fprintf(o.errOut, "Pushing %s (%s)…\n", f.tag, shortDigest(res.Digest))
	var imgs []v1.Image
	if res.Wasm {
		// A module runs in the server: the registry is its only home.
		imgs, err = c.PushImageArchive(ctx, file)
	} else {
		imgs, err = c.ImportImage(ctx, file)
	}
	if err != nil {
		return v1.Image{}, err
	}
	if len(imgs) == 0 {
		return v1.Image{}, v1.Errorf(v1.ErrInternal, "the server imported no image")
	}
	return imgs[0], nil
}
