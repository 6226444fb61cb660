package server

import "testing"

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
