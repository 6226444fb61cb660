package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/build"
)

// newBuildCommand builds an image from source on this machine, without
// Docker, and imports it into the node. Go only for now; the image is
// reproducible, so the same source gives the same digest.
func newBuildCommand(o *options) *cobra.Command {
	var tag, output string
	var env []string
	cmd := &cobra.Command{
		Use:     "build PATH -t NAME:TAG",
		Short:   "Build an image from Go source without Docker and import it",
		Example: "  berth build ./examples/hello -t hello:v1\n  berth build . -t api:dev --output api.tar   # write the image tar only",
		Args:    exactArgs(1, "the source directory"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tag == "" {
				return UsageError(fmt.Errorf("-t/--tag NAME:TAG is required"))
			}
			dir := args[0]
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
				if _, err := os.Stat(filepath.Join(dir, "main.go")); err != nil {
					return &v1.Error{Kind: v1.ErrInvalid, File: dir, Message: "no Go package here (no go.mod or main.go); only Go builds are supported so far"}
				}
			}
			fmt.Fprintf(o.errOut, "Building %s from %s…\n", tag, dir)
			path := output
			if path == "" {
				tmp, err := os.MkdirTemp("", "berth-build-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				path = filepath.Join(tmp, "image.tar")
			}
			opts := build.GoOptions{Dir: dir, Ref: tag, Env: env}
			if err := build.GoToFile(cmd.Context(), opts, path); err != nil {
				return err
			}
			if output != "" {
				fmt.Fprintf(o.out, "wrote %s\n", output)
				return nil
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			c, err := o.client()
			if err != nil {
				return err
			}
			imgs, err := c.ImportImage(cmd.Context(), f)
			if err != nil {
				return err
			}
			for _, img := range imgs {
				fmt.Fprintf(o.out, "built %s %s\n", img.Name, img.Digest)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&tag, "tag", "t", "", "image name and tag, e.g. hello:v1")
	cmd.Flags().StringVar(&output, "output", "", "write the image tar here instead of importing it")
	cmd.Flags().StringArrayVar(&env, "env", nil, "KEY=VALUE baked into the image (repeatable)")
	return cmd
}
