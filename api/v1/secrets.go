package v1

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Kinds of the per-environment values, the API tokens and the stacks.
// None of them is written in a manifest: secrets and config values are set
// with `berth secret set` and `berth config set`, tokens with `berth token
// create`, stacks with `berth stack deploy`.
const (
	KindSecret = "Secret"
	KindConfig = "Config"
	KindToken  = "Token"
	KindStack  = "Stack"
)

// EnvVarSource names one key of a Secret or a Config of the workload's
// environment. Exactly one of the two is set.
type EnvVarSource struct {
	Secret *KeyRef `json:"secret,omitempty"`
	Config *KeyRef `json:"config,omitempty"`
}

// KeyRef is one key of a named Secret or Config.
type KeyRef struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// SecretFile mounts each key of Secret as the file MountPath/KEY, on a
// tmpfs, read-only: the value never touches a disk.
type SecretFile struct {
	Secret    string `json:"secret"`
	MountPath string `json:"mountPath"`
}

// ConfigFile mounts each key of Config as the file MountPath/KEY,
// read-only.
type ConfigFile struct {
	Config    string `json:"config"`
	MountPath string `json:"mountPath"`
}

// Quota bounds an environment's workloads: the sum over its services of
// replicas × limits and over its functions of scale.max × limits. A
// workload without a limit counts as DefaultQuotaCPU / DefaultQuotaMemory.
type Quota struct {
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
	// Registry bounds the bytes the environment's repositories of the
	// built-in registry (ENV/...) hold, each blob counted once, e.g.
	// "20Gi"; a push past it is refused.
	Registry string `json:"registry,omitempty"`
	// ObjectStorage bounds the bytes of the environment's object store
	// (objects and parts of uploads in progress), e.g. "10Gi"; Objects
	// bounds its number of objects. A write past either is refused
	// (QuotaExceeded).
	ObjectStorage string `json:"objectStorage,omitempty"`
	Objects       int64  `json:"objects,omitempty"`
}

// What a workload without resource limits counts for against a quota.
const (
	DefaultQuotaCPU    = "500m"
	DefaultQuotaMemory = "256Mi"
)

// Secret is a set of named values of an environment, encrypted at rest.
// The API takes values (Data) on a set and never sends them back: answers
// carry only the keys and their sizes (Status.Keys).
type Secret struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	// Data is KEY → value, sent to the server only.
	Data   map[string]string `json:"data,omitempty"`
	Status ValuesStatus      `json:"status,omitzero"`
}

func (s *Secret) GetMetadata() *ObjectMeta { return &s.Metadata }

// Config is a set of named, unencrypted values of an environment. Unlike a
// Secret, its values are returned by the API.
type Config struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta        `json:"metadata"`
	Data     map[string]string `json:"data,omitempty"`
	Status   ValuesStatus      `json:"status,omitzero"`
}

func (c *Config) GetMetadata() *ObjectMeta { return &c.Metadata }

// ValuesStatus describes the keys of a Secret or Config.
type ValuesStatus struct {
	Keys []KeyInfo `json:"keys,omitempty"`
}

// KeyInfo is one key and the size of its value in bytes.
type KeyInfo struct {
	Name string `json:"name"`
	Size int    `json:"size"`
}

// SetValuesRequest is the body of a PUT of a secret or config: the keys to
// set (merged into what is there) and the keys to remove.
type SetValuesRequest struct {
	Data   map[string]string `json:"data,omitempty"`
	Remove []string          `json:"remove,omitempty"`
	// Replace drops every key not in Data.
	Replace bool `json:"replace,omitempty"`
}

// Roles a token may have.
const (
	RoleViewer   = "viewer"
	RoleDeployer = "deployer"
	RoleAdmin    = "admin"
)

// AllEnvironments in a token's environments grants every environment.
const AllEnvironments = "*"

// Token is an API credential scoped to environments and a role. The server
// keeps only the SHA-256 of the secret part; the secret is shown once, in
// the create answer.
type Token struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     TokenSpec  `json:"spec"`
	// Secret is set only in the answer to a create.
	Secret string `json:"secret,omitempty"`
	// Hash is the hex SHA-256 of the secret; the server never sends it.
	Hash string `json:"hash,omitempty"`
}

func (t *Token) GetMetadata() *ObjectMeta { return &t.Metadata }

type TokenSpec struct {
	// Environments the token may act in; "*" is all of them.
	Environments []string `json:"environments"`
	Role         string   `json:"role"`
}

// AllowsEnvironment says whether the token's scope covers env.
func (s TokenSpec) AllowsEnvironment(env string) bool {
	return slices.Contains(s.Environments, AllEnvironments) || slices.Contains(s.Environments, env)
}

