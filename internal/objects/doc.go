// Package objects is each environment's object store: buckets of objects
// (bytes with a content type and metadata) kept on this machine's disk,
// with the semantics the S3 API needs — whole-object writes that replace
// atomically, conditional writes and reads (ETag), byte ranges, ordered
// listing with prefix, delimiter and pagination, copies, multipart uploads
// that become visible only when completed, and per-environment quotas on
// bytes and object count.
//
// Layout under Dir: data/XX/ID holds the bytes of each object (or of each
// part of a multipart object, which keeps its parts' files: completing an
// upload copies nothing); index.db (bbolt) maps environment, bucket and key
// to the record naming those files, with the uploads, their parts and the
// usage per environment. A write streams into tmp/, is fsynced and renamed
// into data/, and only then is its record committed (bbolt fsyncs): when
// Put returns, the object survives kill -9 and power loss. A crash before
// the commit leaves a file that no record names; Open removes those, and
// everything in tmp/. Uploads not completed within UploadTTL are aborted.
//
// It does not authenticate or speak HTTP (package s3api does), and it does
// not know environments beyond their names: the caller says whose request
// it is and what its quota is.
package objects
