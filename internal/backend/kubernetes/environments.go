package kubernetes

import (
	"context"
	"net"
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	v1 "berth.dev/berth/api/v1"
)

// Names of the objects every environment's namespace holds.
const (
	sealPolicy = "berth-seal"
	quotaName  = "berth-quota"
	limitsName = "berth-limits"
)

func envLabels(env string) map[string]string {
	return map[string]string{LabelManagedBy: ManagedBy, LabelEnvironment: env}
}

// EnsureEnvironment makes env's namespace, seals it with a NetworkPolicy
// (ingress only from its own pods, the environments it allows, and
// Berth's gateway), and gives it a ResourceQuota and a LimitRange.
func (b *Backend) EnsureEnvironment(ctx context.Context, env *v1.Environment) (v1.EnvironmentStatus, error) {
	name := env.Metadata.Name
	ns := b.Namespace(name)
	labels := envLabels(name)
	err := b.apply(ctx, "Namespace", "", ns, &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: meta(ns, "", labels),
	}, drop(b.client.CoreV1().Namespaces().Patch))
	if err != nil {
		return v1.EnvironmentStatus{}, err
	}
	if err := b.apply(ctx, "NetworkPolicy", ns, sealPolicy, b.seal(env), drop(b.client.NetworkingV1().NetworkPolicies(ns).Patch)); err != nil {
		return v1.EnvironmentStatus{}, err
	}
	if q := env.Spec.Quota; q != nil && (q.CPU != "" || q.Memory != "") {
		hard := corev1.ResourceList{}
		if q.CPU != "" {
			if err := setQuantity(hard, corev1.ResourceLimitsCPU, q.CPU); err != nil {
				return v1.EnvironmentStatus{}, err
			}
		}
		if q.Memory != "" {
			if err := setQuantity(hard, corev1.ResourceLimitsMemory, q.Memory); err != nil {
				return v1.EnvironmentStatus{}, err
			}
		}
		err := b.apply(ctx, "ResourceQuota", ns, quotaName, &corev1.ResourceQuota{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ResourceQuota"},
			ObjectMeta: meta(quotaName, ns, labels),
			Spec:       corev1.ResourceQuotaSpec{Hard: hard},
		}, drop(b.client.CoreV1().ResourceQuotas(ns).Patch))
		if err != nil {
			return v1.EnvironmentStatus{}, err
		}
	} else if err := b.client.CoreV1().ResourceQuotas(ns).Delete(ctx, quotaName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return v1.EnvironmentStatus{}, b.wrap(err, "delete", "ResourceQuota "+quotaName, ns)
	} else {
		b.applied.forget("ResourceQuota/" + ns + "/")
	}
	lr, err := limitRange(env)
	if err != nil {
		return v1.EnvironmentStatus{}, err
	}
	lr.ObjectMeta = meta(limitsName, ns, labels)
	if err := b.apply(ctx, "LimitRange", ns, limitsName, lr, drop(b.client.CoreV1().LimitRanges(ns).Patch)); err != nil {
		return v1.EnvironmentStatus{}, err
	}
	return v1.EnvironmentStatus{Namespace: ns}, nil
}

// seal is the environment's NetworkPolicy.
func (b *Backend) seal(env *v1.Environment) *networkingv1.NetworkPolicy {
	from := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}
	if len(env.Spec.AllowFrom) > 0 {
		allowed := append([]string(nil), env.Spec.AllowFrom...)
		sort.Strings(allowed)
		from = append(from, networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{LabelManagedBy: ManagedBy},
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: LabelEnvironment, Operator: metav1.LabelSelectorOpIn, Values: allowed},
			},
		}})
	}
	switch {
	case b.cfg.GatewayNamespace != "":
		from = append(from, networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{"kubernetes.io/metadata.name": b.cfg.GatewayNamespace},
		}})
	case b.cfg.Gateway != "":
		if host, _, err := net.SplitHostPort(b.cfg.Gateway); err == nil {
			if ip := net.ParseIP(host); ip != nil {
				cidr := host + "/32"
				if ip.To4() == nil {
					cidr = host + "/128"
				}
				from = append(from, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr}})
			}
		}
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: meta(sealPolicy, b.Namespace(env.Metadata.Name), envLabels(env.Metadata.Name)),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: from}},
		},
	}
}

// limitRange is the environment's per-container defaults and maximum, as
// Berth's admission applies them.
func limitRange(env *v1.Environment) (*corev1.LimitRange, error) {
	item := corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Default: corev1.ResourceList{}, Max: corev1.ResourceList{}}
	def := v1.Resources{CPU: v1.DefaultCPU, Memory: v1.DefaultMemory}
	var max v1.Resources
	if l := env.Spec.Limits; l != nil {
		if l.Default.CPU != "" {
			def.CPU = l.Default.CPU
		}
		if l.Default.Memory != "" {
			def.Memory = l.Default.Memory
		}
		max = l.Max
	}
	if err := setQuantity(item.Default, corev1.ResourceCPU, def.CPU); err != nil {
		return nil, err
	}
	if err := setQuantity(item.Default, corev1.ResourceMemory, def.Memory); err != nil {
		return nil, err
	}
	if max.CPU != "" {
		if err := setQuantity(item.Max, corev1.ResourceCPU, max.CPU); err != nil {
			return nil, err
		}
	}
	if max.Memory != "" {
		if err := setQuantity(item.Max, corev1.ResourceMemory, max.Memory); err != nil {
			return nil, err
		}
	}
	return &corev1.LimitRange{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "LimitRange"},
		Spec:     corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{item}},
	}, nil
}

func setQuantity(l corev1.ResourceList, name corev1.ResourceName, s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return v1.Invalid("kubernetes: %s %q: %v", name, s, err)
	}
	l[name] = q
	return nil
}

// RemoveEnvironment deletes env's namespace, which takes everything in it;
// Conflict while pods of it remain or the namespace is still going.
func (b *Backend) RemoveEnvironment(ctx context.Context, name string) error {
	ns := b.Namespace(name)
	if pods, _ := b.pods.GetIndexer().ByIndex(cache.NamespaceIndex, ns); len(pods) > 0 {
		return v1.Conflict("environment %q still has %d pods in namespace %s", name, len(pods), ns)
	}
	obj, exists, _ := b.nss.GetIndexer().GetByKey(ns)
	if !exists {
		b.applied.forget("Namespace//" + ns)
		b.applied.forget("NetworkPolicy/" + ns + "/")
		b.applied.forget("ResourceQuota/" + ns + "/")
		b.applied.forget("LimitRange/" + ns + "/")
		b.applied.forget("Service/" + ns + "/")
		b.applied.forget("Deployment/" + ns + "/")
		b.applied.forget("Secret/" + ns + "/")
		b.applied.forget("ConfigMap/" + ns + "/")
		return nil
	}
	if n, ok := obj.(*corev1.Namespace); ok && n.DeletionTimestamp != nil {
		return v1.Conflict("namespace %s is being deleted", ns)
	}
	policy := metav1.DeletePropagationForeground
	err := b.client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{PropagationPolicy: &policy})
	if err != nil && !apierrors.IsNotFound(err) {
		return b.wrap(err, "delete", "namespace "+ns, "")
	}
	return v1.Conflict("namespace %s is being deleted", ns)
}

// Environments lists the environments whose namespace exists.
func (b *Backend) Environments(context.Context) ([]string, error) {
	var out []string
	for _, o := range b.nss.GetStore().List() {
		if n, ok := o.(*corev1.Namespace); ok {
			if env := n.Labels[LabelEnvironment]; env != "" {
				out = append(out, env)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
