package cli

import "testing"

func TestUnifiedDiff(t *testing.T) {
	a := "a\nb\nc\nd\ne\nf\ng\nh\n"
	b := "a\nb\nc\nD\ne\nf\ng\nh\ni\n"
	want := "--- x (deployed)\n+++ x (rendered)\n" +
		"@@ -1,8 +1,9 @@\n a\n b\n c\n-d\n+D\n e\n f\n g\n h\n+i\n"
	if got := unifiedDiff("x", a, b); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if got := unifiedDiff("x", a, a); got != "" {
		t.Fatalf("equal inputs: %q", got)
	}
	if got := unifiedDiff("x", "", "new\n"); got != "--- x (deployed)\n+++ x (rendered)\n@@ -1,0 +1,1 @@\n+new\n" {
		t.Fatalf("new file:\n%s", got)
	}
}
