package kubernetes

import (
	"context"
	"net"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
)

// containerName is the one container of every pod Berth makes.
const containerName = "app"

func workloadLabels(ref backend.Ref) map[string]string {
	return map[string]string{
		LabelManagedBy: ManagedBy, LabelEnvironment: ref.Environment,
		LabelKind: ref.Kind, LabelWorkload: ref.Name,
	}
}

// Apply makes w's Deployment run w.Replicas pods of its revision, with the
// rollout limits as the Deployment's strategy, and gives it a Kubernetes
// Service so `http://NAME/` reaches it (through Berth's gateway) inside
// the environment. Secrets and configs the template reads become Secrets
// and ConfigMaps of the namespace first.
func (b *Backend) Apply(ctx context.Context, w backend.Workload) error {
	ns := b.Namespace(w.Environment)
	t := w.Revision.Spec.Template
	if err := b.syncValues(ctx, w.Ref, &t); err != nil {
		return err
	}
	if err := b.applyService(ctx, w.Ref); err != nil {
		return err
	}
	if err := b.applyVolumes(ctx, w.Ref, t); err != nil {
		return err
	}
	d, err := b.deployment(w, t)
	if err != nil {
		return err
	}
	return b.apply(ctx, "Deployment", ns, w.Name, d, drop(b.client.AppsV1().Deployments(ns).Patch))
}

// deployment is what runs w.
func (b *Backend) deployment(w backend.Workload, t v1.Template) (*appsv1.Deployment, error) {
	ns := b.Namespace(w.Environment)
	sel := workloadLabels(w.Ref)
	podLabels := workloadLabels(w.Ref)
	podLabels[LabelRevision] = strconv.FormatInt(w.Revision.Spec.Number, 10)
	for k, v := range w.Labels {
		if _, ours := podLabels[k]; !ours {
			podLabels[k] = v
		}
	}
	c, err := b.container(w, t)
	if err != nil {
		return nil, err
	}
	surge, unavail := w.MaxSurge, w.MaxUnavailable
	if surge == 0 && unavail == 0 {
		surge = 1
	}
	replicas := int32(w.Replicas)
	history := int32(2) // Berth keeps the revisions; rollbacks go through it
	grace := int64(30)
	if t.TerminationGracePeriodSeconds != nil {
		grace = *t.TerminationGracePeriodSeconds
	}
	// The pod keeps serving during the preStop sleep, so it must fit in
	// the grace period.
	grace += b.cfg.PreStopSeconds
	automount := false
	spec := corev1.PodSpec{
		Containers:                    []corev1.Container{c},
		TerminationGracePeriodSeconds: &grace,
		AutomountServiceAccountToken:  &automount,
		EnableServiceLinks:            &automount,
	}
	for _, f := range t.SecretFiles {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "secret-" + f.Secret,
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secretName(f.Secret)}}})
	}
	for _, f := range t.ConfigFiles {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "config-" + f.Config,
			VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: configName(f.Config)}}}})
	}
	for _, v := range t.Volumes {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "vol-" + v.Name,
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: volumeClaim(w.Name, v.Name)}}})
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta(w.Name, ns, workloadLabels(w.Ref)),
		Spec: appsv1.DeploymentSpec{
			Replicas:             &replicas,
			RevisionHistoryLimit: &history,
			Selector:             &metav1.LabelSelector{MatchLabels: sel},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxSurge:       ptr(intstr.FromInt32(int32(surge))),
					MaxUnavailable: ptr(intstr.FromInt32(int32(unavail))),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec:       spec,
			},
		},
	}, nil
}

