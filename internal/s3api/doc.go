// Package s3api is the S3-compatible HTTP API of each environment's object
// store (package objects): path-style (s3.ENV.DOMAIN/BUCKET/KEY) and
// virtual-host-style (BUCKET.s3.ENV.DOMAIN/KEY) requests, signed with
// AWS Signature Version 4 (package sigv4) by keys Berth issues, answered
// with the XML bodies, headers and error codes the AWS SDKs and minio-go
// expect, so that they work against it unchanged.
//
// It owns the mapping of S3 operations onto the store and the access rule
// (a key acts in the environments of its token or instance; reads need
// viewer, writes deployer). It does not decide which environment a request
// is for — the gateway does, from the host, and refuses a caller from
// another environment before this package sees the request — nor whose a
// key is (a KeyLookup says).
package s3api
