package build

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	gcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	v1 "berth.dev/berth/api/v1"
)

// fakeBases is a tiny base layer standing in for Debian's: what the unit
// tests check (the code layer, the config, digests) does not depend on
// what is inside the base.
type fakeBases struct{ calls int }

func (f *fakeBases) Base(ctx context.Context, rt Runtime) (*Base, error) {
	f.calls++
	var buf bytes.Buffer
	p := newPacker(&buf, true)
	p.dir("usr/bin", 0o755)
	p.bytes("usr/bin/"+string(rt), 0o755, []byte("#!/bin/sh\n"))
	p.close()
	l, err := layerOf(buf.Bytes())
	if err != nil {
		return nil, err
	}
	return &Base{Layer: l, Env: []string{"PATH=/usr/bin"}}, nil
}

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, c := range files {
		p := filepath.Join(dir, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var sources = map[Runtime]map[string]string{
	RuntimePython: {"main.py": "print('hi')\n", "lib/util.py": "X = 1\n", "requirements.txt": "# nothing\n", "berth.yaml": "kind: Function\n"},
	RuntimeNode:   {"package.json": `{"name":"f","main":"server.js"}`, "server.js": "console.log('hi')\n", "lib/a.js": "module.exports = 1\n"},
	RuntimeGo:     {"go.mod": "module example.com/f\n\ngo 1.22\n", "main.go": "package main\nfunc main() { println(\"hi\") }\n"},
	// Any Go program builds as a handler; testdata/golambda is a real one.
	RuntimeGoLambda:   {"go.mod": "module example.com/f\n\ngo 1.22\n", "main.go": "package main\nfunc main() { println(\"hi\") }\n"},
	RuntimeNodeLambda: {"index.js": "exports.handler = async (event) => event;\n", "lib/a.js": "module.exports = 1\n"},
}

// builtImage reads the image a build wrote (a docker-save tarball) and its
// config.
func builtImage(t *testing.T, tarBytes []byte) (gcrv1.Image, *gcrv1.ConfigFile) {
	t.Helper()
	tag, _ := name.NewTag("f:v1")
	img, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tarBytes)), nil }, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return img, cf
}

// layerEntry is one entry of an image layer, with its content.
type layerEntry struct {
	hdr  *tar.Header
	data []byte
}

// layerEntries reads every entry of layer i of img (negative: from the
// top), in order.
func layerEntries(t *testing.T, img gcrv1.Image, i int) []layerEntry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if i < 0 {
		i += len(layers)
	}
	rc, err := layers[i].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var out []layerEntry
	for {
		h, err := tr.Next()
		if err != nil {
			return out
		}
		b, _ := io.ReadAll(tr)
		out = append(out, layerEntry{h, b})
	}
}

func build(t *testing.T, dir string, rt Runtime) (Result, []byte) {
	t.Helper()
	var out bytes.Buffer
	res, err := Build(context.Background(), Options{Dir: dir, Ref: "f:v1", Runtime: rt, Bases: &fakeBases{}}, &out)
	if err != nil {
		t.Fatalf("build %s: %v", rt, err)
	}
	return res, out.Bytes()
}

