package build

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	v1 "berth.dev/berth/api/v1"
)

// Base is a runtime's base image: one layer with the interpreter.
type Base struct {
	Layer ggcr.Layer
	// Root is the base's file system, unpacked: pip and npm run in it
	// (chroot over an overlay) to install dependencies with the base's
	// own interpreter. Empty when the source cannot do that.
	Root string
	// Env is the base's environment, KEY=VALUE (PATH, LANG).
	Env []string
}

// BaseSource gives the base of a runtime. DebianBases is the real one;
// tests give a small fake.
type BaseSource interface {
	Base(ctx context.Context, rt Runtime) (*Base, error)
}

// DebianRelease is the Debian release the bases are made from.
const DebianRelease = "bookworm"

// baseRecipe is part of the cache key: a change to what goes into a base
// (packages, cleaning) must make a new one rather than reuse an old one.
const baseRecipe = "2"

var basePackages = map[Runtime][]string{
	RuntimePython: {"python3", "python3-pip", "ca-certificates"},
	RuntimeNode:   {"nodejs", "npm", "ca-certificates"},
}

var debianEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}

// DebianBases makes bases from Debian's packages with debootstrap
// (--variant=minbase plus the interpreter), once per runtime and release,
// and keeps them under CacheDir/base. It needs root (debootstrap, chroot).
type DebianBases struct {
	// CacheDir defaults to DefaultCacheDir().
	CacheDir string
	// Release defaults to DebianRelease.
	Release string
	// Mirror defaults to the mirror apt is configured with (AptMirror).
	Mirror string
	// Progress receives "Building … (first time only)" and a line per
	// step; the tools' output appears only in errors.
	Progress io.Writer
}

// DefaultCacheDir is $BERTH_CACHE_DIR, else /var/cache/berth for root
// (bases are shared by every build on the machine), else the user's cache
// directory.
func DefaultCacheDir() string {
	if d := os.Getenv("BERTH_CACHE_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/cache/berth"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "berth")
	}
	return filepath.Join(os.TempDir(), "berth-cache")
}

// Base returns the cached base of rt, making it first if needed. Builds
// of the same base in parallel (two CLIs, parallel tests) wait for one
// another on a lock file.
func (b *DebianBases) Base(ctx context.Context, rt Runtime) (*Base, error) {
	pkgs, ok := basePackages[rt]
	if !ok {
		return nil, v1.FieldError("runtime", "no Debian base for runtime %q", rt)
	}
	cache := b.CacheDir
	if cache == "" {
		cache = DefaultCacheDir()
	}
	release := b.Release
	if release == "" {
		release = DebianRelease
	}
	dir := filepath.Join(cache, "base", fmt.Sprintf("%s-%s-%s-r%s", rt, release, goruntime.GOARCH, baseRecipe))
	layerPath := filepath.Join(dir, "layer.tar.gz")
	root := filepath.Join(dir, "rootfs")
	if base, err := loadBase(layerPath, root); err == nil {
		return base, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	unlock, err := lockFile(ctx, dir+".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if base, err := loadBase(layerPath, root); err == nil {
		return base, nil // another build made it while this one waited
	}
	if os.Geteuid() != 0 {
		return nil, v1.Unavailable("building the %s base image needs root (debootstrap and chroot); run the build as root once, or set BERTH_CACHE_DIR to a cache where root built it", rt)
	}
	mirror := b.Mirror
	if mirror == "" {
		mirror = AptMirror(release)
	}
	progress := b.Progress
	if progress == nil {
		progress = io.Discard
	}
	if err := ensureDebootstrap(ctx, progress); err != nil {
		return nil, err
	}
	if err := checkMirror(ctx, mirror, release); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "Building %s base image from Debian %s (first time only)…\n", rt, release)
	start := time.Now()
	if err := makeBase(ctx, dir, release, mirror, pkgs, progress); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "Built %s base image in %s (cached in %s)\n", rt, time.Since(start).Round(time.Second), dir)
	return loadBase(layerPath, root)
}

func loadBase(layerPath, root string) (*Base, error) {
	if _, err := os.Stat(filepath.Join(root, "bin")); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromFile(layerPath)
	if err != nil {
		return nil, err
	}
	return &Base{Layer: layer, Root: root, Env: debianEnv}, nil
}

