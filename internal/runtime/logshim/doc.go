// Package logshim is the logger that containerd's shim runs for every
// container ("binary" logging): it reads the container's stdout and stderr
// from the pipes the shim hands it and writes them to one file per instance
// in the CRI log format, rotating the file so that a container flooding its
// output cannot fill the disk. ParseLine reads that format back.
//
// It runs as a child of the shim, not of Berth, so it keeps logging while the
// Berth server restarts. It must not talk to Berth or containerd: the shim
// gives it everything it needs (fds 3, 4 and 5) and Berth reads the files.
package logshim
