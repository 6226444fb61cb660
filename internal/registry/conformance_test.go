package registry

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// conformanceModule is the OCI distribution-spec conformance suite. go.mod
// requires it through a tool directive, which keeps `go mod tidy` from
// dropping it although no Go file imports it.
const conformanceModule = "github.com/opencontainers/distribution-spec/conformance"

// TestConformance runs the OCI distribution-spec conformance suite against a
// fresh registry: ping, blobs (sha256 and sha512: monolithic, POST+PUT,
// chunked, out-of-order chunks, streamed, mounts, cancel, ranges, bad
// digests), images, indexes, artifacts, referrers with filters, tag listing
// with pagination, deletion of tags, manifests and blobs, manifest errors.
// Any failure fails the test with the suite's report.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suite skipped in -short mode")
	}
	bin := buildConformance(t)
	_, srv := newTestRegistry(t, nil)

	work := t.TempDir()
	// An explicit, nearly empty configuration file, so that no
	// oci-conformance.yaml lying around changes the run; the environment
	// below says everything.
	conf := filepath.Join(work, "oci-conformance.yaml")
	if err := os.WriteFile(conf, []byte("version: \"1.1\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin)
	cmd.Dir = work
	cmd.Env = append(os.Environ(),
		"OCI_CONFIGURATION="+conf,
		"OCI_RESULTS_DIR="+filepath.Join(work, "results"),
		"OCI_VERSION=1.1",
		"OCI_LOG=warn",
		"OCI_REGISTRY="+strings.TrimPrefix(srv.URL, "http://"),
		"OCI_TLS=disabled",
		"OCI_REPO1=conformance/repo1",
		"OCI_REPO2=conformance/repo2",
		"OCI_USERNAME=berth",
		"OCI_PASSWORD="+testToken,
		// Beyond the defaults: demand what this registry promises.
		"OCI_API_BLOBS_UPLOAD_CANCEL=true",
		"OCI_API_BLOBS_DIGEST_HEADER=true",
		"OCI_API_MANIFESTS_DIGEST_HEADER=true",
		"OCI_API_MANIFESTS_TAG_PARAM=true",
	)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)

	report := out.String()
	summary := regexp.MustCompile(`(?m)^OCI Conformance Result: .*\n(  .*\n)*`).FindString(report)
	t.Logf("conformance suite took %s\n%s", took.Round(time.Millisecond), summary)
	if err != nil || !strings.Contains(report, "OCI Conformance Result: Pass") {
		t.Fatalf("conformance suite failed (%v):\n%s", err, failures(report))
	}
}

// failures keeps the lines of the report's test tree that failed, with
// their error lines, and the sections after the tree.
func failures(report string) string {
	if !strings.Contains(report, "OCI Conformance Result:") {
		return report
	}
	var b strings.Builder
	lines := strings.Split(report, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "Configuration:") {
			b.WriteString(strings.Join(lines[i:], "\n"))
			break
		}
		if strings.HasSuffix(l, ": Fail") || strings.HasSuffix(l, ": Error") || strings.Contains(l, " - ") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// buildConformance compiles the suite from the module cache, fetching it
// through the Go module proxy if it is not there yet. It skips the test only
// when the suite cannot be fetched at all.
func buildConformance(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("conformance suite not built: no go command: %v", err)
	}
	if dir, err := exec.Command(goBin, "list", "-m", "-f", "{{.Dir}}", conformanceModule).Output(); err != nil || strings.TrimSpace(string(dir)) == "" {
		if out, err := exec.Command(goBin, "mod", "download", conformanceModule).CombinedOutput(); err != nil {
			t.Skipf("conformance suite not built: cannot fetch %s (no module proxy?): %v\n%s", conformanceModule, err, out)
		}
	}
	bin := filepath.Join(t.TempDir(), "conformance")
	build := exec.Command(goBin, "build", "-o", bin, conformanceModule)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the conformance suite: %v\n%s", err, out)
	}
	return bin
}
