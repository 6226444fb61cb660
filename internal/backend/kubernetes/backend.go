// Package kubernetes is the backend that runs workloads on a Kubernetes
// cluster, the way Knative and OpenFaaS run on one: every Environment is a
// Namespace sealed by NetworkPolicies, with a ResourceQuota and a
// LimitRange; every Service and Function is a Deployment (its replicas set
// by Berth: the autoscaler's count for a Function, zero included) and a
// Kubernetes Service that sends `http://NAME/` inside the environment to
// Berth's gateway; secrets and configs are Secrets and ConfigMaps.
// Instances are the pods, read from informers, never polled.
//
// Kubernetes schedules, places, restarts and rolls out; this package never
// decides where or how many. Berth's own state (revisions, statuses,
// events) stays in Berth's store; the cluster holds only what runs, so a
// restarted server adopts it by listing.
package kubernetes

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
)

// Labels and annotations Berth puts on what it makes, so `kubectl get -l`
// finds them and a restarted server knows what is its own.
const (
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	ManagedBy        = "berth"
	LabelEnvironment = "berth.dev/environment"
	LabelKind        = "berth.dev/kind"
	LabelWorkload    = "berth.dev/workload"
	LabelRevision    = "berth.dev/revision"
	// AnnotationSpecHash is the hash of what Berth last applied to an
	// object: Apply skips the API call when it is unchanged.
	AnnotationSpecHash = "berth.dev/spec-hash"
)

// Secrets resolves the secret and config values templates reference.
type Secrets interface {
	Resolve(ctx context.Context, env string, refs []v1.ValueRef) (map[v1.ValueRef]string, error)
}

// EventRecorder records an Event about a workload ("Kind/name").
type EventRecorder interface {
	Record(ctx context.Context, env, object, typ, reason, msg string)
}

// Config is what the kubernetes backend needs.
type Config struct {
	// Kubeconfig is a kubeconfig file; empty means the in-cluster config
	// (Berth running as a pod).
	Kubeconfig string
	// RestConfig, when set, is used instead of Kubeconfig (tests).
	RestConfig *rest.Config
	// NamespacePrefix makes an environment's namespace: PREFIX+ENV
	// (default "berth-").
	NamespacePrefix string
	// Gateway is where pods reach Berth's gateway (IP:PORT): each
	// workload's Kubernetes Service sends `http://NAME/` there, so calls
	// inside an environment are routed, traced and wake functions as on
	// one machine.
	Gateway string
	// GatewayNamespace, when Berth runs in the cluster, is the namespace
	// its pod runs in: NetworkPolicies let it in. Outside the cluster the
	// gateway's IP is let in instead.
	GatewayNamespace string
	// ImageRef turns a revision's image and digest into what the nodes
	// pull (Berth's registry as the nodes reach it, or the user's).
	ImageRef func(image, digest string) string
	// PreStopSeconds is how long a terminating pod keeps serving after it
	// left the gateway's table, before SIGTERM (default 2).
	PreStopSeconds int64
	Secrets        Secrets
	Events         EventRecorder
	Logger         *slog.Logger
	// Resync is the informers' resync period (default 10m).
	Resync time.Duration
}

// Backend runs workloads on a Kubernetes cluster.
type Backend struct {
	cfg    Config
	log    *slog.Logger
	client kubernetes.Interface
	host   string

	factory       informers.SharedInformerFactory
	eventsFactory informers.SharedInformerFactory
	pods          cache.SharedIndexInformer
	deploys       cache.SharedIndexInformer
	nss           cache.SharedIndexInformer
	events        cache.SharedIndexInformer

	applied applied

	mu       sync.Mutex
	watchers map[int]func(backend.Ref)
	nextID   int
	seen     map[string]bool // Kubernetes events already mirrored, by UID
}

var _ backend.Backend = (*Backend)(nil)

