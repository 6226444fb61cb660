package v1

import "time"

// KindAccessKey is an access key pair for Berth's AWS-compatible APIs (the
// S3 API of each environment's object store), issued to a token.
const KindAccessKey = "AccessKey"

// AccessKey is an access key ID (its name) and secret that sign requests
// with AWS Signature Version 4. It acts as the token it was issued to:
// that token's environments and role, as they are when the request comes,
// and nothing once the token is revoked.
type AccessKey struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta    `json:"metadata"`
	Spec     AccessKeySpec `json:"spec"`
	// Secret is the secret access key, set only in the answer to a
	// create.
	Secret string `json:"secret,omitempty"`
	// Sealed is the secret as stored (encrypted with the data dir's
	// key); the server never sends it.
	Sealed []byte `json:"sealed,omitempty"`
}

func (k *AccessKey) GetMetadata() *ObjectMeta { return &k.Metadata }

type AccessKeySpec struct {
	// Token is the name of the token the key acts as; "admin" is the
	// bootstrap token.
	Token string `json:"token"`
}

// Bucket is a bucket of an environment's object store, as the API lists
// it.
type Bucket struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// ObjectInfo is an object as the API lists it.
type ObjectInfo struct {
	Key          string            `json:"key"`
	Size         int64             `json:"size"`
	ETag         string            `json:"etag"`
	LastModified time.Time         `json:"lastModified"`
	ContentType  string            `json:"contentType,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
}

// ObjectList is a page of a bucket's objects.
type ObjectList struct {
	Items    []ObjectInfo `json:"items"`
	Prefixes []string     `json:"prefixes,omitempty"`
	// Next, when set, is the key to list after for the next page.
	Next string `json:"next,omitempty"`
}

// StateUsage is what an environment's object and key-value stores hold,
// against its quota.
type StateUsage struct {
	Buckets      int64 `json:"buckets"`
	Objects      int64 `json:"objects"`
	ObjectBytes  int64 `json:"objectBytes"`
	KVKeys       int64 `json:"kvKeys"`
	KVBytes      int64 `json:"kvBytes"`
	QuotaBytes   int64 `json:"quotaBytes,omitempty"`
	QuotaObjects int64 `json:"quotaObjects,omitempty"`
}

// ReservedNames are the host names the gateway keeps for the platform in
// every environment (s3.ENV.DOMAIN, kv.ENV.DOMAIN): no workload may take
// them.
var ReservedNames = []string{"s3", "kv"}

// notReserved refuses a workload named like a platform endpoint: the
// gateway would never route to it.
func notReserved(name string) error {
	for _, r := range ReservedNames {
		if name == r {
			return FieldError("metadata.name", "%q is reserved: %s.ENVIRONMENT is the environment's own endpoint (see docs/state.md)", name, name)
		}
	}
	return nil
}
