package build

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	ggcr "github.com/google/go-containerregistry/pkg/v1"

	v1 "berth.dev/berth/api/v1"
)

// interpreted builds a Python or Node image: the runtime's base layer, and
// on top one layer with the source in /app plus its dependencies (pip's
// in /deps, npm's in /app/node_modules), installed by the base's own pip
// or npm in a chroot so native modules match the interpreter that runs
// them.
func interpreted(ctx context.Context, opts Options) (ggcr.Image, error) {
	rt := opts.Runtime
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	ic, needDeps, err := plan(rt, opts.Dir)
	if err != nil {
		return nil, err
	}
	bases := opts.Bases
	if bases == nil {
		bases = &DebianBases{Progress: progress}
	}
	base, err := bases.Base(ctx, baseOf(rt))
	if err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp("", "berth-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	app, deps := filepath.Join(stage, "app"), filepath.Join(stage, "deps")
	if err := copySource(opts.Dir, app); err != nil {
		return nil, err
	}
	if err := os.Mkdir(deps, 0o755); err != nil {
		return nil, err
	}
	if needDeps {
		if err := installDeps(ctx, rt, base, app, deps, progress); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	p := newPacker(&buf, true)
	p.normalize = true
	if err := p.dir("app", 0o755); err != nil {
		return nil, err
	}
	if err := p.tree(app, "app", nil); err != nil {
		return nil, err
	}
	if rt == RuntimeNodeLambda {
		if err := addNodeLambdaRuntime(ctx, p); err != nil {
			return nil, err
		}
	}
	if empty, _ := isEmptyDir(deps); !empty {
		if err := p.dir("deps", 0o755); err != nil {
			return nil, err
		}
		if err := p.tree(deps, "deps", nil); err != nil {
			return nil, err
		}
		ic.env = append(ic.env, "PYTHONPATH=/deps")
	}
	if err := p.close(); err != nil {
		return nil, err
	}
	code, err := layerOf(buf.Bytes())
	if err != nil {
		return nil, err
	}
	ic.env = append(append([]string{}, base.Env...), ic.env...)
	return assemble([]ggcr.Layer{base.Layer, code}, opts.Port, ic, opts.Env)
}

// plan is the entrypoint and environment of rt's image from the source,
// and whether dependencies need installing.
func plan(rt Runtime, dir string) (imageConfig, bool, error) {
	switch rt {
	case RuntimePython:
		main := ""
		for _, n := range []string{"main.py", "app.py"} {
			if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
				main = n
				break
			}
		}
		if main == "" {
			return imageConfig{}, false, v1.FieldError("path", "no main.py or app.py in %s: the Python runtime runs `python3 /app/main.py`", dir)
		}
		return imageConfig{
			entrypoint: []string{"/usr/bin/python3", "/app/" + main},
			// Unbuffered, so logs reach stdout (and berth logs) as they
			// are printed.
			env:     []string{"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"},
			workdir: "/app",
		}, requirements(dir), nil
	case RuntimeNodeLambda:
		return nodeLambdaPlan(dir)
	case RuntimeNode:
		pkg, err := readPackageJSON(dir)
		if err != nil {
			return imageConfig{}, false, err
		}
		main := path.Clean("/" + filepath.ToSlash(pkg.Main))
		if pkg.Main == "" {
			main = "/index.js"
		}
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(main))); err != nil {
			return imageConfig{}, false, v1.FieldError("path", "no %s in %s: the Node runtime runs package.json's \"main\" or index.js", strings.TrimPrefix(main, "/"), dir)
		}
		return imageConfig{
			entrypoint: []string{"/usr/bin/node", "/app" + main},
			env:        []string{"NODE_ENV=production"},
			workdir:    "/app",
		}, len(pkg.Dependencies) > 0, nil
	}
	return imageConfig{}, false, v1.FieldError("runtime", "unsupported runtime %q; supported: %s", rt, supportedList())
}

// skipSource says what of a source directory stays out of the image:
// version control and other dot-directories, installed dependencies (they
// are installed afresh), byte code, virtualenvs, and berth.yaml (so a
// manifest edit does not change the image).
func skipSource(rel string, d fs.DirEntry) bool {
	base := path.Base(rel)
	if d.IsDir() {
		return strings.HasPrefix(base, ".") || base == "node_modules" || base == "__pycache__" || base == "venv"
	}
	return strings.HasSuffix(base, ".pyc") || (rel == base && (base == "berth.yaml" || base == "berth.yml"))
}

// copySource copies dir's files into dst (regular files and symlinks).
func copySource(dir, dst string) error {
	return filepath.WalkDir(dir, func(file string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, file)
		if rel != "." && skipSource(filepath.ToSlash(rel), d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		fi, err := os.Lstat(file)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			return os.MkdirAll(target, 0o755)
		case fi.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(file)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, fi.Mode().Perm())
		}
		return nil
	})
}

func isEmptyDir(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	return len(ents) == 0, err
}

