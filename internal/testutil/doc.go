// Package testutil starts the real things tests need: a private containerd
// with its own root, state and socket, test images built without Docker,
// the checks that say why a test must skip, and WaitFor, the one way a
// test waits for something that happens in its own time (poll with a
// deadline, never sleep and hope). Only tests import it.
package testutil
