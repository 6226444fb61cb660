package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	v1 "berth.dev/berth/api/v1"
	tardir "berth.dev/berth/internal/archive"
	"berth.dev/berth/internal/registry"
)

const testAddr = "127.0.0.1:7070"

// fakeEnvironments is a set of environments, each with an optional
// registry quota.
type fakeEnvironments map[string]string

func (f fakeEnvironments) Environment(_ context.Context, name string) (*v1.Environment, error) {
	q, ok := f[name]
	if !ok {
		return nil, v1.NotFound("environment %q not found", name)
	}
	e := &v1.Environment{Metadata: v1.ObjectMeta{Name: name}}
	if q != "" {
		e.Spec.Quota = &v1.Quota{Registry: q}
	}
	return e, nil
}

type fixture struct {
	svc  *Service
	reg  *registry.Registry
	node *fakeNode
}

// newFixture is a service over a real registry on disk and a node that
// imports with containerd's importer, with environments envs.
func newFixture(t *testing.T, envs fakeEnvironments) *fixture {
	t.Helper()
	owners := NewOwners(envs)
	reg, err := registry.New(registry.Config{Dir: t.TempDir(), Quota: owners.RegistryQuota})
	if err != nil {
		t.Fatal(err)
	}
	node := newFakeNode(t)
	svc := New(Config{Node: node, Registry: reg, RegistryAddr: testAddr, Owners: owners, TempDir: t.TempDir()})
	return &fixture{svc: svc, reg: reg, node: node}
}

