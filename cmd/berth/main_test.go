package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestServerFlagsAreCheckedBeforeStarting(t *testing.T) {
	for _, args := range [][]string{
		{"server", "--data-dir", "relative/dir"},
		{"server", "--data-dir", t.TempDir(), "--log-level", "loud"},
		{"server", "--data-dir", t.TempDir(), "--api", "no-port"},
		{"server", "extra"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2; stderr %q", args, code, errOut.String())
		}
		if !strings.HasPrefix(errOut.String(), "error: ") {
			t.Errorf("%v: stderr %q", args, errOut.String())
		}
	}
}

func TestVersionAndHiddenLogShim(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "berth ") {
		t.Errorf("version: exit %d, %q %q", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run([]string{"--help"}, &out, &errOut); code != 0 {
		t.Fatalf("help: exit %d", code)
	}
	if !strings.Contains(out.String(), "server") || strings.Contains(out.String(), "log-shim") {
		t.Errorf("help should list server and hide log-shim:\n%s", out.String())
	}
}
