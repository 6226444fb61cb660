package v1

import (
	"encoding/json"
	"strconv"
	"time"
)

// APIVersion is the only apiVersion this release reads and writes.
const APIVersion = "berth.dev/v1"

// DefaultEnvironment is the environment a resource lands in when its
// manifest names none.
const DefaultEnvironment = "default"

// Kinds.
const (
	KindEnvironment = "Environment"
	KindService     = "Service"
	KindRevision    = "Revision"
	KindInstance    = "Instance"
	KindEvent       = "Event"
	KindFunction    = "Function"
	KindTopic       = "Topic"
)

// TypeMeta names the schema of an object.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// ObjectMeta is the metadata every stored object carries. Users write Name,
// Environment and Labels; the platform writes the rest.
type ObjectMeta struct {
	Name        string            `json:"name"`
	Environment string            `json:"environment,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`

	UID               string    `json:"uid,omitempty"`
	ResourceVersion   uint64    `json:"resourceVersion,omitempty"`
	Generation        int64     `json:"generation,omitempty"`
	CreationTimestamp time.Time `json:"creationTimestamp,omitzero"`
}

// Object is what the store and the API move around.
type Object interface {
	GetTypeMeta() *TypeMeta
	GetMetadata() *ObjectMeta
}

func (t *TypeMeta) GetTypeMeta() *TypeMeta { return t }

// Environment is an isolated space for workloads. In this release only its
// existence matters: workloads must name an environment that exists.
type Environment struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta        `json:"metadata"`
	Spec     EnvironmentSpec   `json:"spec"`
	Status   EnvironmentStatus `json:"status,omitzero"`
}

func (e *Environment) GetMetadata() *ObjectMeta { return &e.Metadata }

type EnvironmentSpec struct {
	// AllowFrom lists the environments whose workloads may call into this one.
	AllowFrom []string `json:"allowFrom,omitempty"`
	// Quota bounds the CPU and memory of the environment's workloads at
	// their max scale; nil is no quota.
	Quota *Quota `json:"quota,omitempty"`
	// Limits gives each instance of the environment default and maximum
	// resources; nil is the built-in defaults and no maximum.
	Limits *LimitRange `json:"limits,omitempty"`
}

type EnvironmentStatus struct {
	Subnet string `json:"subnet,omitempty"`
	Bridge string `json:"bridge,omitempty"`
	// Gateway is the environment's address on its bridge: its DNS and
	// gateway answer there.
	Gateway string `json:"gateway,omitempty"`
	// Namespace is the environment's Kubernetes namespace (the kubernetes
	// backend).
	Namespace string `json:"namespace,omitempty"`
}

// Service keeps Replicas instances of a container template running.
type Service struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta    `json:"metadata"`
	Spec     ServiceSpec   `json:"spec"`
	Status   ServiceStatus `json:"status,omitzero"`
}

func (s *Service) GetMetadata() *ObjectMeta { return &s.Metadata }

type ServiceSpec struct {
	Replicas *int32 `json:"replicas,omitempty"`
	// Template is everything that, when changed, makes a new revision.
	Template `json:",inline"`
	Strategy UpdateStrategy `json:"strategy,omitzero"`
	Route    *Route         `json:"route,omitempty"`
	// Traffic splits requests between revisions (docs/delivery.md);
	// empty means all of them to the latest.
	Traffic []TrafficTarget `json:"traffic,omitempty"`
	// StickySessions keeps a client on the revision it first got.
	StickySessions bool `json:"stickySessions,omitempty"`
}

// Template describes one instance. Services (and later Functions) embed it.
type Template struct {
	Image   string   `json:"image"`
	Command []string `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	Env     []EnvVar `json:"env,omitempty"`
	// Port is the TCP port the process listens on; PORT is set to it.
	Port           int32         `json:"port,omitempty"`
	Resources      Resources     `json:"resources,omitzero"`
	ReadinessProbe *Probe        `json:"readinessProbe,omitempty"`
	LivenessProbe  *Probe        `json:"livenessProbe,omitempty"`
	Volumes        []VolumeMount `json:"volumes,omitempty"`
	// TerminationGracePeriodSeconds is how long an instance has between
	// SIGTERM and SIGKILL.
	TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`
	// SecretFiles and ConfigFiles mount every key of a Secret or Config of
	// the environment as a file under MountPath, read-only.
	SecretFiles []SecretFile `json:"secretFiles,omitempty"`
	ConfigFiles []ConfigFile `json:"configFiles,omitempty"`
}

