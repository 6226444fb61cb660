package kubernetes

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
)

// What `berth get` shows of a pod: each case is a state a user meets.
func TestInstanceOf(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC))
	pod := func(mod func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-1", Labels: map[string]string{LabelRevision: "3"}},
			Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: containerName,
				Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.7", StartTime: &now},
		}
		mod(p)
		return p
	}
	ready := corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue}
	cases := []struct {
		name  string
		pod   *corev1.Pod
		check func(v1.InstanceStatus) string
	}{
		{"ready", pod(func(p *corev1.Pod) { p.Status.Conditions = []corev1.PodCondition{ready} }), func(s v1.InstanceStatus) string {
			if !s.Ready || s.Phase != v1.PhaseRunning || s.IP != "10.244.0.7" || s.Port != 8080 || s.Node != "node-a" || s.Revision != 3 {
				return "want ready, running, ip, port, node and revision"
			}
			return ""
		}},
		{"starting", pod(func(p *corev1.Pod) {}), func(s v1.InstanceStatus) string {
			if s.Ready || s.Phase != v1.PhaseStarting {
				return "want starting, not ready"
			}
			return ""
		}},
		{"unschedulable", pod(func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Message: "0/1 nodes are available: 1 Insufficient memory."}}
		}), func(s v1.InstanceStatus) string {
			if s.Phase != v1.PhasePending || !strings.Contains(s.Message, "Insufficient memory") {
				return "want pending with the scheduler's reason"
			}
			return ""
		}},
		{"image pull back-off", pod(func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason: "ImagePullBackOff", Message: `Back-off pulling image "nope:1"`}}}}
		}), func(s v1.InstanceStatus) string {
			if s.Phase != v1.PhaseFailed || !strings.Contains(s.Message, "ImagePullBackOff") || !strings.Contains(s.Message, "nope:1") {
				return "want failed with ImagePullBackOff and its message"
			}
			return ""
		}},
		{"crash loop", pod(func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{RestartCount: 4,
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, FinishedAt: now}}}}
		}), func(s v1.InstanceStatus) string {
			if s.Phase != v1.PhaseBackoff || s.Restarts != 4 || s.LastExit == nil || s.LastExit.Code != 3 || s.LastExit.Reason != "Error" {
				return "want backoff, 4 restarts, last exit 3 (Error)"
			}
			return ""
		}},
		{"oom killed", pod(func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{RestartCount: 1,
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}}}
		}), func(s v1.InstanceStatus) string {
			if s.LastExit == nil || s.LastExit.Reason != "OOMKilled" {
				return "want OOMKilled"
			}
			return ""
		}},
		{"terminating", pod(func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{ready}
			p.DeletionTimestamp = &now
		}), func(s v1.InstanceStatus) string {
			if s.Ready || s.Phase != v1.PhaseTerminating || backend.Ready(s) {
				return "want terminating and out of rotation"
			}
			return ""
		}},
	}
	for _, c := range cases {
		if why := c.check(instanceOf(c.pod)); why != "" {
			t.Errorf("%s: %+v: %s", c.name, instanceOf(c.pod), why)
		}
	}
}

func TestDeploymentCarriesTheTemplate(t *testing.T) {
	b := &Backend{cfg: Config{NamespacePrefix: "berth-", PreStopSeconds: 2, ImageRef: func(i, d string) string { return v1.PinDigest(i, d) }}}
	grace := int64(10)
	w := backend.Workload{
		Ref:      backend.Ref{Kind: v1.KindService, Environment: "dev", Name: "web"},
		Replicas: 3, MaxSurge: 1, MaxUnavailable: 0,
		Revision: &v1.Revision{Spec: v1.RevisionSpec{Number: 7, Image: "team/web:v2", ImageDigest: "sha256:abc"}},
	}
	tmpl := v1.Template{
		Image: "team/web:v2", Port: 9000, Args: []string{"-x"},
		Env:                           []v1.EnvVar{{Name: "A", Value: "1"}, {Name: "PW", ValueFrom: &v1.EnvVarSource{Secret: &v1.KeyRef{Name: "db", Key: "password"}}}},
		Resources:                     v1.Resources{CPU: "250m", Memory: "64Mi"},
		ReadinessProbe:                &v1.Probe{HTTPGet: &v1.HTTPGetAction{Path: "/ready"}, PeriodSeconds: 2},
		SecretFiles:                   []v1.SecretFile{{Secret: "tls", MountPath: "/etc/tls"}},
		TerminationGracePeriodSeconds: &grace,
	}
	d, err := b.deployment(w, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if d.Namespace != "berth-dev" || *d.Spec.Replicas != 3 || d.Spec.Strategy.RollingUpdate.MaxSurge.IntValue() != 1 {
		t.Fatalf("deployment %s/%s replicas %d", d.Namespace, d.Name, *d.Spec.Replicas)
	}
	pod := d.Spec.Template
	if pod.Labels[LabelRevision] != "7" || pod.Labels[LabelWorkload] != "web" || pod.Labels[LabelManagedBy] != ManagedBy {
		t.Errorf("pod labels %v", pod.Labels)
	}
	if *pod.Spec.TerminationGracePeriodSeconds != 12 {
		t.Errorf("grace %d, want the template's 10 + the 2s preStop", *pod.Spec.TerminationGracePeriodSeconds)
	}
	c := pod.Spec.Containers[0]
	if c.Image != "team/web@sha256:abc" {
		t.Errorf("image %q, want pinned to the revision's digest", c.Image)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if env["PORT"].Value != "9000" || env["BERTH_REVISION"].Value != "7" || env["A"].Value != "1" {
		t.Errorf("env %v", c.Env)
	}
	if ref := env["PW"].ValueFrom; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != "berth-secret-db" || env["PW"].Value != "" {
		t.Errorf("secret env %+v: want a secretKeyRef, never the value", env["PW"])
	}
	if c.Resources.Limits.Cpu().MilliValue() != 250 || c.Resources.Limits.Memory().Value() != 64<<20 {
		t.Errorf("limits %v", c.Resources.Limits)
	}
	if c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/ready" || c.ReadinessProbe.HTTPGet.Port.IntValue() != 9000 {
		t.Errorf("readiness %+v", c.ReadinessProbe)
	}
	if c.Lifecycle.PreStop.Sleep.Seconds != 2 || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("preStop or security context missing: %+v %+v", c.Lifecycle, c.SecurityContext)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/etc/tls" || !c.VolumeMounts[0].ReadOnly {
		t.Errorf("secret file mount %+v", c.VolumeMounts)
	}
}

func TestResourceMetrics(t *testing.T) {
	raw := `# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="berth-dev",pod="web-1"} 1.5 1700000000000
container_cpu_usage_seconds_total{container="app",namespace="berth-prod",pod="web-1"} 9 1700000000000
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="berth-dev",pod="web-1"} 2.097152e+07 1700000000000
container_memory_working_set_bytes{container="app",namespace="berth-dev",pod="other"} 5 1700000000000
`
	out := map[string]backend.Stats{}
	parseResourceMetrics([]byte(raw), "berth-dev", map[string]bool{"web-1": true}, out)
	if len(out) != 1 || out["web-1"].CPUUsageNanos != 1_500_000_000 || out["web-1"].MemoryBytes != 20<<20 {
		t.Fatalf("stats %+v", out)
	}
}