// container is the pod's one container: the template, the platform's
// environment variables, limits, probes, and the same hardening as on one
// machine (no privilege escalation, a short list of capabilities).
func (b *Backend) container(w backend.Workload, t v1.Template) (corev1.Container, error) {
	port := t.Port
	if port == 0 {
		port = 8080
	}
	env := []corev1.EnvVar{
		{Name: "PORT", Value: strconv.Itoa(int(port))},
		{Name: "BERTH_ENVIRONMENT", Value: w.Environment},
		{Name: "BERTH_NAME", Value: w.Name},
		{Name: "BERTH_REVISION", Value: strconv.FormatInt(w.Revision.Spec.Number, 10)},
		{Name: "BERTH_INSTANCE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
	}
	for _, e := range t.Env {
		ev := corev1.EnvVar{Name: e.Name, Value: e.Value}
		switch {
		case e.ValueFrom == nil:
		case e.ValueFrom.Secret != nil:
			ev.Value = ""
			ev.ValueFrom = &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: secretName(e.ValueFrom.Secret.Name)}, Key: e.ValueFrom.Secret.Key}}
		case e.ValueFrom.Config != nil:
			ev.Value = ""
			ev.ValueFrom = &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: configName(e.ValueFrom.Config.Name)}, Key: e.ValueFrom.Config.Key}}
		}
		env = append(env, ev)
	}
	lim, err := t.Resources.Limits()
	if err != nil {
		return corev1.Container{}, err
	}
	limits := corev1.ResourceList{
		corev1.ResourceCPU:    *resourceMilli(lim.CPUMillis),
		corev1.ResourceMemory: *resourceBytes(lim.MemoryBytes),
	}
	no := false
	c := corev1.Container{
		Name:    containerName,
		Image:   b.cfg.ImageRef(w.Revision.Spec.Image, w.Revision.Spec.ImageDigest),
		Command: t.Command,
		Args:    t.Args,
		Env:     env,
		Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}},
		Resources: corev1.ResourceRequirements{
			Limits: limits,
			// Requests as on one machine: what is counted is what is
			// asked for, so the scheduler places it honestly.
			Requests: limits,
		},
		ReadinessProbe: probe(t.ReadinessProbe, port, true),
		LivenessProbe:  probe(t.LivenessProbe, port, false),
		// Out of the gateway's table first, then SIGTERM: the sleep
		// covers the time the gateway takes to see the pod terminating.
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
			Sleep: &corev1.SleepAction{Seconds: b.cfg.PreStopSeconds},
		}},
		ImagePullPolicy:          corev1.PullIfNotPresent,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: &no,
			Capabilities: &corev1.Capabilities{
				Drop: []corev1.Capability{"ALL"},
				Add:  []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"},
			},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	for _, f := range t.SecretFiles {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "secret-" + f.Secret, MountPath: f.MountPath, ReadOnly: true})
	}
	for _, f := range t.ConfigFiles {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "config-" + f.Config, MountPath: f.MountPath, ReadOnly: true})
	}
	for _, v := range t.Volumes {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "vol-" + v.Name, MountPath: v.MountPath, ReadOnly: v.ReadOnly})
	}
	return c, nil
}

// probe maps a Berth probe; a readiness probe defaults to a TCP connect
// to the port, as on one machine.
func probe(p *v1.Probe, port int32, readiness bool) *corev1.Probe {
	if p == nil {
		if !readiness {
			return nil
		}
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}},
			PeriodSeconds: 1, FailureThreshold: 3}
	}
	out := &corev1.Probe{
		InitialDelaySeconds: p.InitialDelaySeconds, PeriodSeconds: p.PeriodSeconds, TimeoutSeconds: p.TimeoutSeconds,
		FailureThreshold: p.FailureThreshold, SuccessThreshold: p.SuccessThreshold,
	}
	switch {
	case p.HTTPGet != nil:
		pp := p.HTTPGet.Port
		if pp == 0 {
			pp = port
		}
		path := p.HTTPGet.Path
		if path == "" {
			path = "/"
		}
		out.HTTPGet = &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(pp)}
	default:
		pp := port
		if p.TCPSocket != nil && p.TCPSocket.Port != 0 {
			pp = p.TCPSocket.Port
		}
		out.TCPSocket = &corev1.TCPSocketAction{Port: intstr.FromInt32(pp)}
	}
	if !readiness && out.SuccessThreshold > 1 {
		out.SuccessThreshold = 1 // Kubernetes requires 1 for liveness
	}
	return out
}

// applyService gives the workload a Kubernetes Service NAME in its
// namespace whose one endpoint is Berth's gateway: `http://NAME/` from a
// pod of the environment is then routed by the gateway exactly as on one
// machine (it knows the caller's environment by the pod's address).
func (b *Backend) applyService(ctx context.Context, ref backend.Ref) error {
	if b.cfg.Gateway == "" {
		return nil
	}
	host, portStr, _ := net.SplitHostPort(b.cfg.Gateway)
	gwPort, _ := strconv.Atoi(portStr)
	ns := b.Namespace(ref.Environment)
	labels := workloadLabels(ref)
	err := b.apply(ctx, "Service", ns, ref.Name, &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta(ref.Name, ns, labels),
		Spec: corev1.ServiceSpec{
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(int32(gwPort))}},
		},
	}, drop(b.client.CoreV1().Services(ns).Patch))
	if err != nil {
		return err
	}
	sliceLabels := workloadLabels(ref)
	sliceLabels[discoveryv1.LabelServiceName] = ref.Name
	sliceLabels[discoveryv1.LabelManagedBy] = "berth.dev"
	ready := true
	addrType := discoveryv1.AddressTypeIPv4
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		addrType = discoveryv1.AddressTypeIPv6
	}
	return b.apply(ctx, "EndpointSlice", ns, ref.Name+"-gateway", &discoveryv1.EndpointSlice{
		TypeMeta:    metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta:  meta(ref.Name+"-gateway", ns, sliceLabels),
		AddressType: addrType,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(gwPort)), Protocol: ptr(corev1.ProtocolTCP)}},
	}, drop(b.client.DiscoveryV1().EndpointSlices(ns).Patch))
}

