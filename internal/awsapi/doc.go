// Package awsapi serves the AWS Step Functions and Lambda APIs over
// Berth's Workflows and Functions, so that code written against the AWS
// SDKs (aws-sdk-go-v2 service/sfn and service/lambda, and the other SDKs
// speaking the same wire protocols) works by changing its endpoint URL.
//
// It is an adapter at the edge: it verifies AWS Signature Version 4
// (package sigv4) with keys Berth issues (package accesskeys, through the
// caller's KeyLookup), maps ARNs onto environments and names (an ARN's
// account field is the environment: docs/aws.md), translates requests to
// calls on the workflow engine and the invocation path, and answers in the
// shapes and error codes the SDKs parse. It owns no state and no second
// model of workflows or functions; it must not reach the store for
// anything but reading the resources it lists.
package awsapi