type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// ValueFrom takes the value from a Secret or Config key instead.
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty"`
}

// Resources are limits enforced by the kernel (cgroups) on each instance.
// What a template leaves out it gets from its environment's
// spec.limits.default, or the built-in defaults, when it is applied.
type Resources struct {
	// CPU in cores, Kubernetes quantity syntax: "500m", "1", "0.25".
	CPU string `json:"cpu,omitempty"`
	// Memory in bytes, Kubernetes quantity syntax: "64Mi", "1Gi", "128M".
	Memory string `json:"memory,omitempty"`
	// Pids bounds the processes and threads of one instance, so a fork
	// bomb stops there instead of exhausting the node's process table.
	Pids int64 `json:"pids,omitempty"`
}

type Probe struct {
	HTTPGet   *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket *TCPSocketAction `json:"tcpSocket,omitempty"`

	InitialDelaySeconds int32 `json:"initialDelaySeconds,omitempty"`
	PeriodSeconds       int32 `json:"periodSeconds,omitempty"`
	TimeoutSeconds      int32 `json:"timeoutSeconds,omitempty"`
	FailureThreshold    int32 `json:"failureThreshold,omitempty"`
	SuccessThreshold    int32 `json:"successThreshold,omitempty"`
}

type HTTPGetAction struct {
	Path string `json:"path,omitempty"`
	// Port defaults to the template's port.
	Port int32 `json:"port,omitempty"`
}

type TCPSocketAction struct {
	Port int32 `json:"port,omitempty"`
}

// VolumeMount mounts a named volume, kept by the platform across instance
// restarts and revisions, at MountPath.
type VolumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

type UpdateStrategy struct {
	// MaxSurge is how many instances above the desired count may exist
	// during a rollout (default 1).
	MaxSurge *int32 `json:"maxSurge,omitempty"`
	// MaxUnavailable is how many below the desired count may be not ready
	// during a rollout (default 0).
	MaxUnavailable *int32 `json:"maxUnavailable,omitempty"`
	// Canary, when set, rolls each new revision out as a canary.
	Canary *Canary `json:"canary,omitempty"`
}

// FunctionStrategy is how a Function's new revisions are rolled out.
type FunctionStrategy struct {
	Canary *Canary `json:"canary,omitempty"`
}

// Route exposes the workload at a path prefix on the gateway, in addition to
// its host NAME.ENV.berth.localhost.
type Route struct {
	Path string `json:"path,omitempty"`
	// StripPrefix removes Path before forwarding.
	StripPrefix bool `json:"stripPrefix,omitempty"`
}

type ServiceStatus struct {
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Revision is the number of the revision the service converges to.
	Revision    int64  `json:"revision,omitempty"`
	ImageDigest string `json:"imageDigest,omitempty"`

	Replicas        int32 `json:"replicas"`
	ReadyReplicas   int32 `json:"readyReplicas"`
	UpdatedReplicas int32 `json:"updatedReplicas"`
	// Traffic is spec.traffic as the gateway applies it: latestRevision
	// resolved to a number.
	Traffic []TrafficTarget `json:"traffic,omitempty"`
	// Canary is the progress of the latest canary.
	Canary *CanaryStatus `json:"canary,omitempty"`

	Instances  []InstanceStatus `json:"instances,omitempty"`
	Conditions []Condition      `json:"conditions,omitempty"`
}

type Condition struct {
	Type               string    `json:"type"`
	Status             bool      `json:"status"`
	Reason             string    `json:"reason,omitempty"`
	Message            string    `json:"message,omitempty"`
	LastTransitionTime time.Time `json:"lastTransitionTime,omitzero"`
}

// Condition types.
const (
	ConditionAvailable   = "Available"
	ConditionProgressing = "Progressing"
)

// Revision is an immutable snapshot of a workload's template, with the image
// tag resolved to a digest. Rollbacks name revisions.
type Revision struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta   `json:"metadata"`
	Spec     RevisionSpec `json:"spec"`
}