// New connects to the cluster (it does not call it yet); Run starts the
// informers.
func New(cfg Config) (*Backend, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NamespacePrefix == "" {
		cfg.NamespacePrefix = "berth-"
	}
	if cfg.PreStopSeconds == 0 {
		cfg.PreStopSeconds = 2
	}
	if cfg.Resync == 0 {
		cfg.Resync = 10 * time.Minute
	}
	if cfg.ImageRef == nil {
		cfg.ImageRef = func(image, digest string) string { return v1.PinDigest(image, digest) }
	}
	rc := cfg.RestConfig
	if rc == nil {
		var err error
		if cfg.Kubeconfig != "" {
			rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		} else {
			rc, err = rest.InClusterConfig()
		}
		if err != nil {
			return nil, v1.Invalid("kubernetes: cannot load the cluster's config: %v", err)
		}
	}
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "berth"
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 50, 100
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, v1.Invalid("kubernetes: %v", err)
	}
	if cfg.Gateway != "" {
		if _, _, err := net.SplitHostPort(cfg.Gateway); err != nil {
			return nil, v1.Invalid("kubernetes: gateway address %q: %v", cfg.Gateway, err)
		}
	}
	b := &Backend{cfg: cfg, log: cfg.Logger, client: client, host: rc.Host, seen: map[string]bool{}, watchers: map[int]func(backend.Ref){}}
	managed := informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = labels.Set{LabelManagedBy: ManagedBy}.String()
	})
	b.factory = informers.NewSharedInformerFactoryWithOptions(client, cfg.Resync, managed)
	b.pods = b.factory.Core().V1().Pods().Informer()
	b.deploys = b.factory.Apps().V1().Deployments().Informer()
	b.nss = b.factory.Core().V1().Namespaces().Informer()
	// Events carry no labels of ours: a factory of their own.
	evf := informers.NewSharedInformerFactoryWithOptions(client, cfg.Resync)
	b.events = evf.Core().V1().Events().Informer()
	b.eventsFactory = evf

	notify := func(obj any) {
		if ref, ok := refOf(obj); ok {
			b.notify(ref)
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    notify,
		UpdateFunc: func(_, cur any) { notify(cur) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			notify(obj)
		},
	}
	if _, err := b.pods.AddEventHandler(handler); err != nil {
		return nil, err
	}
	if _, err := b.deploys.AddEventHandler(handler); err != nil {
		return nil, err
	}
	if _, err := b.events.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    b.mirrorEvent,
		UpdateFunc: func(_, cur any) { b.mirrorEvent(cur) },
	}); err != nil {
		return nil, err
	}
	if err := b.pods.AddIndexers(cache.Indexers{
		workloadIndex: workloadIndexFunc, ipIndex: ipIndexFunc,
	}); err != nil {
		return nil, err
	}
	return b, nil
}

// Name is "kubernetes".
func (b *Backend) Name() string { return "kubernetes" }

// Run starts the informers and blocks until ctx ends. What runs in the
// cluster keeps running when it returns.
func (b *Backend) Run(ctx context.Context) error {
	b.factory.Start(ctx.Done())
	b.eventsFactory.Start(ctx.Done())
	<-ctx.Done()
	b.factory.Shutdown()
	b.eventsFactory.Shutdown()
	return nil
}

// WaitForSync returns once the informers hold what the cluster has.
func (b *Backend) WaitForSync(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), b.pods.HasSynced, b.deploys.HasSynced, b.nss.HasSynced) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return v1.Unavailable("kubernetes: the cluster at %s did not answer the first list", b.host)
	}
	return nil
}

// Check calls the cluster once and says plainly why it cannot be used:
// unreachable, or a credential RBAC does not allow to list what Berth
// needs.
func (b *Backend) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := b.client.Discovery().ServerVersion(); err != nil {
		return b.wrap(err, "get", "the server version", "")
	}
	if _, err := b.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		return b.wrap(err, "list", "namespaces", "")
	}
	return nil
}

// Watch registers fn, told of every workload whose pods or deployment
// changed.
func (b *Backend) Watch(fn func(backend.Ref)) { b.subscribe(fn) }

// subscribe registers fn until the returned cancel is called.
func (b *Backend) subscribe(fn func(backend.Ref)) (cancel func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.nextID
	b.nextID++
	b.watchers[id] = fn
	return func() {
		b.mu.Lock()
		delete(b.watchers, id)
		b.mu.Unlock()
	}
}

func (b *Backend) notify(ref backend.Ref) {
	b.mu.Lock()
	ws := make([]func(backend.Ref), 0, len(b.watchers))
	for _, w := range b.watchers {
		ws = append(ws, w)
	}
	b.mu.Unlock()
	for _, w := range ws {
		w(ref)
	}
}

