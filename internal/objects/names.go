package objects

import (
	"net"
	"strings"
	"unicode/utf8"
)

// MaxKeyLength is S3's: 1,024 bytes of UTF-8.
const MaxKeyLength = 1024

// ValidBucketName applies S3's rules for general purpose buckets: 3 to 63
// characters of lower-case letters, digits, '.' and '-', starting and
// ending with a letter or digit, no "..", not an IP address, none of the
// reserved prefixes and suffixes. A name that passes is also a DNS label
// sequence, so it works in virtual-host-style addresses.
func ValidBucketName(name string) error {
	bad := func(why string) error {
		return errorf(CodeInvalidBucketName, "The specified bucket is not valid: %q %s", name, why)
	}
	if len(name) < 3 || len(name) > 63 {
		return bad("must be 3 to 63 characters long")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return bad("may hold only lower-case letters, digits, '.' and '-'")
		}
	}
	first, last := name[0], name[len(name)-1]
	if first == '.' || first == '-' || last == '.' || last == '-' {
		return bad("must start and end with a letter or a digit")
	}
	if strings.Contains(name, "..") || strings.Contains(name, ".-") || strings.Contains(name, "-.") {
		return bad("may not hold \"..\", \".-\" or \"-.\"")
	}
	if net.ParseIP(name) != nil {
		return bad("may not be an IP address")
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(name, p) {
			return bad("may not start with " + p)
		}
	}
	for _, s := range []string{"-s3alias", "--ol-s3", "--x-s3", ".mrap"} {
		if strings.HasSuffix(name, s) {
			return bad("may not end with " + s)
		}
	}
	return nil
}

// ValidKey checks an object key: 1 to 1,024 bytes of UTF-8.
func ValidKey(key string) error {
	if key == "" {
		return errorf(CodeInvalidArgument, "an object key may not be empty")
	}
	if len(key) > MaxKeyLength {
		return errorf(CodeKeyTooLong, "Your key is too long: %d bytes, at most %d", len(key), MaxKeyLength)
	}
	if !utf8.ValidString(key) {
		return errorf(CodeInvalidArgument, "an object key must be UTF-8")
	}
	return nil
}
