package cli

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
)

// The commands of an environment's state: its object store (bucket,
// object), its key-value store (kv) and the access keys that sign S3
// requests (accesskey).

func newBucketCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bucket",
		Short: "Create, list and remove buckets of the environment's object store (S3 API at s3.ENV.berth.localhost)",
		Args:  noArgs,
		RunE:  showHelp,
	}
	create := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a bucket",
		Example: "  berth bucket create photos -e dev",
		Args:    exactArgs(1, "the bucket name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.CreateBucket(cmd.Context(), o.env, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(o.out, "bucket %q created in environment %s\n", args[0], o.env)
			return nil
		},
	}
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the environment's buckets",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			bs, err := c.Buckets(cmd.Context(), o.env)
			if err != nil {
				return err
			}
			if o.output == "json" || o.output == "yaml" {
				b, _ := json.Marshal(bs)
				return printRaw(o.out, o.output, b)
			}
			var rows [][]string
			for _, b := range bs {
				rows = append(rows, []string{b.Name, age(o.now(), b.Created)})
			}
			return printTable(o.out, []string{"NAME", "AGE"}, rows)
		},
	}
	var force bool
	rm := &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"delete"},
		Short:   "Remove an empty bucket (--force removes its objects first)",
		Args:    exactArgs(1, "the bucket name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.DeleteBucket(cmd.Context(), o.env, args[0], force); err != nil {
				return err
			}
			fmt.Fprintf(o.out, "bucket %q removed from environment %s\n", args[0], o.env)
			return nil
		},
	}
	rm.Flags().BoolVar(&force, "force", false, "remove the bucket's objects too")
	cmd.AddCommand(create, ls, rm)
	return cmd
}

// splitObjectPath reads BUCKET/KEY.
func splitObjectPath(cmd *cobra.Command, arg string, keyRequired bool) (bucket, key string, err error) {
	bucket, key, _ = strings.Cut(strings.TrimPrefix(arg, "s3://"), "/")
	if bucket == "" || (keyRequired && key == "") {
		return "", "", usageErrorf(cmd, "%q is not BUCKET/KEY", arg)
	}
	return bucket, key, nil
}

func newObjectCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "object",
		Short: "Put, get, list and remove objects of the environment's object store",
		Args:  noArgs,
		RunE:  showHelp,
	}
	var contentType string
	put := &cobra.Command{
		Use:     "put BUCKET/KEY FILE|-",
		Short:   "Upload a file (or standard input) as an object",
		Example: "  berth object put photos/cat.jpg ./cat.jpg -e dev\n  echo hello | berth object put notes/hello.txt -",
		Args:    exactArgs(2, "BUCKET/KEY", "the file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			bucket, key, err := splitObjectPath(cmd, args[0], true)
			if err != nil {
				return err
			}
			var r io.Reader = cmd.InOrStdin()
			size := int64(-1)
			ct := contentType
			if args[1] != "-" {
				f, err := os.Open(args[1])
				if err != nil {
					return v1.Invalid("%v", err)
				}
				defer f.Close()
				if st, err := f.Stat(); err == nil {
					size = st.Size()
				}
				r = f
				if ct == "" {
					ct = mime.TypeByExtension(filepath.Ext(args[1]))
				}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			info, err := c.PutObject(cmd.Context(), o.env, bucket, key, r, size, ct)
			if err != nil {
				return err
			}
			fmt.Fprintf(o.out, "%s/%s: %d bytes, etag %s\n", bucket, key, info.Size, info.ETag)
			return nil
		},
	}
	put.Flags().StringVar(&contentType, "content-type", "", "the object's content type (default: from the file's extension)")
	get := &cobra.Command{
		Use:     "get BUCKET/KEY [FILE|-]",
		Short:   "Download an object to a file (default: standard output)",
		Example: "  berth object get photos/cat.jpg ./cat.jpg -e dev",
		Args:    rangeArgs(1, 2, "BUCKET/KEY", "the file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			bucket, key, err := splitObjectPath(cmd, args[0], true)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			body, err := c.GetObject(cmd.Context(), o.env, bucket, key)
			if err != nil {
				return err
			}
			defer body.Close()
			if len(args) == 1 || args[1] == "-" {
				_, err = io.Copy(o.out, body)
				return err
			}
			f, err := os.Create(args[1])
			if err != nil {
				return v1.Invalid("%v", err)
			}
			if _, err := io.Copy(f, body); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		},
	}
	var recursive bool
	ls := &cobra.Command{
		Use:     "ls BUCKET[/PREFIX]",
		Aliases: []string{"list"},
		Short:   "List objects (one level of '/' unless --recursive)",
		Args:    exactArgs(1, "the bucket"),
		RunE: func(cmd *cobra.Command, args []string) error {
			bucket, prefix, err := splitObjectPath(cmd, args[0], false)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			opts := client.ObjectListOptions{Prefix: prefix}
			if !recursive {
				opts.Delimiter = "/"
			}
			var items []v1.ObjectInfo
			var prefixes []string
			for {
				page, err := c.Objects(cmd.Context(), o.env, bucket, opts)
				if err != nil {
					return err
				}
				items = append(items, page.Items...)
				prefixes = append(prefixes, page.Prefixes...)
				if page.Next == "" {
					break
				}
				opts.After = page.Next
			}
			if o.output == "json" || o.output == "yaml" {
				b, _ := json.Marshal(v1.ObjectList{Items: items, Prefixes: prefixes})
				return printRaw(o.out, o.output, b)
			}
			var rows [][]string
			for _, p := range prefixes {
				rows = append(rows, []string{p, "-", "-", ""})
			}
			for _, it := range items {
				rows = append(rows, []string{it.Key, strconv.FormatInt(it.Size, 10), it.ContentType, age(o.now(), it.LastModified)})
			}
			return printTable(o.out, []string{"KEY", "SIZE", "TYPE", "AGE"}, rows)
		},
	}
	ls.Flags().BoolVarP(&recursive, "recursive", "r", false, "list every key under the prefix")
	rm := &cobra.Command{
		Use:     "rm BUCKET/KEY",
		Aliases: []string{"delete"},
		Short:   "Remove an object",
		Args:    exactArgs(1, "BUCKET/KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			bucket, key, err := splitObjectPath(cmd, args[0], true)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.DeleteObject(cmd.Context(), o.env, bucket, key); err != nil {
				return err
			}
			fmt.Fprintf(o.out, "%s/%s removed\n", bucket, key)
			return nil
		},
	}
	cmd.AddCommand(put, get, ls, rm)
	return cmd
}

func newKVCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kv",
		Short: "Get, put, list, watch and remove keys of the environment's key-value store",
		Args:  noArgs,
		RunE:  showHelp,
	}
	get := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key's value (its revision on standard error with -o wide)",
		Args:  exactArgs(1, "the key"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			e, err := c.KVGet(cmd.Context(), o.env, args[0])
			if err != nil {
				return err
			}
			if o.output == "json" || o.output == "yaml" {
				b, _ := json.Marshal(e)
				return printRaw(o.out, o.output, b)
			}
			if o.output == "wide" {
				fmt.Fprintf(o.errOut, "revision %d\n", e.Revision)
			}
			o.out.Write(e.Value)
			if len(e.Value) > 0 && e.Value[len(e.Value)-1] != '\n' {
				fmt.Fprintln(o.out)
			}
			return nil
		},
	}
	var ttl time.Duration
	var ifRevision int64
	var create bool
	put := &cobra.Command{
		Use:     "put KEY VALUE|-",
		Short:   "Set a key (compare-and-swap with --if-revision, create-only with --create, expiry with --ttl)",
		Example: "  berth kv put config/mode fast -e dev\n  berth kv put session/abc token --ttl 30m\n  berth kv put counter 2 --if-revision 41",
		Args:    exactArgs(2, "the key", "the value"),
		RunE: func(cmd *cobra.Command, args []string) error {
			value := []byte(args[1])
			if args[1] == "-" {
				b, err := io.ReadAll(cmd.InOrStdin())
				if err != nil {
					return err
				}
				value = b
			}
			opts := client.KVPutOptions{TTL: ttl}
			if create {
				var zero uint64
				opts.IfRevision = &zero
			} else if cmd.Flags().Changed("if-revision") {
				r := uint64(ifRevision)
				opts.IfRevision = &r
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			rev, err := c.KVPut(cmd.Context(), o.env, args[0], value, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(o.out, "%s: revision %d\n", args[0], rev)
			return nil
		},
	}
	put.Flags().DurationVar(&ttl, "ttl", 0, "remove the key this long after the put (at least 1s)")
	put.Flags().Int64Var(&ifRevision, "if-revision", 0, "only if the key is at this revision")
	put.Flags().BoolVar(&create, "create", false, "only if the key does not exist")
	var values bool
	ls := &cobra.Command{
		Use:     "ls [PREFIX]",
		Aliases: []string{"list"},
		Short:   "List keys under a prefix",
		Args:    rangeArgs(0, 1, "the prefix"),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			items, err := c.KVList(cmd.Context(), o.env, prefix, values)
			if err != nil {
				return err
			}
			if o.output == "json" || o.output == "yaml" {
				b, _ := json.Marshal(items)
				return printRaw(o.out, o.output, b)
			}
			var rows [][]string
			for _, e := range items {
				row := []string{e.Key, strconv.FormatUint(e.Revision, 10), age(o.now(), e.Created)}
				if values {
					row = append(row, printable(e.Value))
				}
				rows = append(rows, row)
			}
			head := []string{"KEY", "REVISION", "AGE"}
			if values {
				head = append(head, "VALUE")
			}
			return printTable(o.out, head, rows)
		},
	}
	ls.Flags().BoolVar(&values, "values", false, "show the values too")
	watch := &cobra.Command{
		Use:   "watch [PREFIX]",
		Short: "Print every change under a prefix until interrupted",
		Args:  rangeArgs(0, 1, "the prefix"),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			return c.KVWatch(ctx, o.env, prefix, func(e client.KVEntry) {
				if o.output == "json" {
					b, _ := json.Marshal(e)
					fmt.Fprintln(o.out, string(b))
					return
				}
				fmt.Fprintf(o.out, "%s %s %d %s\n", e.Op, e.Key, e.Revision, printable(e.Value))
			})
		},
	}
	var rmRevision int64
	rm := &cobra.Command{
		Use:     "rm KEY",
		Aliases: []string{"delete"},
		Short:   "Remove a key",
		Args:    exactArgs(1, "the key"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var rev *uint64
			if cmd.Flags().Changed("if-revision") {
				r := uint64(rmRevision)
				rev = &r
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.KVDelete(cmd.Context(), o.env, args[0], rev); err != nil {
				return err
			}
			fmt.Fprintf(o.out, "%s removed\n", args[0])
			return nil
		},
	}
	rm.Flags().Int64Var(&rmRevision, "if-revision", 0, "only if the key is at this revision")
	cmd.AddCommand(get, put, ls, watch, rm)
	return cmd
}