// installDeps runs pip or npm of the base in a chroot: the base's root
// file system under an overlay (so the cached base is never written), the
// staged /app and /deps bind-mounted in, /proc and /dev mounted, the
// host's resolv.conf copied in. Everything runs in a private mount
// namespace, so the mounts vanish with the process whatever happens.
func installDeps(ctx context.Context, rt Runtime, base *Base, app, deps string, progress io.Writer) error {
	if base.Root == "" {
		return v1.Unavailable("installing %s dependencies needs the base image's file system, which this base does not have", rt)
	}
	if os.Geteuid() != 0 {
		return v1.Unavailable("installing %s dependencies runs the base's own package manager in a chroot, which needs root", rt)
	}
	var tool, inner string
	switch rt {
	case RuntimePython:
		tool = "pip install"
		inner = "python3 -m pip install --no-cache-dir --no-compile --disable-pip-version-check --no-warn-script-location --root-user-action=ignore --break-system-packages --target /deps -r /app/requirements.txt"
	case RuntimeNode, RuntimeNodeLambda:
		tool = "npm install"
		inner = "cd /app && if [ -f package-lock.json ]; then npm ci --omit=dev --no-audit --no-fund --cache /tmp/npm-cache; else npm install --omit=dev --no-audit --no-fund --no-package-lock --cache /tmp/npm-cache; fi"
	}
	fmt.Fprintf(progress, "Installing dependencies (%s)…\n", tool)
	var out bytes.Buffer
	err := runChroot(ctx, chrootSpec{
		root: base.Root, overlay: true,
		binds: [][2]string{{app, "/app"}, {deps, "/deps"}},
		cmd:   inner, out: &out,
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return v1.Invalid("%s failed:\n%s", tool, tail(strings.TrimSpace(out.String()), 40))
	}
	return nil
}

// chrootSpec is a command to run in a root file system.
type chrootSpec struct {
	root string
	// overlay leaves root untouched: writes go to a throw-away upper dir.
	overlay bool
	// binds are host dirs mounted at paths inside.
	binds [][2]string
	cmd   string
	out   io.Writer
}

// runChroot runs spec.cmd with /bin/sh in a chroot of spec.root, with /proc
// and /dev mounted and the host's resolv.conf copied in, in a private
// mount namespace: the mounts vanish with the process whatever happens.
func runChroot(ctx context.Context, spec chrootSpec) error {
	work, err := os.MkdirTemp("", "berth-chroot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	target := spec.root
	script := "set -e\n"
	args := []string{"sh"}
	arg := func(v string) string {
		args = append(args, v)
		return fmt.Sprintf(`"${%d}"`, len(args)-1)
	}
	if spec.overlay {
		upper, wdir, merged := filepath.Join(work, "upper"), filepath.Join(work, "work"), filepath.Join(work, "merged")
		for _, d := range []string{upper, wdir, merged} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
		}
		lo, up, wd := arg(spec.root), arg(upper), arg(wdir)
		unq := func(q string) string { return strings.Trim(q, `"`) }
		script += fmt.Sprintf("mount -t overlay overlay -o \"lowerdir=%s,upperdir=%s,workdir=%s\" %s\n", unq(lo), unq(up), unq(wd), arg(merged))
		target = merged
	}
	t := arg(target)
	script += fmt.Sprintf("mkdir -p %[1]s/proc %[1]s/dev %[1]s/tmp %[1]s/etc\n", t)
	for _, b := range spec.binds {
		in := arg(b[1])
		script += fmt.Sprintf("mkdir -p %[1]s%[2]s\nmount --bind %[3]s %[1]s%[2]s\n", t, in, arg(b[0]))
	}
	script += fmt.Sprintf("mount -t proc proc %[1]s/proc\nmount --rbind /dev %[1]s/dev\n", t)
	script += fmt.Sprintf("rm -f %[1]s/etc/resolv.conf; cat /etc/resolv.conf > %[1]s/etc/resolv.conf 2>/dev/null || true\n", t)
	if spec.overlay {
		// pip and npm trust what the host trusts (a proxy's CA, say); the
		// copy lands in the throw-away upper dir, never in an image.
		script += fmt.Sprintf("if [ -f %[2]s ]; then mkdir -p %[1]s/etc/ssl/certs; cat %[2]s > %[1]s%[2]s; fi\n", t, hostCABundle)
	}
	script += fmt.Sprintf("exec chroot %s /bin/sh -c %s\n", t, arg(spec.cmd))
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", script}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	cmd.Env = chrootEnv()
	cmd.Stdout, cmd.Stderr = spec.out, spec.out
	return cmd.Run()
}

// hostCABundle is Debian's bundle of trusted certificates, on the host and
// in the bases alike.
const hostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// chrootEnv is the environment of pip and npm in the chroot: a fixed
// base, plus the host's proxy and package-index settings so they reach
// the same indexes the host does.
func chrootEnv() []string {
	env := append([]string{}, debianEnv...)
	env = append(env, "HOME=/tmp", "SOURCE_DATE_EPOCH=0", "PYTHONDONTWRITEBYTECODE=1", "DEBIAN_FRONTEND=noninteractive")
	if _, err := os.Stat(hostCABundle); err == nil {
		env = append(env, "NODE_EXTRA_CA_CERTS="+hostCABundle, "PIP_CERT="+hostCABundle)
	}
	var pass []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.EqualFold(k, "http_proxy"), strings.EqualFold(k, "https_proxy"), strings.EqualFold(k, "no_proxy"),
			k == "PIP_INDEX_URL", k == "PIP_EXTRA_INDEX_URL", k == "PIP_TRUSTED_HOST", k == "PIP_DEFAULT_TIMEOUT",
			strings.HasPrefix(strings.ToLower(k), "npm_config_registry"):
			pass = append(pass, kv)
		}
	}
	sort.Strings(pass)
	return append(env, pass...)
}