// The same source gives the same digest for every runtime, even copied
// elsewhere with other mtimes and a different umask: digests are how
// revisions pin images.
func TestBuildReproducible(t *testing.T) {
	for _, rt := range Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			if (rt == RuntimeGo || rt == RuntimeGoLambda) && testing.Short() {
				t.Skip("compiles Go")
			}
			a := writeTree(t, sources[rt])
			b := writeTree(t, sources[rt])
			old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
			filepath.Walk(b, func(p string, _ os.FileInfo, _ error) error {
				os.Chtimes(p, old, old)
				return nil
			})
			for n := range sources[rt] {
				os.Chmod(filepath.Join(b, n), 0o664)
			}
			r1, _ := build(t, a, rt)
			r2, _ := build(t, a, rt)
			r3, _ := build(t, b, rt)
			if r1.Digest != r2.Digest || r1.Digest != r3.Digest {
				t.Fatalf("same source, different digests: %s %s %s", r1.Digest, r2.Digest, r3.Digest)
			}
			if r1.Runtime != rt {
				t.Fatalf("runtime %s, want %s", r1.Runtime, rt)
			}
			// A change to the code changes the digest.
			for n, c := range sources[rt] {
				if strings.HasSuffix(n, ".py") || strings.HasSuffix(n, ".js") {
					os.WriteFile(filepath.Join(a, n), []byte(c+"\n// changed\n"), 0o644)
					break
				}
			}
			if rt != RuntimeGo && rt != RuntimeGoLambda {
				if r4, _ := build(t, a, rt); r4.Digest == r1.Digest {
					t.Fatal("a source change kept the digest")
				}
			}
		})
	}
}

// The image runs the interpreter on the entry file, with the source in
// /app on top of the base; berth.yaml and byte code stay out.
func TestInterpretedImageLayout(t *testing.T) {
	dir := writeTree(t, sources[RuntimePython])
	os.MkdirAll(filepath.Join(dir, "__pycache__"), 0o755)
	os.WriteFile(filepath.Join(dir, "__pycache__", "main.cpython-311.pyc"), []byte("x"), 0o644)
	os.MkdirAll(filepath.Join(dir, ".git"), 0o755)
	os.WriteFile(filepath.Join(dir, ".git", "HEAD"), []byte("x"), 0o644)
	_, tarBytes := build(t, dir, RuntimePython)
	img, cf := builtImage(t, tarBytes)
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/usr/bin/python3 /app/main.py" {
		t.Errorf("entrypoint %q", got)
	}
	env := strings.Join(cf.Config.Env, " ")
	for _, want := range []string{"PORT=8080", "PYTHONUNBUFFERED=1", "PATH=/usr/bin"} {
		if !strings.Contains(env, want) {
			t.Errorf("env %q lacks %s", env, want)
		}
	}
	if !cf.Created.Time.Equal(epoch) {
		t.Errorf("created %v, want the epoch", cf.Created.Time)
	}
	layers, _ := img.Layers()
	if len(layers) != 2 {
		t.Fatalf("%d layers, want base + code", len(layers))
	}
	var names []string
	for _, e := range layerEntries(t, img, 1) {
		names = append(names, e.hdr.Name)
		if e.hdr.Uid != 0 || !e.hdr.ModTime.Equal(epoch) {
			t.Errorf("%s: uid %d mtime %v", e.hdr.Name, e.hdr.Uid, e.hdr.ModTime)
		}
	}
	got := strings.Join(names, " ")
	if got != "app/ app/lib/ app/lib/util.py app/main.py app/requirements.txt" {
		t.Errorf("code layer holds %s", got)
	}
}

