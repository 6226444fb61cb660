package v1

import "strings"

// PinDigest pins an image reference to digest: "repo:tag" and
// "repo@sha256:old" become "repo@sha256:…", so a tag that moves later does
// not change what runs. An empty digest leaves ref as it is.
func PinDigest(ref, digest string) string {
	if digest == "" {
		return ref
	}
	if i := strings.LastIndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref + "@" + digest
}