// Namespace is env's namespace.
func (b *Backend) Namespace(env string) string { return b.cfg.NamespacePrefix + env }

// Instances reports ref's pods, sorted by name.
func (b *Backend) Instances(ref backend.Ref) []v1.InstanceStatus {
	objs, _ := b.pods.GetIndexer().ByIndex(workloadIndex, indexKey(b.Namespace(ref.Environment), ref.Kind, ref.Name))
	out := make([]v1.InstanceStatus, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			out = append(out, instanceOf(p))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

const (
	workloadIndex = "workload"
	ipIndex       = "ip"
)

func ipIndexFunc(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Status.PodIP == "" {
		return nil, nil
	}
	return []string{p.Status.PodIP}, nil
}

// EnvironmentOf names the environment of the pod at ip: the gateway's
// listener for pods tells callers apart by it.
func (b *Backend) EnvironmentOf(ip net.IP) (string, bool) {
	objs, _ := b.pods.GetIndexer().ByIndex(ipIndex, ip.String())
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			if env := p.Labels[LabelEnvironment]; env != "" {
				return env, true
			}
		}
	}
	return "", false
}

func indexKey(ns, kind, name string) string { return ns + "/" + kind + "/" + name }

func workloadIndexFunc(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	kind, name := p.Labels[LabelKind], p.Labels[LabelWorkload]
	if kind == "" || name == "" {
		return nil, nil
	}
	return []string{indexKey(p.Namespace, kind, name)}, nil
}

// refOf reads the workload an object of ours belongs to from its labels.
func refOf(obj any) (backend.Ref, bool) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return backend.Ref{}, false
	}
	l := m.GetLabels()
	kind, name, env := l[LabelKind], l[LabelWorkload], l[LabelEnvironment]
	if kind == "" || name == "" || env == "" {
		return backend.Ref{}, false
	}
	return backend.Ref{Kind: kind, Environment: env, Name: name}, true
}

// instanceOf is what Berth shows of a pod.
func instanceOf(p *corev1.Pod) v1.InstanceStatus {
	st := v1.InstanceStatus{Name: p.Name, IP: p.Status.PodIP, Node: p.Spec.NodeName}
	st.Revision, _ = strconv.ParseInt(p.Labels[LabelRevision], 10, 64)
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			st.Port = port.ContainerPort
			break
		}
	}
	if p.Status.StartTime != nil {
		st.StartedAt = p.Status.StartTime.Time.UTC()
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			st.Ready = true
		}
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			st.Message = fmt.Sprintf("cannot be scheduled: %s", c.Message)
		}
	}
	switch p.Status.Phase {
	case corev1.PodPending:
		st.Phase = v1.PhasePending
	case corev1.PodRunning:
		st.Phase = v1.PhaseRunning
		if !st.Ready {
			st.Phase = v1.PhaseStarting
		}
	case corev1.PodFailed, corev1.PodSucceeded:
		st.Phase = v1.PhaseFailed
	default:
		st.Phase = v1.PhasePending
	}
	for _, cs := range p.Status.ContainerStatuses {
		st.Restarts += cs.RestartCount
		if t := cs.LastTerminationState.Terminated; t != nil {
			st.LastExit = &v1.ExitInfo{Code: t.ExitCode, Reason: exitReason(t), At: t.FinishedAt.Time.UTC()}
		}
		if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" {
			st.Message = w.Reason
			if w.Message != "" {
				st.Message += ": " + w.Message
			}
			if w.Reason == "CrashLoopBackOff" {
				st.Phase = v1.PhaseBackoff
			}
			if w.Reason == "ImagePullBackOff" || w.Reason == "ErrImagePull" || w.Reason == "InvalidImageName" || w.Reason == "CreateContainerConfigError" {
				st.Phase = v1.PhaseFailed
			}
		}
	}
	if p.DeletionTimestamp != nil {
		st.Phase, st.Ready = v1.PhaseTerminating, false
	}
	return st
}

func exitReason(t *corev1.ContainerStateTerminated) string {
	switch {
	case t.Reason == "OOMKilled":
		return "OOMKilled"
	case t.ExitCode == 0:
		return "Completed"
	case t.ExitCode == 137 || t.ExitCode == 143:
		return "Killed"
	default:
		return "Error"
	}
}