func (r *Revision) GetMetadata() *ObjectMeta { return &r.Metadata }

type RevisionSpec struct {
	// Owner is the Service (or Function) name.
	Owner     string `json:"owner"`
	OwnerKind string `json:"ownerKind"`
	Number    int64  `json:"number"`
	// Image is the reference as written; ImageRef is name@digest.
	Image       string   `json:"image"`
	ImageDigest string   `json:"imageDigest"`
	Template    Template `json:"template"`
	Hash        string   `json:"hash"`
	// ChangeCause is a human note, e.g. "apply" or "rollback to 2".
	ChangeCause string `json:"changeCause,omitempty"`
}

// Instance phases.
const (
	PhasePending     = "Pending"     // desired, not yet created
	PhaseStarting    = "Starting"    // task running, not ready yet
	PhaseRunning     = "Running"     // running (ready or not, see Ready)
	PhaseBackoff     = "Backoff"     // exited, waiting to restart
	PhaseTerminating = "Terminating" // draining or stopping
	PhaseFailed      = "Failed"      // cannot be started (e.g. bad image)
	PhaseStandby     = "Standby"     // prepared, task created but not started
)

// Instance is one running copy of a revision: the unit the backend runs.
// The controller creates and deletes them; the node agent writes Status.
type Instance struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta     `json:"metadata"`
	Spec     InstanceSpec   `json:"spec"`
	Status   InstanceStatus `json:"status,omitzero"`
}

func (i *Instance) GetMetadata() *ObjectMeta { return &i.Metadata }

type InstanceSpec struct {
	Owner     string `json:"owner"`
	OwnerKind string `json:"ownerKind"`
	Revision  int64  `json:"revision"`
	// Standby asks the agent to prepare the instance (network attached,
	// container and task created) without starting it; clearing it starts
	// the task. Functions keep one standby so a cold start skips the slow
	// parts.
	Standby bool `json:"standby,omitempty"`
	// Draining asks the agent to take the instance out of rotation, wait for
	// in-flight requests, then stop it; the controller deletes it after.
	Draining bool `json:"draining,omitempty"`
}

type InstanceStatus struct {
	Name     string `json:"name"`
	Revision int64  `json:"revision"`
	Phase    string `json:"phase"`
	Ready    bool   `json:"ready"`
	IP       string `json:"ip,omitempty"`
	Port     int32  `json:"port,omitempty"`
	// Node is where the instance runs (a Kubernetes node's name; empty on
	// one machine).
	Node      string    `json:"node,omitempty"`
	Restarts  int32     `json:"restarts"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	LastExit  *ExitInfo `json:"lastExit,omitempty"`
	Message   string    `json:"message,omitempty"`
	// Start says where the instance's latest start spent its time, from
	// its beginning to its first successful readiness check.
	Start *StartPhases `json:"start,omitempty"`
}

// StartPhases is where an instance's start spent its time. A cold start
// adds the platform's own steps before and after (ColdStart.Phases).
type StartPhases struct {
	// FromStandby: the instance was prepared ahead (network attached,
	// container created), so its sandbox was paid before it was needed.
	FromStandby bool `json:"fromStandby,omitempty"`
	// Thawed: the standby had been started, had passed its readiness
	// check and was then frozen, so StartMS is its thaw and InitMS the
	// check after it; the program's own initialisation was paid ahead.
	Thawed bool `json:"thawed,omitempty"`
	// BeganAt is when the instance began to start: its network attach,
	// or a standby's activation.
	BeganAt time.Time `json:"beganAt"`
	// SandboxMS is network attach and container creation.
	SandboxMS float64 `json:"sandboxMs"`
	// StartMS is the task's start (the OCI runtime's create and start).
	StartMS float64 `json:"startMs"`
	// InitMS is from the task's start to the first successful readiness
	// check: the program's own initialisation.
	InitMS float64 `json:"initMs"`
	// ReadyAt is when that check succeeded.
	ReadyAt time.Time `json:"readyAt"`
}

type ExitInfo struct {
	Code   int32     `json:"code"`
	Reason string    `json:"reason"` // Completed, Error, OOMKilled, LivenessFailed, Killed
	At     time.Time `json:"at,omitzero"`
}

// Event records something that happened to an object, as kubectl describe
// shows them.
type Event struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Object   string     `json:"object"` // Kind/name
	Type     string     `json:"type"`   // Normal, Warning
	Reason   string     `json:"reason"`
	Message  string     `json:"message"`
	Time     time.Time  `json:"time"`
}

func (e *Event) GetMetadata() *ObjectMeta { return &e.Metadata }

// List is the wire shape of a list response.
type List struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"` // "List"
	Items      []json.RawMessage `json:"items"`
}

