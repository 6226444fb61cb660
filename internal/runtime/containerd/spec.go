package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/runtime"
)

// capabilities is what a web workload may need: own and chmod its files,
// switch to its user, bind low ports, signal its children. Everything that
// reaches past the container (NET_RAW for spoofing, SYS_ADMIN, MKNOD,
// SYS_PTRACE, NET_ADMIN, …) is dropped.
var capabilities = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FOWNER",
	"CAP_FSETID",
	"CAP_KILL",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_NET_BIND_SERVICE",
}

// cpuPeriod is the CFS period CPUMillis are spread over (100ms, as Docker
// and the kubelet use).
const cpuPeriod = 100_000

type etcFiles struct{ hosts, resolvConf string }

func (d *Driver) containerStateDir(id string) string {
	return filepath.Join(d.cfg.StateDir, id)
}

func (d *Driver) etcFiles(id string) etcFiles {
	dir := d.containerStateDir(id)
	return etcFiles{hosts: filepath.Join(dir, "hosts"), resolvConf: filepath.Join(dir, "resolv.conf")}
}

// writeEtcFiles writes the container's /etc/hosts and /etc/resolv.conf.
// They live outside the snapshot so the platform can rewrite them without
// touching the image's files. resolv.conf names only the environment's own
// DNS (which never recurses), or nothing when the spec gives none.
func (d *Driver) writeEtcFiles(spec runtime.ContainerSpec, f etcFiles) error {
	if err := os.MkdirAll(filepath.Dir(f.hosts), 0o755); err != nil {
		return fmt.Errorf("container state dir: %w", err)
	}
	host := hostname(spec)
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n", host)
	if err := os.WriteFile(f.hosts, []byte(hosts), 0o644); err != nil {
		return fmt.Errorf("write hosts: %w", err)
	}
	if err := os.WriteFile(f.resolvConf, []byte(resolvConf(spec)), 0o644); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	return nil
}

func resolvConf(spec runtime.ContainerSpec) string {
	var b strings.Builder
	for _, ns := range spec.DNSServers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(spec.DNSSearch) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(spec.DNSSearch, " "))
	}
	if b.Len() > 0 {
		// One server, answering at once from memory: fail fast rather than
		// wait the default 5s on a lost datagram, twice.
		b.WriteString("options timeout:1 attempts:2\n")
	}
	return b.String()
}

func hostname(spec runtime.ContainerSpec) string {
	if spec.Hostname != "" {
		return spec.Hostname
	}
	h := spec.ID
	if len(h) > 63 {
		h = h[:63]
	}
	return h
}

// processArgs applies Kubernetes' rule: Command replaces the entrypoint
// (and drops the image's cmd), Args replaces the cmd.
func processArgs(img runtime.Image, spec runtime.ContainerSpec) []string {
	entrypoint, cmd := img.Entrypoint, img.Cmd
	if len(spec.Command) > 0 {
		entrypoint, cmd = spec.Command, nil
	}
	if len(spec.Args) > 0 {
		cmd = spec.Args
	}
	return append(append([]string{}, entrypoint...), cmd...)
}

func specOpts(img client.Image, info runtime.Image, spec runtime.ContainerSpec, files etcFiles) []oci.SpecOpts {
	mounts := []specs.Mount{
		{Destination: "/etc/hosts", Type: "bind", Source: files.hosts, Options: []string{"rbind", "rprivate", "rw"}},
		{Destination: "/etc/resolv.conf", Type: "bind", Source: files.resolvConf, Options: []string{"rbind", "rprivate", "rw"}},
	}
	for _, m := range spec.Mounts {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		mounts = append(mounts, specs.Mount{
			Destination: m.Destination, Type: "bind", Source: m.Source,
			Options: []string{"rbind", "rprivate", mode},
		})
	}
	opts := []oci.SpecOpts{
		oci.WithImageConfig(img),
		withArgs(processArgs(info, spec)),
		oci.WithEnv(spec.Env),
		oci.WithHostname(hostname(spec)),
		oci.WithMounts(mounts),
		oci.WithCapabilities(capabilities),
		withNoInheritableCaps,
		oci.WithNoNewPrivileges,
		// After the capabilities: the profile allows syscalls by them.
		seccomp.WithDefaultProfile(),
	}
	if spec.NetNSPath != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: spec.NetNSPath}))
	}
	if spec.MemoryLimit > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(spec.MemoryLimit)))
	}
	if spec.CPUMillis > 0 {
		opts = append(opts, oci.WithCPUCFS(spec.CPUMillis*cpuPeriod/1000, cpuPeriod))
	}
	if spec.PidsLimit > 0 {
		opts = append(opts, oci.WithPidsLimit(spec.PidsLimit))
	}
	return opts
}

func withArgs(args []string) oci.SpecOpts {
	return func(ctx context.Context, c oci.Client, ctr *containers.Container, s *oci.Spec) error {
		if len(args) == 0 {
			return v1.FieldError("command", "neither the spec nor the image says what to run")
		}
		return oci.WithProcessArgs(args...)(ctx, c, ctr, s)
	}
}

// withNoInheritableCaps: inheritable and ambient capabilities would let an
// exec'd program regain what the bounding set still allows without file
// capabilities; nothing here needs them.
func withNoInheritableCaps(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	if s.Process != nil && s.Process.Capabilities != nil {
		s.Process.Capabilities.Inheritable = nil
		s.Process.Capabilities.Ambient = nil
	}
	return nil
}

// cgroupPath is where runc put the container's cgroup, relative to the
// cgroup mount(s). containerd's default spec uses /NAMESPACE/ID.
func (d *Driver) cgroupPath(ctx context.Context, c client.Container) string {
	if s, err := c.Spec(ctx); err == nil && s.Linux != nil && s.Linux.CgroupsPath != "" &&
		!strings.Contains(s.Linux.CgroupsPath, ":") {
		return s.Linux.CgroupsPath
	}
	return "/" + d.cfg.Namespace + "/" + c.ID()
}
