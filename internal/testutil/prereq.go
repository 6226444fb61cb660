package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// MissingPrerequisites says why tests that run real containers cannot run
// here, or "" when they can: they need root, containerd, runc and the CNI
// plugins (`./scripts/install-deps.sh` installs them).
func MissingPrerequisites() string {
	if os.Geteuid() != 0 {
		return "needs root (containerd, runc and network namespaces); run the suite as root"
	}
	for _, bin := range []string{"containerd", "runc", "iptables"} {
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " not found on PATH; run ./scripts/install-deps.sh"
		}
	}
	for _, dir := range []string{"/usr/lib/cni", "/opt/cni/bin"} {
		if _, err := os.Stat(dir + "/bridge"); err == nil {
			return ""
		}
	}
	return "CNI plugins not found in /usr/lib/cni or /opt/cni/bin; run ./scripts/install-deps.sh"
}

// NoSkipEnv names the environment variable that turns a missing
// prerequisite from a skip into a failure. CI sets it (.ci/run): there a
// suite that cannot run is a red build, not a silently green one.
const NoSkipEnv = "BERTH_NO_SKIP"

// Skip skips t because a prerequisite is missing, or fails it when
// BERTH_NO_SKIP is set.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(NoSkipEnv) != "" {
		t.Fatalf("%s (%s is set: this suite must run here)", reason, NoSkipEnv)
	}
	t.Skip("skipping: " + reason)
}
