package server

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/archive"
)

// The registry names users rely on: a name without host is a repository
// of the built-in registry, this registry's own address is stripped, and
// other hosts are kept unless they carry a port.
func TestImageNameMapping(t *testing.T) {
	s := &imageService{}
	s.setRegistry(nil, "0.0.0.0:7070", "tok")
	if s.host != "127.0.0.1:7070" {
		t.Fatalf("pull host %q", s.host)
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
		r, ok, err := s.mapName(c.in)
		if err != nil || ok != c.ok || (ok && (r.repo != c.repo || r.tag != c.tag || r.hub != c.hub)) {
			t.Errorf("%s: %+v ok=%v err=%v, want %s:%s hub=%v ok=%v", c.in, r, ok, err, c.repo, c.tag, c.hub, c.ok)
		}
	}
	r, _, _ := s.mapName("hello@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	if r.ref() != r.digest || r.tag != "" || s.pullRef(r.repo, r.digest) != "127.0.0.1:7070/hello@"+r.digest {
		t.Errorf("by digest: %+v %s", r, s.pullRef(r.repo, r.digest))
	}
	if _, _, err := s.mapName("Bad Name"); err == nil {
		t.Error("a bad reference was mapped")
	}
}

// Both archive formats users have (docker save, skopeo's OCI layouts)
// yield their named images with the digests the registry will store.
func TestReadArchive(t *testing.T) {
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()

	work := t.TempDir()
	tag, _ := name.NewTag("team/api:v1")
	var save bytes.Buffer
	if err := tarball.Write(tag, img, &save); err != nil {
		t.Fatal(err)
	}
	got, err := readArchive(&save, work)
	if err != nil || len(got) != 1 || got[0].name != "team/api:v1" {
		t.Fatalf("docker-save: %+v %v", got, err)
	}
	if d, _, _ := got[0].digestSize(); d == "" {
		t.Fatal("docker-save image has no digest")
	}

	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "team/api:v2"}))
	p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v3"}))
	var oci bytes.Buffer
	if err := archive.TarDir(dir, &oci); err != nil {
		t.Fatal(err)
	}
	got, err = readArchive(&oci, t.TempDir())
	if err != nil || len(got) != 1 || got[0].name != "team/api:v2" {
		t.Fatalf("OCI layout: %+v %v", got, err)
	}
	// The layout's manifest is kept byte for byte.
	if d, _, _ := got[0].digestSize(); d != want.String() {
		t.Fatalf("OCI layout digest %s, want %s", d, want)
	}

	_, err = readArchive(strings.NewReader("not a tar at all, not even close............"), t.TempDir())
	if !v1.IsInvalid(err) {
		t.Fatalf("garbage: %v", err)
	}
}
