// Package testutil starts the real things tests need: a private containerd
// with its own root, state and socket, test images built without Docker,
// and the checks that say why a test must skip. Only tests import it.
package testutil
