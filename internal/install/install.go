// Package install runs Berth itself in a Kubernetes cluster: it renders
// the objects that do it (a namespace, a service account with RBAC
// limited to what the kubernetes backend calls, a volume for Berth's
// state, the server's Deployment and the Services of its API and
// gateway) and applies them server-side, or prints them for GitOps.
//
// It knows the cluster only through client-go; it does not talk to a
// Berth server.
package install

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	v1 "berth.dev/berth/api/v1"
)

// Options say what to install.
type Options struct {
	// Namespace Berth runs in (default berth-system).
	Namespace string
	// Image is the Berth server's image.
	Image string
	// State is where Berth keeps its data: "pvc" (a claim of StateSize on
	// the default StorageClass) or "hostpath:/DIR" (a directory of the
	// node: for a single-node cluster without a provisioner).
	State     string
	StateSize string
	// NamespacePrefix of the environments' namespaces (default berth-).
	NamespacePrefix string
	// RegistryAdvertise is where the nodes pull Berth's registry from;
	// empty leaves the server's default.
	RegistryAdvertise string
	// ExtraArgs go to `berth server` as they are.
	ExtraArgs []string
}

const (
	name       = "berth"
	apiPort    = 7070
	gwPort     = 8080
	gwPodsPort = 8081
)

func (o *Options) defaults() error {
	if o.Namespace == "" {
		o.Namespace = "berth-system"
	}
	if o.State == "" {
		o.State = "pvc"
	}
	if o.StateSize == "" {
		o.StateSize = "10Gi"
	}
	if o.NamespacePrefix == "" {
		o.NamespacePrefix = "berth-"
	}
	if o.Image == "" {
		return v1.FieldError("image", "the Berth server's image is required (--image)")
	}
	if o.State != "pvc" && !strings.HasPrefix(o.State, "hostpath:/") {
		return v1.FieldError("state", "%q is neither pvc nor hostpath:/DIR", o.State)
	}
	if _, err := resource.ParseQuantity(o.StateSize); err != nil {
		return v1.FieldError("state-size", "%q: %v", o.StateSize, err)
	}
	return nil
}

// Objects are the objects that run Berth, in the order they are applied.
func Objects(o Options) ([]any, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	ns := o.Namespace
	labels := map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "berth-install"}
	om := func(n string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: n, Namespace: ns, Labels: labels} }
	objs := []any{
		&corev1.Namespace{TypeMeta: tm("v1", "Namespace"), ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}},
		&corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: om(name)},
		&rbacv1.ClusterRole{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRole"),
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Rules: Rules()},
		&rbacv1.ClusterRoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}},
	}
	state := corev1.Volume{Name: "state"}
	if dir, ok := strings.CutPrefix(o.State, "hostpath:"); ok {
		t := corev1.HostPathDirectoryOrCreate
		state.HostPath = &corev1.HostPathVolumeSource{Path: dir, Type: &t}
	} else {
		objs = append(objs, &corev1.PersistentVolumeClaim{TypeMeta: tm("v1", "PersistentVolumeClaim"), ObjectMeta: om(name + "-state"),
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(o.StateSize)}},
			}})
		state.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name + "-state"}
	}
	args := []string{"server", "--backend", "kubernetes", "--data-dir", "/var/lib/berth",
		"--api", fmt.Sprintf("0.0.0.0:%d", apiPort), "--gateway", fmt.Sprintf("0.0.0.0:%d", gwPort),
		"--cluster-gateway", fmt.Sprintf("0.0.0.0:%d", gwPodsPort),
		"--cluster-gateway-advertise", fmt.Sprintf("$(POD_IP):%d", gwPodsPort),
		"--gateway-namespace", ns, "--namespace-prefix", o.NamespacePrefix, "--log-format", "json"}
	if o.RegistryAdvertise != "" {
		args = append(args, "--registry-advertise", o.RegistryAdvertise)
	}
	args = append(args, o.ExtraArgs...)
	one := int32(1)
	sel := map[string]string{"app.kubernetes.io/name": name}
	probe := func(path string, port int) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt(port)}}, PeriodSeconds: 5}
	}
	objs = append(objs,
		&appsv1.Deployment{TypeMeta: tm("apps/v1", "Deployment"), ObjectMeta: om(name),
			Spec: appsv1.DeploymentSpec{
				Replicas: &one,
				// One server owns the state volume at a time.
				Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
				Selector: &metav1.LabelSelector{MatchLabels: sel},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						ServiceAccountName: name,
						Containers: []corev1.Container{{
							Name: name, Image: o.Image, Args: args,
							Env: []corev1.EnvVar{{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}},
							Ports: []corev1.ContainerPort{
								{Name: "api", ContainerPort: apiPort}, {Name: "gateway", ContainerPort: gwPort}, {Name: "pods", ContainerPort: gwPodsPort},
							},
							ReadinessProbe: probe("/healthz", apiPort),
							LivenessProbe:  probe("/healthz", apiPort),
							VolumeMounts:   []corev1.VolumeMount{{Name: "state", MountPath: "/var/lib/berth"}},
						}},
						Volumes: []corev1.Volume{state},
					},
				},
			}},
		&corev1.Service{TypeMeta: tm("v1", "Service"), ObjectMeta: om(name + "-api"),
			Spec: corev1.ServiceSpec{Selector: sel, Ports: []corev1.ServicePort{{Name: "api", Port: apiPort, TargetPort: intstr.FromString("api")}}}},
		&corev1.Service{TypeMeta: tm("v1", "Service"), ObjectMeta: om(name + "-gateway"),
			Spec: corev1.ServiceSpec{Selector: sel, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("gateway")}}}},
	)
	return objs, nil
}

