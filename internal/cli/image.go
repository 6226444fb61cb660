package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
)

func newImageCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image import|ls|pull|rm",
		Short: "Manage the images on the node",
		Args:  noArgs,
		RunE:  showHelp,
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:     "import FILE|-",
			Short:   "Import an OCI image layout tar or a docker-save tar",
			Example: "  docker save nginx:1.25 | berth image import -\n  skopeo copy docker://nginx:1.25 oci-archive:nginx.tar && berth image import nginx.tar",
			Args:    exactArgs(1, "the tar file (or - for stdin)"),
			RunE: func(cmd *cobra.Command, args []string) error {
				var r io.Reader = cmd.InOrStdin()
				if args[0] != "-" {
					f, err := os.Open(args[0])
					if err != nil {
						return &v1.Error{Kind: v1.ErrInvalid, File: args[0], Message: pathMessage(err)}
					}
					defer f.Close()
					r = f
				}
				c, err := o.client()
				if err != nil {
					return err
				}
				imgs, err := c.ImportImage(cmd.Context(), r)
				if err != nil {
					return err
				}
				if o.output == "json" || o.output == "yaml" {
					return o.printImages(imgs)
				}
				for _, img := range imgs {
					fmt.Fprintf(o.out, "imported %s %s\n", img.Name, img.Digest)
				}
				return nil
			},
		},
		&cobra.Command{
			Use:     "ls",
			Aliases: []string{"list"},
			Short:   "List the images on the node",
			Args:    noArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := o.client()
				if err != nil {
					return err
				}
				imgs, err := c.ListImages(cmd.Context())
				if err != nil {
					return err
				}
				if o.output == "json" || o.output == "yaml" {
					return o.printImages(imgs)
				}
				if o.output == "name" {
					for _, img := range imgs {
						fmt.Fprintln(o.out, img.Name)
					}
					return nil
				}
				if len(imgs) == 0 {
					fmt.Fprintln(o.errOut, "No images found")
					return nil
				}
				var rows [][]string
				for _, img := range imgs {
					digest := shortDigest(img.Digest)
					if o.output == "wide" {
						digest = img.Digest
					}
					rows = append(rows, []string{img.Name, digest, humanSize(img.Size)})
				}
				return printTable(o.out, []string{"NAME", "DIGEST", "SIZE"}, rows)
			},
		},
		&cobra.Command{
			Use:   "pull REF",
			Short: "Pull an image from a registry onto the node",
			Args:  exactArgs(1, "the image reference"),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := o.client()
				if err != nil {
					return err
				}
				img, err := c.PullImage(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if o.output == "json" || o.output == "yaml" {
					return o.printImages([]v1.Image{img})
				}
				fmt.Fprintf(o.out, "pulled %s %s\n", img.Name, img.Digest)
				return nil
			},
		},
		&cobra.Command{
			Use:     "rm REF",
			Aliases: []string{"remove"},
			Short:   "Remove an image from the node",
			Args:    exactArgs(1, "the image reference"),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := o.client()
				if err != nil {
					return err
				}
				if err := c.RemoveImage(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(o.out, "image %q removed\n", args[0])
				return nil
			},
		},
	)
	return cmd
}

func (o *options) printImages(imgs []v1.Image) error {
	if imgs == nil {
		imgs = []v1.Image{}
	}
	b, err := json.Marshal(imgs)
	if err != nil {
		return v1.Errorf(v1.ErrInternal, "render images: %v", err)
	}
	return printRaw(o.out, o.output, b)
}