// Image is an image known to the node.
type Image struct {
	Name   string    `json:"name"`
	Digest string    `json:"digest"`
	Size   int64     `json:"size"`
	Create time.Time `json:"created,omitzero"`
}

// Error kinds, mapped to HTTP status codes by HTTPStatus (for the API
// server and the gateway alike) and to exit codes by the CLI.
const (
	ErrInvalid      = "Invalid"
	ErrNotFound     = "NotFound"
	ErrConflict     = "Conflict"
	ErrUnavailable  = "Unavailable"
	ErrUnauthorized = "Unauthorized"
	ErrForbidden    = "Forbidden"
	ErrTooLarge     = "TooLarge"
	ErrInternal     = "Internal"
	// ErrBadGateway: a workload failed to answer (crashed before it was
	// ready); 502.
	ErrBadGateway = "BadGateway"
	// ErrGatewayTimeout: a workload did not answer within the gateway's
	// timeout; 504.
	ErrGatewayTimeout = "GatewayTimeout"
	// ErrTooManyRequests: a limit was reached (a full hold queue); 429.
	ErrTooManyRequests = "TooManyRequests"
	// ErrRequestTimeout: the client sent its request too slowly; 408.
	ErrRequestTimeout = "RequestTimeout"
)

// Status is the body of every API error: {"error": {...}}.
type Status struct {
	Error ErrorBody `json:"error"`
}

type ErrorBody struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// File and Document locate the error in an apply input.
	File     string `json:"file,omitempty"`
	Document int    `json:"document,omitempty"`
}

// RevisionName is the name of revision number n of a workload.
func RevisionName(owner string, n int64) string {
	return owner + "-" + strconv.FormatInt(n, 10)
}

// Function is run by the platform only while there is work for it: it
// scales from zero on a request, out on concurrency, and back to zero when
// idle. The image contract is a Service's: HTTP on $PORT.
type Function struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta     `json:"metadata"`
	Spec     FunctionSpec   `json:"spec"`
	Status   FunctionStatus `json:"status,omitzero"`
}

func (f *Function) GetMetadata() *ObjectMeta { return &f.Metadata }

type FunctionSpec struct {
	// Template is everything that, when changed, makes a new revision.
	// Functions are stateless: volumes are not allowed.
	Template `json:",inline"`
	// Runtime is "container" (the default: an OCI image serving HTTP on
	// $PORT) or "wasm": the image is a WebAssembly module (an OCI artifact
	// with the Wasm media types in the built-in registry) that the server
	// runs in-process, one fresh instance per request (docs/wasm.md).
	Runtime string `json:"runtime,omitempty"`
	// Concurrency is how many requests one instance serves at once
	// (default 1, like Lambda).
	Concurrency int32         `json:"concurrency,omitempty"`
	Scale       FunctionScale `json:"scale,omitzero"`
	// Timeout bounds one invocation, including a cold start's wait, as a
	// Go duration ("30s", default).
	Timeout  string    `json:"timeout,omitempty"`
	Route    *Route    `json:"route,omitempty"`
	Triggers []Trigger `json:"triggers,omitempty"`
	Async    Async     `json:"async,omitzero"`
	// Strategy, Traffic and StickySessions are as a Service's.
	Strategy       FunctionStrategy `json:"strategy,omitzero"`
	Traffic        []TrafficTarget  `json:"traffic,omitempty"`
	StickySessions bool             `json:"stickySessions,omitempty"`
}

