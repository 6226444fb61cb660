package cli

import (
	"os"
	"path/filepath"
	"testing"

	"berth.dev/berth/internal/build"
)

// What init writes builds as the runtime it was asked for, with no
// --runtime: berth deploy NAME detects it.
func TestInitTemplatesAreDetected(t *testing.T) {
	for _, rt := range build.Runtimes {
		dir := t.TempDir()
		for p, c := range templateFiles(rt, "hello") {
			if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := build.Detect(dir); err != nil || got != rt {
			t.Errorf("init --runtime %s: detected as %s, %v", rt, got, err)
		}
	}
}
