// Package sigv4 verifies AWS Signature Version 4 on incoming HTTP requests,
// so that AWS SDKs and tools talk to Berth's AWS-compatible APIs (S3 today)
// unchanged: the Authorization header, presigned URLs (query parameters),
// and the aws-chunked streaming bodies the SDKs send (signed chunks, and
// unsigned chunks with trailing checksums). It also signs, for tests and
// for Berth's own clients.
//
// It owns the canonical request, the key derivation and the chunk
// signature chain, and answers failures as *Error with the code AWS would
// send (SignatureDoesNotMatch, InvalidAccessKeyId, RequestTimeTooSkewed,
// XAmzContentSHA256Mismatch…), which the API in front maps to its own
// error shape. It does not know who a key belongs to or what it may do:
// the caller's KeyLookup turns an access key ID into its secret, and the
// caller decides access from the verified key ID. It never reads more of a
// body than the caller does: payload hashes and chunk signatures are
// checked as the body streams, and a mismatch is the body's read error.
package sigv4