type FunctionScale struct {
	// Min instances kept warm (default 0: scale to zero).
	Min *int32 `json:"min,omitempty"`
	// Max instances, never exceeded (default 10).
	Max *int32 `json:"max,omitempty"`
	// IdleTimeout is how long without requests before scaling to zero, a Go
	// duration (default "60s").
	IdleTimeout string `json:"idleTimeout,omitempty"`
	// TargetUtilization is the share of Concurrency the autoscaler aims
	// for per instance (default 0.7).
	TargetUtilization *float64 `json:"targetUtilization,omitempty"`
}

// Trigger invokes the function asynchronously: on a cron schedule, or for
// each message published to a topic of the same environment.
type Trigger struct {
	// Cron is a 5-field cron expression or "@every 1m" (UTC).
	Cron string `json:"cron,omitempty"`
	// Topic names a Topic of the function's environment.
	Topic string `json:"topic,omitempty"`
	// Data is the request body sent on a cron tick.
	Data string `json:"data,omitempty"`
}

// Async configures asynchronous invocations (async requests, cron and
// topic deliveries).
type Async struct {
	// MaxRetries after the first failed attempt (default 2).
	MaxRetries *int32 `json:"maxRetries,omitempty"`
	// Backoff is the first retry's delay, doubled each time (default "1s").
	Backoff string `json:"backoff,omitempty"`
	// DeadLetterTopic receives invocations that failed every attempt; it
	// must name a Topic of the environment.
	DeadLetterTopic string `json:"deadLetterTopic,omitempty"`
}

type FunctionStatus struct {
	ObservedGeneration int64  `json:"observedGeneration,omitempty"`
	Revision           int64  `json:"revision,omitempty"`
	ImageDigest        string `json:"imageDigest,omitempty"`

	// Desired is the autoscaler's current decision.
	Desired        int32 `json:"desired"`
	ReadyInstances int32 `json:"readyInstances"`
	// InFlight is the requests in flight at the gateway when last written.
	InFlight   int32 `json:"inFlight"`
	ColdStarts int64 `json:"coldStarts"`
	// LastColdStart is how long the latest request waited for an instance.
	LastColdStart *ColdStart `json:"lastColdStart,omitempty"`
	// KeepAlive is how long idle instances and the standby are kept now,
	// and why (learned from the function's own idle gaps).
	KeepAlive *KeepAliveStatus `json:"keepAlive,omitempty"`
	// Traffic is as a Service's.
	Traffic []TrafficTarget `json:"traffic,omitempty"`
	// Canary is the progress of the latest canary.
	Canary *CanaryStatus `json:"canary,omitempty"`

	Instances  []InstanceStatus `json:"instances,omitempty"`
	Conditions []Condition      `json:"conditions,omitempty"`
}

type ColdStart struct {
	At         time.Time `json:"at"`
	DurationMS float64   `json:"durationMs"`
	// Phases split DurationMS, in order (ColdStartPhases names them);
	// empty when the instance that answered did not report its start.
	Phases []ColdStartPhase `json:"phases,omitempty"`
	// From is what the instance that answered woke from: "frozen
	// standby" (started and initialised ahead), "standby" (created
	// ahead, started now) or "nothing".
	From string `json:"from,omitempty"`
}

// KeepAliveStatus is a function's current keep-alive choice.
type KeepAliveStatus struct {
	// IdleTimeout is how long an idle instance is kept before zero.
	IdleTimeout string `json:"idleTimeout"`
	// StandbyIdle is how long the prepared standby outlives the last
	// request; after it, the next request starts from nothing.
	StandbyIdle string `json:"standbyIdle"`
	// Standby says whether a standby is wanted now; Standbys how many
	// (as many as the function recently woke at once, one at least).
	Standby  bool `json:"standby"`
	Standbys int  `json:"standbys,omitempty"`
	// Learned: from the function's idle gaps rather than defaults.
	Learned bool   `json:"learned"`
	Reason  string `json:"reason"`
}

// ColdStartPhase is one step of a cold start.
type ColdStartPhase struct {
	Name string  `json:"name"`
	MS   float64 `json:"ms"`
}

// The phases of a cold start, in order: the platform deciding and
// asking for an instance (schedule), network and container creation
// (sandbox, zero from a standby), the task's start or a frozen
// standby's thaw (start), the program's initialisation up to its first
// ready check (init; a frozen standby's was paid ahead), and the
// readiness reaching the gateway (route).
const (
	ColdPhaseSchedule = "schedule"
	ColdPhaseSandbox  = "sandbox"
	ColdPhaseStart    = "start"
	ColdPhaseInit     = "init"
	ColdPhaseRoute    = "route"
)