// Rules are what the kubernetes backend calls, and nothing more.
func Rules() []rbacv1.PolicyRule {
	write := []string{"get", "list", "watch", "create", "patch", "update", "delete"}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"namespaces", "services", "secrets", "configmaps", "resourcequotas", "limitranges", "persistentvolumeclaims"}, Verbs: write},
		{APIGroups: []string{""}, Resources: []string{"pods", "events"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"nodes", "nodes/proxy"}, Verbs: []string{"get"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: write},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: write},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: write},
	}
}

func tm(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

// Print writes the objects as one YAML stream.
func Print(w io.Writer, o Options) error {
	objs, err := Objects(o)
	if err != nil {
		return err
	}
	for i, obj := range objs {
		b, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		if i > 0 {
			io.WriteString(w, "---\n")
		}
		w.Write(cleanYAML(b))
	}
	return nil
}

// cleanYAML drops what typed structs always marshal but a manifest does
// not say (empty status, null creation times).
func cleanYAML(b []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(b), "\n") {
		t := strings.TrimSpace(line)
		if t == "creationTimestamp: null" || t == "status: {}" || t == "strategy: {}" || t == "resources: {}" {
			continue
		}
		out.WriteString(line)
	}
	return out.Bytes()
}

// Apply applies the objects server-side to the cluster of kubeconfig
// (empty: the default loading rules, as kubectl).
func Apply(ctx context.Context, kubeconfig string, o Options, progress io.Writer) error {
	objs, err := Objects(o)
	if err != nil {
		return err
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return v1.Invalid("kubeconfig: %v", err)
	}
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: "berth-install", Force: &force}
	for _, obj := range objs {
		data, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		var kind, objName string
		switch x := obj.(type) {
		case *corev1.Namespace:
			kind, objName = "namespace", x.Name
			_, err = c.CoreV1().Namespaces().Patch(ctx, x.Name, types.ApplyPatchType, data, opts)
		case *corev1.ServiceAccount:
			kind, objName = "serviceaccount", x.Name
			_, err = c.CoreV1().ServiceAccounts(x.Namespace).Patch(ctx, x.Name, types.ApplyPatchType, data, opts)
		case *rbacv1.ClusterRole:
			kind, objName = "clusterrole", x.Name
			_, err = c.RbacV1().ClusterRoles().Patch(ctx, x.Name, types.ApplyPatchType, data, opts)
		case *rbacv1.ClusterRoleBinding:
			kind, objName = "clusterrolebinding", x.Name
			_, err = c.RbacV1().ClusterRoleBindings().Patch(ctx, x.Name, types.ApplyPatchType, data, opts)
		case *corev1.PersistentVolumeClaim:
			kind, objName = "persistentvolumeclaim", x.Name
			_, err = c.CoreV1().PersistentVolumeClaims(x.Namespace).Patch(ctx, x.Name, types.ApplyPatchType, data, opts)
		case *appsv1.Deployment:
			kind, objName = "deployment", x.Name
			_, err = c.AppsV1().Deployments(x.Namespace).Patch(ctx, x.Name, types.ApplyPatchType, data, opts)
		case *corev1.Service:
			kind, objName = "service", x.Name
			_, err = c.CoreV1().Services(x.Namespace).Patch(ctx, x.Name, types.ApplyPatchType, data, opts)
		default:
			return fmt.Errorf("install: no client for %T", obj)
		}
		if err != nil {
			return fmt.Errorf("apply %s/%s: %w", kind, objName, err)
		}
		fmt.Fprintf(progress, "%s/%s applied\n", kind, objName)
	}
	return nil
}
