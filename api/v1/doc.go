// Package v1 holds Berth's resource and wire types: the manifests users write
// (Environment, Service, …), the status the platform reports, the API's error
// shape, and the decoding, defaulting and validation of manifests.
//
// It imports nothing internal to Berth: the CLI, the server and third-party
// tools all agree on these types and nothing else.
package v1