// printable shows a value in a table: text as it is (shortened), bytes
// as base64.
func printable(b []byte) string {
	s := string(b)
	for _, r := range s {
		if r == '\uFFFD' || r < 0x20 && r != '\t' {
			s = "base64:" + base64.StdEncoding.EncodeToString(b)
			break
		}
	}
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func newAccessKeyCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "accesskey",
		Short: "Issue, list and revoke S3 access key pairs (they act as the token that made them)",
		Args:  noArgs,
		RunE:  showHelp,
	}
	create := &cobra.Command{
		Use:   "create",
		Short: "Issue an access key pair to the current token and print it (the secret only now)",
		Long: "Issue an access key pair for the S3 API (AWS Signature Version 4). It acts as the token\n" +
			"that made it: that token's environments and role (a viewer reads, a deployer writes), and\n" +
			"it stops working when the token is revoked.",
		Example: "  eval $(berth accesskey create -o env)\n  aws --endpoint-url http://s3.dev.berth.localhost:8080 s3 ls",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ak, err := c.CreateAccessKey(cmd.Context())
			if err != nil {
				return err
			}
			if o.output == "json" || o.output == "yaml" {
				b, _ := json.Marshal(ak)
				return printRaw(o.out, o.output, b)
			}
			fmt.Fprintf(o.errOut, "access key %s issued to token %q; its secret is shown only now:\n", ak.Metadata.Name, ak.Spec.Token)
			fmt.Fprintf(o.out, "AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n", ak.Metadata.Name, ak.Secret)
			return nil
		},
	}
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List access keys (never their secrets)",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			keys, err := c.AccessKeys(cmd.Context())
			if err != nil {
				return err
			}
			var rows [][]string
			for _, k := range keys {
				rows = append(rows, []string{k.Metadata.Name, k.Spec.Token, age(o.now(), k.Metadata.CreationTimestamp)})
			}
			return printTable(o.out, []string{"ACCESS KEY ID", "TOKEN", "AGE"}, rows)
		},
	}
	rm := &cobra.Command{
		Use:     "rm ID",
		Aliases: []string{"revoke", "delete"},
		Short:   "Revoke an access key",
		Args:    exactArgs(1, "the access key ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.DeleteAccessKey(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(o.out, "access key %s revoked\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, ls, rm)
	return cmd
}

// describeEnvironment shows an environment: its network, policy, quota
// and what its object and key-value stores hold.
func (o *options) describeEnvironment(cmd *cobra.Command, name string) error {
	ctx := cmd.Context()
	c, err := o.client()
	if err != nil {
		return err
	}
	var e v1.Environment
	if err := c.Get(ctx, v1.KindEnvironment, "", name, &e); err != nil {
		return err
	}
	var d describer
	d.kv("Name", e.Metadata.Name)
	d.kv("Labels", labels(e.Metadata.Labels)...)
	d.kv("Created", timestamp(e.Metadata.CreationTimestamp))
	d.kv("Allow From", orNoneList(e.Spec.AllowFrom)...)
	if e.Status.Subnet != "" {
		d.kv("Subnet", e.Status.Subnet)
		d.kv("Gateway", e.Status.Gateway)
	}
	if e.Status.Namespace != "" {
		d.kv("Namespace", e.Status.Namespace)
	}
	var quota []string
	if q := e.Spec.Quota; q != nil {
		for _, p := range []struct{ k, v string }{{"cpu", q.CPU}, {"memory", q.Memory}, {"registry", q.Registry}, {"objectStorage", q.ObjectStorage}} {
			if p.v != "" {
				quota = append(quota, p.k+"="+p.v)
			}
		}
		if q.Objects > 0 {
			quota = append(quota, "objects="+strconv.FormatInt(q.Objects, 10))
		}
	}
	d.kv("Quota", orNoneList(quota)...)
	u, err := c.StateUsage(ctx, name)
	if err == nil {
		objs := fmt.Sprintf("%d buckets, %d objects, %s", u.Buckets, u.Objects, humanBytes(u.ObjectBytes))
		if u.QuotaBytes > 0 {
			objs += " of " + humanBytes(u.QuotaBytes)
		}
		if u.QuotaObjects > 0 {
			objs += fmt.Sprintf(" (at most %d objects)", u.QuotaObjects)
		}
		d.kv("Object Store", objs, "http://s3."+name+".berth.localhost (S3 API: berth accesskey create)")
		d.kv("Key-Value Store", fmt.Sprintf("%d entries, %s", u.KVKeys, humanBytes(u.KVBytes)), "http://kv."+name+".berth.localhost")
	} else {
		d.kv("Object Store", "unknown: "+err.Error())
	}
	return d.flush(o.out)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