func randomImage(t *testing.T) ggcr.Image {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// dockerSave is `docker save` of img as tag, layers gzipped (as
// go-containerregistry, and so `berth build`, writes them).
func dockerSave(t *testing.T, tag string, img ggcr.Image) []byte {
	t.Helper()
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tarball.Write(ref, img, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// plainDockerSave is a docker-save archive as docker itself writes it:
// uncompressed layer tars, the config named by its digest, a symlinked
// layer.
func plainDockerSave(t *testing.T, tags ...string) []byte {
	t.Helper()
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	lw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: 5, Typeflag: tar.TypeReg})
	lw.Write([]byte("hello"))
	lw.Close()
	sum := sha256.Sum256(layer.Bytes())
	diffID := "sha256:" + hex.EncodeToString(sum[:])
	cfg := []byte(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["` + diffID + `"]}}`)
	csum := sha256.Sum256(cfg)
	cfgName := hex.EncodeToString(csum[:]) + ".json"
	manifest, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": tags, "Layers": []string{"aaa/layer.tar"}}})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(n string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
	}
	add("bbb/layer.tar", layer.Bytes())
	tw.WriteHeader(&tar.Header{Name: "aaa/layer.tar", Linkname: "../bbb/layer.tar", Typeflag: tar.TypeSymlink})
	add(cfgName, cfg)
	add("manifest.json", manifest)
	tw.Close()
	return buf.Bytes()
}

// ociLayout is an OCI image layout tar (as skopeo writes oci-archive:)
// holding img under each ref.name annotation, and idx if not nil.
func ociLayout(t *testing.T, img ggcr.Image, refNames []string, idx ggcr.ImageIndex, idxName string) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range refNames {
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": n})); err != nil {
			t.Fatal(err)
		}
	}
	if idx != nil {
		if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"io.containerd.image.name": idxName})); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := tardir.TarDir(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func digestOf(t *testing.T, img interface{ Digest() (ggcr.Hash, error) }) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// The registry must hold the digests the node's containerd makes of the
// same archive, or a revision would pin one the node does not have. Each
// archive is read both ways here: by this package, and by containerd's own
// importer.
func TestArchivesReadAsContainerdReadsThem(t *testing.T) {
	img := randomImage(t)
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img})
	for _, c := range []struct {
		what string
		tar  []byte
		want map[string]string // name → digest; "" means containerd's
	}{
		{"docker-save, gzipped layers", dockerSave(t, "team/api:v1", img), map[string]string{"team/api:v1": ""}},
		{"docker-save, plain layers and a symlink", plainDockerSave(t, "team/api:v1", "other:v2"), map[string]string{"team/api:v1": "", "other:v2": ""}},
		{"OCI layout", ociLayout(t, img, []string{"team/api:v2", "v3"}, idx, "docker.io/team/multi:v1"),
			map[string]string{"team/api:v2": digestOf(t, img), "docker.io/team/multi:v1": digestOf(t, idx)}},
	} {
		t.Run(c.what, func(t *testing.T) {
			arc, err := spoolArchive(t.Context(), bytes.NewReader(c.tar), filepath.Join(t.TempDir(), "a.tar"))
			if err != nil {
				t.Fatal(err)
			}
			defer arc.Close()
			got, err := arc.images()
			if err != nil {
				t.Fatal(err)
			}
			node := newFakeNode(t)
			nodeImgs, err := node.ImportImage(t.Context(), arc.reader())
			if err != nil {
				t.Fatalf("containerd's importer refused the spooled archive: %v", err)
			}
			byName := map[string]string{}
			for _, im := range nodeImgs {
				byName[im.Name] = im.Digest
			}
			if len(got) != len(c.want) {
				t.Fatalf("images %+v, want %v", got, c.want)
			}
			for _, im := range got {
				want, ok := c.want[im.name]
				if !ok {
					t.Fatalf("unexpected image %q", im.name)
				}
				n, _ := normalize(im.name)
				nodeDigest := byName[n.String()]
				if nodeDigest == "" {
					nodeDigest = byName[im.name]
				}
				if im.root.Digest.String() != nodeDigest {
					t.Errorf("%s: registry would hold %s, containerd %s", im.name, im.root.Digest, nodeDigest)
				}
				if want != "" && im.root.Digest.String() != want {
					t.Errorf("%s: digest %s, want %s (the layout's own)", im.name, im.root.Digest, want)
				}
			}
		})
	}

	for what, junk := range map[string][]byte{
		"garbage":      []byte("not a tar at all, not even close............"),
		"empty tar":    func() []byte { var b bytes.Buffer; tar.NewWriter(&b).Close(); return b.Bytes() }(),
		"no repo tags": plainDockerSave(t),
	} {
		arc, err := spoolArchive(t.Context(), bytes.NewReader(junk), filepath.Join(t.TempDir(), "a.tar"))
		if err == nil {
			_, err = arc.images()
			arc.Close()
		}
		if !v1.IsInvalid(err) {
			t.Errorf("%s: %v, want Invalid", what, err)
		}
	}
}

// The registry names users rely on: a name without host is a repository
// of the built-in registry, this registry's own address is stripped, and
// other hosts are kept unless they carry a port.
func TestImageNameMapping(t *testing.T) {
	n := newNames("0.0.0.0:7070")
	if n.host != "127.0.0.1:7070" {
		t.Fatalf("pull host %q", n.host)
	}
	for _, c := range []struct {
		in, repo, tag string
		hub, ok       bool
	}{
		{"hello:v1", "hello", "v1", true, true},
		{"hello", "hello", "latest", true, true},
		{"team/api:3", "team/api", "3", true, true},
		{"docker.io/library/hello:v1", "hello", "v1", false, true},
		{"berth.dev/examples/hello:v1", "berth.dev/examples/hello", "v1", false, true},
		{"127.0.0.1:7070/team/echo:v1", "team/echo", "v1", false, true},
		{"localhost:7070/team/echo:v1", "team/echo", "v1", false, true},
		{"registry.example:5000/x:v1", "", "", false, false},
	} {
		r, ok, err := n.mapName(c.in)
		if err != nil || ok != c.ok || (ok && (r.repo != c.repo || r.tag != c.tag || r.hub != c.hub)) {
			t.Errorf("%s: %+v ok=%v err=%v, want %s:%s hub=%v ok=%v", c.in, r, ok, err, c.repo, c.tag, c.hub, c.ok)
		}
	}
	r, _, _ := n.mapName("hello@sha256:" + strings.Repeat("0123456789abcdef", 4))
	if r.ref() != r.digest || r.tag != "" || n.pullRef(r.repo, r.digest) != "127.0.0.1:7070/hello@"+r.digest {
		t.Errorf("by digest: %+v %s", r, n.pullRef(r.repo, r.digest))
	}
	if _, _, err := n.mapName("Bad Name"); err == nil {
		t.Error("a bad reference was mapped")
	}
}

// Import puts each image in the registry and on the node under one digest,
// without the node pulling anything; push puts it in the registry only;
// both answer with the names users see.
func TestImportAndPush(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	img := randomImage(t)
	want := digestOf(t, img)

	got, err := f.svc.Import(ctx, FullAccess, bytes.NewReader(ociLayout(t, img, []string{"team/api:v1"}, nil, "")))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "team/api:v1" || got[0].Digest != want || got[0].Size < 1024 {
		t.Fatalf("import answered %+v", got)
	}
	if r, err := f.reg.Resolve(ctx, "team/api", "v1"); err != nil || r.Digest != want {
		t.Fatalf("registry: %+v %v", r, err)
	}
	if !f.node.has(want) || len(f.node.pulls) != 0 {
		t.Fatalf("node: has=%v pulls=%v", f.node.has(want), f.node.pulls)
	}
	// The digest a revision pins is there on both sides.
	if d, err := f.svc.ResolveImage(ctx, "team/api:v1"); err != nil || d != want {
		t.Fatalf("ResolveImage = %s, %v", d, err)
	}

	// docker-save, uncompressed: registry and node agree on containerd's
	// manifest.
	got, err = f.svc.Import(ctx, FullAccess, bytes.NewReader(plainDockerSave(t, "berth.test/echo:v1")))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "berth.test/echo:v1" || !f.node.has(got[0].Digest) || len(f.node.pulls) != 0 {
		t.Fatalf("docker-save import: %+v, node pulls %v", got, f.node.pulls)
	}

	other := randomImage(t)
	got, err = f.svc.Push(ctx, FullAccess, bytes.NewReader(dockerSave(t, "berth.test/echo:v2", other)))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "berth.test/echo:v2" || f.node.has(got[0].Digest) {
		t.Fatalf("push: %+v (node has it: %v)", got, f.node.has(got[0].Digest))
	}
	entries, err := f.svc.Catalog(ctx, FullAccess)
	if err != nil {
		t.Fatal(err)
	}
	where := map[string]v1.ImageEntry{}
	for _, e := range entries {
		where[e.Name] = e
	}
	if e := where["berth.test/echo:v2"]; !e.Registry || e.Node {
		t.Fatalf("pushed image listed %+v", e)
	}
	if e := where["team/api:v1"]; !e.Registry || !e.Node {
		t.Fatalf("imported image listed %+v", e)
	}

	// Resolving the pushed image makes the node pull it, by digest, from
	// the registry.
	d, err := f.svc.ResolveImage(ctx, "berth.test/echo:v2")
	if err != nil || d != got[0].Digest || f.node.pullCount(testAddr+"/berth.test/echo@"+d) != 1 {
		t.Fatalf("ResolveImage of a pushed image = %s, %v; pulls %v", d, err, f.node.pulls)
	}

	if _, err := f.svc.Import(ctx, FullAccess, bytes.NewReader(dockerSave(t, "registry.example:5000/x:v1", other))); !v1.IsInvalid(err) {
		t.Fatalf("another registry's name: %v", err)
	}
}

// Repositories belong to environments: a token writes only its own, reads
// its own and the shared ones, and an archive naming one repository it may
// not write stores nothing anywhere.
func TestRepositoryOwnership(t *testing.T) {
	f := newFixture(t, fakeEnvironments{"alpha": "", "beta": ""})
	ctx := t.Context()
	alpha := Access{Read: []string{"alpha"}, Write: []string{"alpha"}}
	beta := Access{Read: []string{"beta"}, Write: []string{"beta"}}
	betaViewer := Access{Read: []string{"beta"}}
	good, evil := randomImage(t), randomImage(t)

	if _, err := f.svc.Push(ctx, beta, bytes.NewReader(dockerSave(t, "beta/app:v1", good))); err != nil {
		t.Fatalf("beta pushing to beta/app: %v", err)
	}
	if _, err := f.svc.Push(ctx, alpha, bytes.NewReader(dockerSave(t, "alpha/evil:v1", evil))); err != nil {
		t.Fatalf("alpha pushing to alpha/evil: %v", err)
	}
	goodDigest, _ := f.reg.Resolve(ctx, "beta/app", "v1")

	forbidden := func(what string, err error) {
		t.Helper()
		if v1.KindOf(err) != v1.ErrForbidden {
			t.Errorf("%s: %v, want Forbidden", what, err)
		}
	}
	// The attack: alpha retags its image over beta's.
	_, err := f.svc.Tag(ctx, alpha, "alpha/evil:v1", "beta/app:v1")
	forbidden("alpha tagging into beta/app", err)
	_, err = f.svc.Push(ctx, alpha, bytes.NewReader(dockerSave(t, "beta/app:v1", evil)))
	forbidden("alpha pushing to beta/app", err)
	_, err = f.svc.Import(ctx, alpha, bytes.NewReader(ociLayout(t, evil, []string{"alpha/ok:v1", "beta/app:v1"}, nil, "")))
	forbidden("alpha importing an archive that also names beta/app", err)
	if _, err := f.reg.Resolve(ctx, "alpha/ok", "v1"); !v1.IsNotFound(err) || f.node.has(digestOf(t, evil)) {
		t.Errorf("a refused archive left alpha/ok (%v) or its image on the node (%v)", err, f.node.has(digestOf(t, evil)))
	}
	forbidden("alpha removing beta/app", f.svc.Remove(ctx, alpha, "beta/app:v1"))
	_, err = f.svc.Tag(ctx, alpha, "beta/app:v1", "alpha/copy:v1")
	forbidden("alpha reading beta/app", err)
	_, err = f.svc.Push(ctx, beta, bytes.NewReader(dockerSave(t, "app:v1", good)))
	forbidden("beta writing a shared repository", err)
	_, err = f.svc.Push(ctx, betaViewer, bytes.NewReader(dockerSave(t, "beta/app:v2", good)))
	forbidden("a beta viewer pushing", err)
	if got, _ := f.reg.Resolve(ctx, "beta/app", "v1"); got.Digest != goodDigest.Digest {
		t.Fatalf("beta/app:v1 is now %s, was %s", got.Digest, goodDigest.Digest)
	}

	// What is allowed: the admin curates shared repositories; every token
	// reads them and copies into its own.
	if _, err := f.svc.Push(ctx, FullAccess, bytes.NewReader(dockerSave(t, "base:v1", good))); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Tag(ctx, beta, "base:v1", "beta/base:v1"); err != nil {
		t.Fatalf("beta copying a shared image into its own repository: %v", err)
	}
	// A repository named after no environment is shared.
	if owner, err := f.svc.owners.Owner(ctx, "gamma/x"); owner != "" || err != nil {
		t.Fatalf("owner of gamma/x = %q, %v", owner, err)
	}
	if err := f.svc.Remove(ctx, beta, "beta/base:v1"); err != nil {
		t.Fatalf("beta removing its own image: %v", err)
	}

	// Lists show what the caller may read.
	entries, err := f.svc.Catalog(ctx, alpha)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name, "beta/") || e.Digest == goodDigest.Digest && e.Repository != "base" {
			t.Errorf("alpha sees %+v", e)
		}
	}

	// A workload of alpha cannot be pointed at beta's images.
	if _, err := f.svc.ResolveImageIn(ctx, "alpha", "beta/app:v1"); !v1.IsNotFound(err) {
		t.Errorf("alpha resolving beta/app: %v", err)
	}
	if d, err := f.svc.ResolveImageIn(ctx, "beta", "beta/app:v1"); err != nil || d != goodDigest.Digest {
		t.Errorf("beta resolving beta/app: %s %v", d, err)
	}
}

// An environment's repositories hold at most spec.quota.registry bytes,
// whichever way content arrives.
func TestRegistryQuotaOfEnvironments(t *testing.T) {
	f := newFixture(t, fakeEnvironments{"small": "4Ki", "big": ""})
	ctx := t.Context()
	img := randomImage(t) // two 512-byte layers, gzipped: well under 4Ki
	if _, err := f.svc.Push(ctx, FullAccess, bytes.NewReader(dockerSave(t, "small/a:v1", img))); err != nil {
		t.Fatalf("within the quota: %v", err)
	}
	large, err := random.Image(8<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.Push(ctx, FullAccess, bytes.NewReader(dockerSave(t, "small/b:v1", large)))
	if v1.KindOf(err) != v1.ErrForbidden || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("past the quota: %v", err)
	}
	if _, err := f.svc.Push(ctx, FullAccess, bytes.NewReader(dockerSave(t, "big/b:v1", large))); err != nil {
		t.Fatalf("an environment without a registry quota: %v", err)
	}
	// A copy into the environment costs what it adds.
	if _, err := f.svc.Tag(ctx, FullAccess, "big/b:v1", "small/b:v1"); v1.KindOf(err) != v1.ErrForbidden {
		t.Fatalf("copy past the quota: %v", err)
	}
	if _, err := f.svc.Tag(ctx, FullAccess, "small/a:v1", "small/c:v1"); err != nil {
		t.Fatalf("copy within the environment: %v", err)
	}
}

// A slow pull blocks nobody but those who wait for it: every resolution of
// the same reference shares one pull, a caller that stops waiting returns
// at once while the pull goes on for the others, and other images resolve
// meanwhile.
func TestResolutionsShareOnePull(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	if _, err := f.svc.Import(ctx, FullAccess, bytes.NewReader(dockerSave(t, "team/fast:v1", randomImage(t)))); err != nil {
		t.Fatal(err)
	}
	const ref = "docker.io/library/slow:1"
	f.node.remote[ref] = "sha256:" + strings.Repeat("ab", 32)
	f.node.gate = make(chan struct{})
	waiting := make(chan string, 16)
	f.svc.waiting = func(ref string) { waiting <- ref }

	// The first caller starts the pull, then stops waiting: it returns at
	// once, and the pull goes on without it.
	impatient, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := f.svc.ResolveImage(impatient, ref); done <- err }()
	<-waiting
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || v1.KindOf(err) != v1.ErrUnavailable {
		t.Fatalf("a caller that stopped waiting got %v", err)
	}

	const waiters = 5
	var wg sync.WaitGroup
	results := make(chan error, waiters)
	for range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := f.svc.ResolveImage(ctx, ref)
			if err == nil && d != f.node.remote[ref] {
				err = fmt.Errorf("digest %s", d)
			}
			results <- err
		}()
	}
	for range waiters {
		<-waiting
	}
	if _, err := f.svc.ResolveImage(ctx, "team/fast:v1"); err != nil {
		t.Fatalf("an unrelated image during the pull: %v", err)
	}

	close(f.node.gate)
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Fatalf("a waiter: %v", err)
		}
	}
	if n := f.node.pullCount(ref); n != 1 {
		t.Fatalf("%d pulls of %s, want 1", n, ref)
	}
}

// An image found nowhere is NotFound, with where to put it.
func TestResolveNotFoundSaysWhere(t *testing.T) {
	f := newFixture(t, nil)
	_, err := f.svc.ResolveImage(t.Context(), "no-such-image:v1")
	if !v1.IsNotFound(err) || !strings.Contains(err.Error(), "not in the built-in registry") || !strings.Contains(err.Error(), "berth image push") {
		t.Fatalf("missing Docker Hub name: %v", err)
	}
	if _, err := f.svc.ResolveImage(t.Context(), "registry.example:5000/x:v1"); !v1.IsNotFound(err) {
		t.Fatalf("missing image of another registry: %v", err)
	}
}
