package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "berth.dev/berth/api/v1"
)

func writeMain(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/app\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644)
	return dir
}

// The same source must give the same image bytes: digests are how
// revisions pin images and how promotions compare them.
func TestGoReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Go")
	}
	dir := writeMain(t, "package main\nfunc main() { println(\"hi\") }\n")
	var a, b bytes.Buffer
	ctx := context.Background()
	if err := Go(ctx, GoOptions{Dir: dir, Ref: "app:v1"}, &a); err != nil {
		t.Fatal(err)
	}
	if err := Go(ctx, GoOptions{Dir: dir, Ref: "app:v1"}, &b); err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(a.Bytes()) != sha256.Sum256(b.Bytes()) {
		t.Fatal("two builds of the same source differ")
	}
}

func TestGoCompileErrorIsTheCompilersMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Go")
	}
	dir := writeMain(t, "package main\nfunc main() { undefinedThing() }\n")
	err := Go(context.Background(), GoOptions{Dir: dir, Ref: "app:v1"}, &bytes.Buffer{})
	if !v1.IsInvalid(err) || !strings.Contains(err.Error(), "undefined: undefinedThing") {
		t.Fatalf("want an Invalid error quoting the compiler, got %v", err)
	}
}

func TestGoBadInput(t *testing.T) {
	err := Go(context.Background(), GoOptions{Dir: t.TempDir(), Ref: "Bad Name"}, &bytes.Buffer{})
	if !v1.IsInvalid(err) {
		t.Fatalf("bad tag: want Invalid, got %v", err)
	}
	err = Go(context.Background(), GoOptions{Dir: "/nonexistent/dir", Ref: "app:v1"}, &bytes.Buffer{})
	if !v1.IsInvalid(err) {
		t.Fatalf("missing dir: want Invalid, got %v", err)
	}
}
