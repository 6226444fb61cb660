package testutil

import (
	"os"
	"os/exec"
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
