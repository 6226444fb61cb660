// Package k8s gives tests a real single-node Kubernetes cluster: the one
// $BERTH_KUBECONFIG names, or one it starts with scripts/k8s/up.sh (etcd,
// the control plane, a private containerd, CoreDNS, kube-proxy and a
// kubelet, on 127.0.0.1 and the bridge bk8s0) and stops with
// scripts/k8s/down.sh when the tests end.
//
// It never builds Kubernetes (a cold build takes ~25 minutes): when
// scripts/k8s/build.sh has not run, tests skip, or fail when
// $BERTH_REQUIRE_K8S is set. It talks to the cluster only through kubectl
// and the cluster's containerd socket, so Berth's module does not depend on
// client-go for its tests. Only tests import it.
package k8s