// makeBase runs debootstrap into a temp dir beside dir, cleans it, packs
// the layer and renames the whole into place, so a cancelled build leaves
// no half-made base behind.
func makeBase(ctx context.Context, dir, release, mirror string, pkgs []string, progress io.Writer) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".base-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	root := filepath.Join(tmp, "rootfs")
	// debootstrap makes the minimal system; apt-get in it adds the
	// interpreter. (debootstrap --include of npm's hundreds of packages
	// fails in its configure stage; apt orders them properly.)
	// The tools' own output is kept for an error message: on success the
	// progress lines below say enough.
	var out bytes.Buffer
	fmt.Fprintf(progress, "  debootstrap --variant=minbase %s %s…\n", release, mirror)
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", release, root, mirror)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log, _ := os.ReadFile(filepath.Join(root, "debootstrap", "debootstrap.log"))
		return v1.Unavailable("debootstrap of Debian %s from %s failed: %v\n%s", release, mirror, err, tail(out.String()+string(log), 20))
	}
	fmt.Fprintf(progress, "  apt-get install %s…\n", strings.Join(pkgs, " "))
	out.Reset()
	err = runChroot(ctx, chrootSpec{
		root: root,
		cmd:  "apt-get update -q && apt-get install -y -q --no-install-recommends " + strings.Join(pkgs, " ") + " && apt-get clean",
		out:  &out,
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return v1.Unavailable("installing %s into the Debian %s base failed: %v\n%s", strings.Join(pkgs, " "), release, err, tail(out.String(), 20))
	}
	if err := cleanRootfs(root); err != nil {
		return fmt.Errorf("clean base: %w", err)
	}
	fmt.Fprintln(progress, "  packing the base layer…")
	f, err := os.Create(filepath.Join(tmp, "layer.tar.gz"))
	if err != nil {
		return err
	}
	zw := gzipTo(f)
	p := newPacker(zw, false)
	err = p.tree(root, "", func(rel string, d fs.DirEntry) bool {
		// The runtime mounts /dev, /proc and /sys; their contents from
		// debootstrap (device nodes) do not belong in an image.
		parent := filepath.Dir(rel)
		return parent == "dev" || parent == "proc" || parent == "sys" || strings.HasPrefix(parent, "dev/")
	})
	if err == nil {
		err = p.close()
	}
	if err == nil {
		err = zw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pack base: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// cleanRootfs removes what an image does not need: apt's lists and
// caches, documentation, logs, the host's resolv.conf and hostname (the
// runtime provides them) and a machine id.
func cleanRootfs(root string) error {
	for _, pattern := range []string{
		"var/lib/apt/lists/*", "var/cache/apt/*", "var/cache/debconf/*-old", "var/lib/dpkg/*-old",
		"usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "usr/share/lintian/*",
		"var/log/*", "tmp/*", "var/tmp/*", "root/.cache", "etc/resolv.conf", "etc/hostname",
	} {
		matches, _ := filepath.Glob(filepath.Join(root, pattern))
		for _, m := range matches {
			if err := os.RemoveAll(m); err != nil {
				return err
			}
		}
	}
	// Kept empty rather than removed: systemd-less images still expect
	// the file, and an empty one is not a fixed identity shared by
	// every container.
	return os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444)
}

// ensureDebootstrap installs debootstrap with apt-get when it is missing
// (the build runs as root already; Debian's package is all it takes).
func ensureDebootstrap(ctx context.Context, progress io.Writer) error {
	if _, err := exec.LookPath("debootstrap"); err == nil {
		return nil
	}
	fmt.Fprintln(progress, "debootstrap is not installed; installing it with apt-get (first time only)…")
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends", "debootstrap")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if err := cmd.Run(); err != nil {
		return v1.Unavailable("debootstrap is needed to build Python and Node base images and `apt-get install debootstrap` failed: %v\n%s", err, tail(out.String(), 10))
	}
	return nil
}

// checkMirror fails fast, with a message that says what to fix, when the
// mirror cannot be reached, instead of debootstrap's retries.
func checkMirror(ctx context.Context, mirror, release string) error {
	if strings.HasPrefix(mirror, "file:") {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	url := strings.TrimSuffix(mirror, "/") + "/dists/" + release + "/Release"
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return v1.Invalid("Debian mirror %q: %v", mirror, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			return nil
		}
		err = fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return v1.Unavailable("cannot reach the Debian mirror %s to build the base image: %v", mirror, err)
}

// AptMirror is the Debian mirror this machine's apt uses for release,
// from /etc/apt/sources.list.d/*.sources (deb822) or /etc/apt/sources.list,
// so builds use the same (reachable) host apt does. deb.debian.org when
// none is configured.
func AptMirror(release string) string {
	return aptMirror("/etc/apt", release)
}

func aptMirror(etc, release string) string {
	files, _ := filepath.Glob(filepath.Join(etc, "sources.list.d", "*.sources"))
	for _, f := range files {
		if m := mirrorFromDeb822(f, release); m != "" {
			return m
		}
	}
	lists, _ := filepath.Glob(filepath.Join(etc, "sources.list.d", "*.list"))
	for _, f := range append([]string{filepath.Join(etc, "sources.list")}, lists...) {
		if m := mirrorFromList(f, release); m != "" {
			return m
		}
	}
	return "http://deb.debian.org/debian"
}

func mirrorFromDeb822(path, release string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, stanza := range strings.Split(string(b), "\n\n") {
		fields := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(stanza))
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if strings.EqualFold(fields["enabled"], "no") || !containsWord(fields["types"], "deb") || !containsWord(fields["suites"], release) {
			continue
		}
		if uris := strings.Fields(fields["uris"]); len(uris) > 0 {
			return uris[0]
		}
	}
	return ""
}

func mirrorFromList(path, release string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") { // [arch=amd64 signed-by=…]
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 2 && f[1] == release {
			return f[0]
		}
	}
	return ""
}

func containsWord(list, w string) bool {
	for _, x := range strings.Fields(list) {
		if x == w {
			return true
		}
	}
	return false
}

// lockFile takes an exclusive flock on path, giving up when ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("build cache lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if err != syscall.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("build cache lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// tail is the last n lines of s: a tool's failure is at its end.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