// ValidateToken checks a token's spec before it is created.
func ValidateToken(t *Token) error {
	if msg := nameProblem(t.Metadata.Name, MaxNameLength); msg != "" {
		return FieldError("metadata.name", "%s", msg)
	}
	switch t.Spec.Role {
	case RoleViewer, RoleDeployer, RoleAdmin:
	default:
		return FieldError("spec.role", "unknown role %q: use %s, %s or %s", t.Spec.Role, RoleViewer, RoleDeployer, RoleAdmin)
	}
	if len(t.Spec.Environments) == 0 {
		return FieldError("spec.environments", "name at least one environment, or %q for all", AllEnvironments)
	}
	for i, env := range t.Spec.Environments {
		if env == AllEnvironments {
			continue
		}
		if msg := nameProblem(env, MaxEnvironmentNameLength); msg != "" {
			return FieldError(fmt.Sprintf("spec.environments[%d]", i), "environment %s", msg)
		}
	}
	return nil
}

// ValidateValues checks the name and keys of a Secret or Config. Keys are
// file names and environment-variable-safe: letters, digits, '-', '_' and
// '.', not "." or "..".
func ValidateValues(name string, data map[string]string) error {
	if msg := nameProblem(name, MaxNameLength); msg != "" {
		return FieldError("metadata.name", "%s", msg)
	}
	for k := range data {
		if msg := valueKeyProblem(k); msg != "" {
			return FieldError("data."+k, "%s", msg)
		}
	}
	return nil
}

func valueKeyProblem(k string) string {
	if k == "" || k == "." || k == ".." || len(k) > 253 {
		return fmt.Sprintf("key %q is not valid: use 1 to 253 letters, digits, '-', '_' or '.'", k)
	}
	for _, c := range k {
		if !(c == '-' || c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return fmt.Sprintf("key %q is not valid: use letters, digits, '-', '_' or '.'", k)
		}
	}
	return ""
}

// Stack is a set of manifests deployed as one unit to an environment, with
// its history. The newest revision is last.
type Stack struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta  `json:"metadata"`
	Status   StackStatus `json:"status,omitzero"`
}

func (s *Stack) GetMetadata() *ObjectMeta { return &s.Metadata }

type StackStatus struct {
	// Revision is the number of the revision deployed now.
	Revision int64           `json:"revision"`
	History  []StackRevision `json:"history,omitempty"`
}

// MaxStackHistory is how many revisions a stack keeps.
const MaxStackHistory = 20

// StackRevision is one deploy of a stack: its sources, the values it was
// rendered with, the rendered manifests and the image each workload
// resolved to.
type StackRevision struct {
	Number   int64     `json:"number"`
	Deployed time.Time `json:"deployed"`
	// Cause is "deploy", "promote from staging revision 3",
	// "rollback to revision 2".
	Cause string `json:"cause,omitempty"`
	// Templates are the template files, path → text, so a promote can
	// render them again with another environment's values.
	Templates map[string]string `json:"templates,omitempty"`
	// Values are the merged values the templates were rendered with.
	Values    json.RawMessage `json:"values,omitempty"`
	Manifests []StackManifest `json:"manifests"`
	// Objects are the deployed objects as "Kind/name".
	Objects []string `json:"objects"`
	// Images maps "Kind/name" of each workload to the image it ran,
	// pinned: "repo@sha256:…".
	Images map[string]string `json:"images,omitempty"`
}

// StackManifest is one rendered file.
type StackManifest struct {
	File    string `json:"file"`
	Content string `json:"content"`
}

// StackDeployRequest is the body of POST
// /api/v1/environments/ENV/stacks/NAME: rendered manifests to apply as one
// unit.
type StackDeployRequest struct {
	Cause     string            `json:"cause,omitempty"`
	Templates map[string]string `json:"templates,omitempty"`
	Values    json.RawMessage   `json:"values,omitempty"`
	Manifests []StackManifest   `json:"manifests"`
	// Pins replace the image of the named workloads ("Kind/name" →
	// "repo@sha256:…"): promote and rollback deploy exact digests.
	Pins map[string]string `json:"pins,omitempty"`
	// DryRun validates and answers what would change.
	DryRun bool `json:"dryRun,omitempty"`
}

// StackDeployResponse answers a deploy: the new revision and what each
// object's apply did (created, configured, unchanged, deleted).
type StackDeployResponse struct {
	Revision int64             `json:"revision"`
	Results  map[string]string `json:"results"`
}

// StackRollbackRequest is the body of POST …/stacks/NAME/rollback.
// Revision 0 is the one before the current.
type StackRollbackRequest struct {
	Revision int64 `json:"revision,omitempty"`
}

// ObjectRef names an object of a stack: "Kind/name".
func ObjectRef(obj Object) string {
	return obj.GetTypeMeta().Kind + "/" + obj.GetMetadata().Name
}