// Remove deletes ref's Deployment and Service; it reports true once no
// pod of it is left.
func (b *Backend) Remove(ctx context.Context, ref backend.Ref) (bool, error) {
	ns := b.Namespace(ref.Environment)
	bg := metav1.DeletePropagationBackground
	del := metav1.DeleteOptions{PropagationPolicy: &bg}
	if err := b.client.AppsV1().Deployments(ns).Delete(ctx, ref.Name, del); err != nil && !apierrors.IsNotFound(err) {
		return false, b.wrap(err, "delete", "Deployment "+ref.Name, ns)
	}
	if err := b.client.CoreV1().Services(ns).Delete(ctx, ref.Name, del); err != nil && !apierrors.IsNotFound(err) {
		return false, b.wrap(err, "delete", "Service "+ref.Name, ns)
	}
	if err := b.client.DiscoveryV1().EndpointSlices(ns).Delete(ctx, ref.Name+"-gateway", del); err != nil && !apierrors.IsNotFound(err) {
		return false, b.wrap(err, "delete", "EndpointSlice "+ref.Name+"-gateway", ns)
	}
	for _, k := range []string{"Deployment", "Service"} {
		b.applied.forget(k + "/" + ns + "/" + ref.Name)
	}
	b.applied.forget("EndpointSlice/" + ns + "/" + ref.Name + "-gateway")
	return len(b.Instances(ref)) == 0, nil
}

// syncValues copies the secrets and configs t reads into Secrets and
// ConfigMaps of the namespace (the values of now: as on one machine, a
// changed secret reaches pods created after the change).
func (b *Backend) syncValues(ctx context.Context, ref backend.Ref, t *v1.Template) error {
	refs := t.ValueRefs()
	if len(refs) == 0 {
		return nil
	}
	if b.cfg.Secrets == nil {
		return v1.Unavailable("kubernetes: this server cannot read secrets or config values")
	}
	values, err := b.cfg.Secrets.Resolve(ctx, ref.Environment, refs)
	if err != nil {
		return err
	}
	type object struct{ kind, name string }
	data := map[object]map[string]string{}
	for r, v := range values {
		o := object{r.Kind, r.Name}
		if data[o] == nil {
			data[o] = map[string]string{}
		}
		data[o][r.Key] = v
	}
	objs := make([]object, 0, len(data))
	for o := range data {
		objs = append(objs, o)
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].kind+objs[i].name < objs[j].kind+objs[j].name })
	ns := b.Namespace(ref.Environment)
	labels := envLabels(ref.Environment)
	for _, o := range objs {
		switch o.kind {
		case v1.KindSecret:
			name := secretName(o.name)
			err = b.apply(ctx, "Secret", ns, name, &corev1.Secret{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
				ObjectMeta: meta(name, ns, labels),
				Type:       corev1.SecretTypeOpaque,
				StringData: data[o],
			}, drop(b.client.CoreV1().Secrets(ns).Patch))
		case v1.KindConfig:
			name := configName(o.name)
			err = b.apply(ctx, "ConfigMap", ns, name, &corev1.ConfigMap{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
				ObjectMeta: meta(name, ns, labels),
				Data:       data[o],
			}, drop(b.client.CoreV1().ConfigMaps(ns).Patch))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func secretName(name string) string        { return "berth-secret-" + name }
func configName(name string) string        { return "berth-config-" + name }
func volumeClaim(owner, vol string) string { return owner + "-" + vol }

func ptr[T any](v T) *T { return &v }

func resourceMilli(m int64) *resource.Quantity {
	return resource.NewMilliQuantity(m, resource.DecimalSI)
}
func resourceBytes(b int64) *resource.Quantity { return resource.NewQuantity(b, resource.BinarySI) }

// applyVolumes makes a PersistentVolumeClaim per volume the template
// mounts (the cluster's default StorageClass provisions them). All the
// workload's pods share one claim each: a volume that follows its replica
// would need a StatefulSet, which Berth does not make yet.
func (b *Backend) applyVolumes(ctx context.Context, ref backend.Ref, t v1.Template) error {
	ns := b.Namespace(ref.Environment)
	for _, v := range t.Volumes {
		name := volumeClaim(ref.Name, v.Name)
		err := b.apply(ctx, "PersistentVolumeClaim", ns, name, &corev1.PersistentVolumeClaim{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
			ObjectMeta: meta(name, ns, workloadLabels(ref)),
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(defaultVolumeSize)}},
			},
		}, drop(b.client.CoreV1().PersistentVolumeClaims(ns).Patch))
		if err != nil {
			return err
		}
	}
	return nil
}

// defaultVolumeSize is what a claim asks for: Berth's volumes have no size.
const defaultVolumeSize = "1Gi"
