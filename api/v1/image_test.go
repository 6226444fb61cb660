package v1

import "testing"

func TestPinDigest(t *testing.T) {
	d := "sha256:" + "ab"
	for in, want := range map[string]string{
		"hello":                        "hello@" + d,
		"hello:v1":                     "hello@" + d,
		"127.0.0.1:7070/team/echo:v2":  "127.0.0.1:7070/team/echo@" + d,
		"127.0.0.1:7070/team/echo":     "127.0.0.1:7070/team/echo@" + d,
		"docker.io/library/x@sha256:0": "docker.io/library/x@" + d,
	} {
		if got := PinDigest(in, d); got != want {
			t.Errorf("PinDigest(%q) = %q, want %q", in, got, want)
		}
	}
	if got := PinDigest("hello:v1", ""); got != "hello:v1" {
		t.Errorf("no digest: %q", got)
	}
}
