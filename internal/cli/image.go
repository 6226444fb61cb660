package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/archive"
)

func newImageCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image import|push|tag|ls|pull|rm",
		Short: "Manage the images in the built-in registry and on the node",
		Args:  noArgs,
		RunE:  showHelp,
	}
	cmd.AddCommand(
		newImageImportCommand(o),
		newImagePushCommand(o),
		newImageTagCommand(o),
		newImageListCommand(o),
		newImagePullCommand(o),
		newImageRemoveCommand(o),
	)
	return cmd
}

func newImageImportCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:     "import FILE|-",
		Short:   "Import an OCI image layout tar or a docker-save tar into the registry and onto the node",
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
	}
}

func newImageListCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the images in the built-in registry and on the node",
		Long: "List the images in the built-in registry (REPOSITORY, TAG) and those only on the node; " +
			"UNPACKED says whether the node's containerd has the image (same digest) ready to run.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.listImages(cmd)
		},
	}
}

func (o *options) listImages(cmd *cobra.Command) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	imgs, err := c.Images(cmd.Context())
	if err != nil {
		return err
	}
	if o.output == "json" || o.output == "yaml" {
		b, err := json.Marshal(imgs)
		if err != nil {
			return v1.Errorf(v1.ErrInternal, "render images: %v", err)
		}
		return printRaw(o.out, o.output, b)
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
		repo, tag := img.Repository, img.Tag
		if !img.Registry {
			repo, tag = splitTag(img.Name)
		}
		rows = append(rows, []string{repo, tag, digest, humanSize(img.Size), yesNo(img.Node)})
	}
	return printTable(o.out, []string{"REPOSITORY", "TAG", "DIGEST", "SIZE", "UNPACKED"}, rows)
}

func newImagePullCommand(o *options) *cobra.Command {
	return &cobra.Command{
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
	}
}

func newImageRemoveCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:     "rm REF",
		Aliases: []string{"remove"},
		Short:   "Remove an image from the built-in registry and the node",
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
	}
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

func newImagePushCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "push FILE|DIR",
		Short: "Push an image archive or OCI layout directory to the built-in registry",
		Long: "Push the images of a docker-save tar, an OCI image layout tar or an OCI image layout " +
			"directory to the built-in registry, under their names without registry host " +
			"(hello:v1 is repository hello). The node pulls them from there when a revision needs them.\n\n" +
			"Repositories ENV/NAME belong to environment ENV: tokens of ENV (deployer or admin) push, tag " +
			"and remove there. Other repositories are shared: every token reads them, only an admin " +
			"token for all environments writes them.",
		Example: "  skopeo copy docker://nginx:1.25 oci:./nginx:docker.io/library/nginx:1.25 && berth image push ./nginx\n  berth image push api.tar",
		Args:    exactArgs(1, "the archive or OCI layout directory"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			st, err := os.Stat(path)
			if err != nil {
				return &v1.Error{Kind: v1.ErrInvalid, File: path, Message: pathMessage(err) +
					" (push takes an image archive or an OCI layout directory; an image only on the node cannot be pushed from here: push its archive)"}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			var r io.Reader
			if st.IsDir() {
				if _, err := os.Stat(filepath.Join(path, "index.json")); err != nil {
					return &v1.Error{Kind: v1.ErrInvalid, File: path, Message: "not an OCI image layout (no index.json)"}
				}
				pr, pw := io.Pipe()
				go func() { pw.CloseWithError(archive.TarDir(path, pw)) }()
				defer pr.Close()
				r = pr
			} else {
				f, err := os.Open(path)
				if err != nil {
					return &v1.Error{Kind: v1.ErrInvalid, File: path, Message: pathMessage(err)}
				}
				defer f.Close()
				r = f
			}
			imgs, err := c.PushImageArchive(cmd.Context(), r)
			if err != nil {
				return err
			}
			if o.output == "json" || o.output == "yaml" {
				return o.printImages(imgs)
			}
			for _, img := range imgs {
				fmt.Fprintf(o.out, "pushed %s %s\n", img.Name, img.Digest)
			}
			return nil
		},
	}
}

func newImageTagCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE TARGET",
		Short: "Give an image of the built-in registry another name",
		Long: "Give an image of the built-in registry another name. The target's repository must be one " +
			"the token may write (ENV/NAME for its environments; shared repositories need an admin token); " +
			"across repositories the content is shared, not copied.",
		Example: "  berth image tag hello:v1 hello:stable\n  berth image tag shop/api:v1 shop/api:stable",
		Args:    exactArgs(2, "the image", "its new name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			img, err := c.TagImage(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if o.output == "json" || o.output == "yaml" {
				return o.printImages([]v1.Image{img})
			}
			fmt.Fprintf(o.out, "tagged %s %s\n", img.Name, img.Digest)
			return nil
		},
	}
}

// splitTag splits "repo:tag" (the colon after the last slash); no tag is
// "<none>".
func splitTag(ref string) (string, string) {
	if i := strings.LastIndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		return ref[:i], ref[i+1:]
	}
	return ref, "<none>"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