// ColdStartPhases lists the phases in order.
var ColdStartPhases = []string{ColdPhaseSchedule, ColdPhaseSandbox, ColdPhaseStart, ColdPhaseInit, ColdPhaseRoute}

// Topic is a named stream of messages in an environment: functions
// subscribe to it with a topic trigger, and dead letters go to one.
type Topic struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     TopicSpec  `json:"spec,omitzero"`
}

func (t *Topic) GetMetadata() *ObjectMeta { return &t.Metadata }

type TopicSpec struct {
	// Retention is how long messages are kept, a Go duration (default
	// "168h").
	Retention string `json:"retention,omitempty"`
}

// Invocation is one asynchronous call of a function, as its id answers.
type Invocation struct {
	ID          string `json:"id"`
	Environment string `json:"environment"`
	Function    string `json:"function"`
	// Source is "async", "cron" or "topic:NAME".
	Source   string    `json:"source"`
	Status   string    `json:"status"` // Pending, Running, Succeeded, Failed
	Attempts int32     `json:"attempts"`
	Created  time.Time `json:"created"`
	Finished time.Time `json:"finished,omitzero"`
	// Result of the last attempt: HTTP status and body (base64 in JSON
	// when not UTF-8 text), or the error.
	StatusCode  int    `json:"statusCode,omitempty"`
	Body        string `json:"body,omitempty"`
	Error       string `json:"error,omitempty"`
	CallbackURL string `json:"callbackUrl,omitempty"`
}

// Invocation states.
const (
	InvocationPending   = "Pending"
	InvocationRunning   = "Running"
	InvocationSucceeded = "Succeeded"
	InvocationFailed    = "Failed"
)

// KindWorkflow is a state machine in the Amazon States Language.
const KindWorkflow = "Workflow"

// Workflow runs an Amazon States Language state machine durably. Task
// states name what runs in the same environment: "function:NAME",
// "service:NAME/PATH", or an "http://…"/"https://…" URL.
type Workflow struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta     `json:"metadata"`
	Spec     WorkflowSpec   `json:"spec"`
	Status   WorkflowStatus `json:"status,omitzero"`
}

func (w *Workflow) GetMetadata() *ObjectMeta { return &w.Metadata }

type WorkflowSpec struct {
	// Definition is the state machine: a States Language object, written
	// in JSON or YAML.
	Definition json.RawMessage `json:"definition"`
}

type WorkflowStatus struct {
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Running is the number of executions not yet finished.
	Running int64 `json:"running"`
}

// Execution states, as Step Functions names them.
const (
	ExecutionRunning   = "RUNNING"
	ExecutionSucceeded = "SUCCEEDED"
	ExecutionFailed    = "FAILED"
	ExecutionTimedOut  = "TIMED_OUT"
	ExecutionAborted   = "ABORTED"
)

// Execution is one run of a workflow.
type Execution struct {
	ID          string `json:"id"`
	Environment string `json:"environment"`
	Workflow    string `json:"workflow"`
	// Generation is the workflow's generation the execution runs.
	Generation int64           `json:"generation"`
	Status     string          `json:"status"`
	Input      json.RawMessage `json:"input,omitempty"`
	Output     json.RawMessage `json:"output,omitempty"`
	Error      string          `json:"error,omitempty"`
	Cause      string          `json:"cause,omitempty"`
	StartDate  time.Time       `json:"startDate"`
	StopDate   time.Time       `json:"stopDate,omitzero"`
}

// HistoryEvent is one entry of an execution's append-only history, shaped
// like Step Functions' GetExecutionHistory events.
type HistoryEvent struct {
	ID              int64           `json:"id"`
	PreviousEventID int64           `json:"previousEventId,omitempty"`
	Timestamp       time.Time       `json:"timestamp"`
	Type            string          `json:"type"` // ExecutionStarted, TaskStateEntered, TaskScheduled, TaskSucceeded, …
	StateName       string          `json:"stateName,omitempty"`
	Details         json.RawMessage `json:"details,omitempty"`
}