func TestNodeEntrypointFromPackageJSON(t *testing.T) {
	dir := writeTree(t, sources[RuntimeNode])
	ic, deps, err := plan(RuntimeNode, dir)
	if err != nil || deps {
		t.Fatalf("plan: %v deps=%v", err, deps)
	}
	if got := strings.Join(ic.entrypoint, " "); got != "/usr/bin/node /app/server.js" {
		t.Errorf("entrypoint %q", got)
	}
	os.Remove(filepath.Join(dir, "server.js"))
	if _, _, err := plan(RuntimeNode, dir); !v1.IsInvalid(err) || !strings.Contains(err.Error(), "server.js") {
		t.Errorf("missing main: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"dependencies": {"left-pad": "1"}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "index.js"), nil, 0o644)
	if ic, deps, err := plan(RuntimeNode, dir); err != nil || !deps || ic.entrypoint[1] != "/app/index.js" {
		t.Errorf("index.js with dependencies: %v %v %v", ic, deps, err)
	}
}

func TestDetect(t *testing.T) {
	cases := []struct {
		files map[string]string
		want  Runtime
	}{
		{map[string]string{"go.mod": ""}, RuntimeGo},
		{map[string]string{"main.go": ""}, RuntimeGo},
		{map[string]string{"package.json": "{}"}, RuntimeNode},
		{map[string]string{"requirements.txt": ""}, RuntimePython},
		{map[string]string{"app.py": ""}, RuntimePython},
		{map[string]string{"go.mod": "", "package.json": "{}"}, RuntimeGo},
		{map[string]string{"go.mod": "module f\n\nrequire github.com/aws/aws-lambda-go v1.55.1\n"}, RuntimeGoLambda},
		{map[string]string{"package.json": "{}", "index.js": "exports.handler = async (event) => event;\n"}, RuntimeNodeLambda},
		// A server that also exports a handler (for tests, say) is a server.
		{map[string]string{"package.json": "{}", "index.js": "exports.handler = h;\nhttp.createServer(h).listen(8080);\n"}, RuntimeNode},
	}
	for _, c := range cases {
		got, err := Detect(writeTree(t, c.files))
		if err != nil || got != c.want {
			t.Errorf("%v: %s %v, want %s", c.files, got, err, c.want)
		}
	}
	_, err := Detect(writeTree(t, map[string]string{"README": ""}))
	if !v1.IsInvalid(err) || !strings.Contains(err.Error(), "--runtime") || !strings.Contains(err.Error(), "go, node, python") {
		t.Errorf("nothing to detect: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	_, err := ParseRuntime("ruby")
	if !v1.IsInvalid(err) || !strings.Contains(err.Error(), `unsupported runtime "ruby"; supported: go, node, python, go-lambda, node-lambda`) {
		t.Errorf("ruby: %v", err)
	}
	dir := writeTree(t, map[string]string{"requirements.txt": "flask\n"})
	_, err = Build(context.Background(), Options{Dir: dir, Ref: "f:v1", Bases: &fakeBases{}}, io.Discard)
	if !v1.IsInvalid(err) || !strings.Contains(err.Error(), "no main.py or app.py") {
		t.Errorf("python without main.py: %v", err)
	}
	// Dependencies need a base with a file system to run pip in.
	os.WriteFile(filepath.Join(dir, "main.py"), nil, 0o644)
	_, err = Build(context.Background(), Options{Dir: dir, Ref: "f:v1", Bases: &fakeBases{}}, io.Discard)
	if v1.KindOf(err) != v1.ErrUnavailable || !strings.Contains(err.Error(), "dependencies") {
		t.Errorf("requirements with a fake base: %v", err)
	}
	_, err = Build(context.Background(), Options{Dir: dir, Ref: "Bad Tag", Bases: &fakeBases{}}, io.Discard)
	if !v1.IsInvalid(err) {
		t.Errorf("bad tag: %v", err)
	}
}

func TestAptMirror(t *testing.T) {
	etc := t.TempDir()
	os.MkdirAll(filepath.Join(etc, "sources.list.d"), 0o755)
	if got := aptMirror(etc, "bookworm"); got != "http://deb.debian.org/debian" {
		t.Errorf("nothing configured: %s", got)
	}
	os.WriteFile(filepath.Join(etc, "sources.list"), []byte("# c\ndeb [arch=amd64 signed-by=/k.gpg] http://list.example/debian bookworm main\n"), 0o644)
	if got := aptMirror(etc, "bookworm"); got != "http://list.example/debian" {
		t.Errorf("sources.list: %s", got)
	}
	os.WriteFile(filepath.Join(etc, "sources.list.d", "debian.sources"), []byte(`Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb deb-src
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
`), 0o644)
	if got := aptMirror(etc, "bookworm"); got != "http://mirror.example/debian" {
		t.Errorf("deb822: %s", got)
	}
}