// TemplateOf returns the template of a Service or Function, nil for other
// kinds.
func TemplateOf(obj Object) *Template {
	switch o := obj.(type) {
	case *Service:
		return &o.Spec.Template
	case *Function:
		return &o.Spec.Template
	}
	return nil
}

func validateValueRefs(t *Template, p string) error {
	for i, e := range t.Env {
		if e.ValueFrom == nil {
			continue
		}
		field := fmt.Sprintf("%s.env[%d]", p, i)
		vf := e.ValueFrom
		if e.Value != "" {
			return FieldError(field+".value", "set value or valueFrom, not both")
		}
		if (vf.Secret == nil) == (vf.Config == nil) {
			return FieldError(field+".valueFrom", "set exactly one of secret or config")
		}
		ref, what := vf.Secret, "secret"
		if ref == nil {
			ref, what = vf.Config, "config"
		}
		if msg := nameProblem(ref.Name, MaxNameLength); msg != "" {
			return FieldError(field+".valueFrom."+what+".name", "%s", msg)
		}
		if msg := valueKeyProblem(ref.Key); msg != "" {
			return FieldError(field+".valueFrom."+what+".key", "%s", msg)
		}
	}
	mounts := map[string]string{}
	for _, v := range t.Volumes {
		mounts[v.MountPath] = "volume " + v.Name
	}
	check := func(base, nameField, name, mountPath string) error {
		if msg := nameProblem(name, MaxNameLength); msg != "" {
			return FieldError(base+"."+nameField, "%s", msg)
		}
		if !strings.HasPrefix(mountPath, "/") || strings.Contains(mountPath, "..") || mountPath == "/" {
			return FieldError(base+".mountPath", "%q must be an absolute path other than / without ..", mountPath)
		}
		if other, ok := mounts[mountPath]; ok {
			return FieldError(base+".mountPath", "%s is already the mount path of %s", mountPath, other)
		}
		mounts[mountPath] = nameField + " " + name
		return nil
	}
	for i, f := range t.SecretFiles {
		if err := check(fmt.Sprintf("%s.secretFiles[%d]", p, i), "secret", f.Secret, f.MountPath); err != nil {
			return err
		}
	}
	for i, f := range t.ConfigFiles {
		if err := check(fmt.Sprintf("%s.configFiles[%d]", p, i), "config", f.Config, f.MountPath); err != nil {
			return err
		}
	}
	return nil
}

func validateQuota(q *Quota) error {
	if q == nil {
		return nil
	}
	if q.CPU != "" {
		if m, err := ParseCPU(q.CPU); err != nil || m <= 0 {
			return FieldError("spec.quota.cpu", "%q is not a positive CPU quantity, e.g. \"4\" or \"2500m\"", q.CPU)
		}
	}
	if q.Memory != "" {
		if b, err := ParseMemory(q.Memory); err != nil || b <= 0 {
			return FieldError("spec.quota.memory", "%q is not a positive memory quantity, e.g. \"8Gi\"", q.Memory)
		}
	}
	if q.Registry != "" {
		if b, err := ParseMemory(q.Registry); err != nil || b <= 0 {
			return FieldError("spec.quota.registry", "%q is not a positive size, e.g. \"20Gi\"", q.Registry)
		}
	}
	if q.ObjectStorage != "" {
		if b, err := ParseMemory(q.ObjectStorage); err != nil || b <= 0 {
			return FieldError("spec.quota.objectStorage", "%q is not a positive size, e.g. \"10Gi\"", q.ObjectStorage)
		}
	}
	if q.Objects < 0 {
		return FieldError("spec.quota.objects", "%d is not a number of objects", q.Objects)
	}
	return nil
}

// ValueRef names what a workload reads from its environment's Secrets
// (Kind KindSecret) and Configs (KindConfig): one key, or every key when
// Key is empty (a file mount).
type ValueRef struct {
	Kind string
	Name string
	Key  string
}

// ValueRefs lists the secret and config values a template reads, each
// once, in order: env references first, then file mounts.
func (t *Template) ValueRefs() []ValueRef {
	var out []ValueRef
	add := func(r ValueRef) {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	for _, e := range t.Env {
		if e.ValueFrom == nil {
			continue
		}
		if s := e.ValueFrom.Secret; s != nil {
			add(ValueRef{Kind: KindSecret, Name: s.Name, Key: s.Key})
		}
		if c := e.ValueFrom.Config; c != nil {
			add(ValueRef{Kind: KindConfig, Name: c.Name, Key: c.Key})
		}
	}
	for _, f := range t.SecretFiles {
		add(ValueRef{Kind: KindSecret, Name: f.Secret})
	}
	for _, f := range t.ConfigFiles {
		add(ValueRef{Kind: KindConfig, Name: f.Config})
	}
	return out
}
